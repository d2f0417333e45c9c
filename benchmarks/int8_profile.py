"""Why int8 is (not) faster than fp32 on this CPU: a per-op ONNX Runtime profile of the student, both formats.

The fp32 and int8 artifacts of a checkpoint come from ``pointkd compile``
(:func:`~pointkd.export.compile.compile_cached` into ``--artifacts``, reused when already compiled from the same
checkpoint). For each artifact the graph ONNX Runtime actually runs is saved
(``SessionOptions.optimized_model_filepath``, the options of every pointkd session) and its nodes counted: integer
kernels (QLinearMatMul, QGemm, MatMulInteger, ...), Quantize / DequantizeLinear nodes left after the QDQ fusions,
float kernels. Then, per thread count and batch size:

* end-to-end latency of both formats in interleaved rounds (fp32, int8, fp32, ...) on sessions without profiling,
  so a change in machine load hits both alike; medians over all runs;
* a profiled session per format (:func:`pointkd.runtime.ort.make_session` with ``profile_prefix``), whose per-node
  kernel times (median over runs, warm-up runs dropped) are summed per op type, per kind (integer kernel, Q/DQ,
  float) and per role in the network: kNN (the score MatMul, the seeded TopK and the index arithmetic up to the
  gathers), gathers, max-reductions, Q/DQ, MatMul/Gemm (float or integer), the rest.

Run: ``python benchmarks/int8_profile.py [--checkpoint CKPT] [--points 512] [--batches 1 32] [--threads 1 2]``
-> ``benchmarks/results/<device-id>/int8_profile.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Kernels that compute on 8-bit integers (ONNX and ONNX Runtime contrib ops).
INTEGER_OPS = frozenset(
    {
        "QLinearMatMul",
        "QLinearConv",
        "MatMulInteger",
        "ConvInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
        "QLinearLeakyRelu",
        "QLinearConcat",
        "QLinearReduceMean",
        "QLinearSigmoid",
        "QLinearSoftmax",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearWhere",
        "QAttention",
    }
)
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
MATMUL_OPS = frozenset({"MatMul", "Gemm", "FusedMatMul", "FusedGemm", "Conv", "FusedConv"})
GATHER_OPS = frozenset({"Gather", "GatherElements", "GatherND"})
MAX_OPS = frozenset({"ReduceMax", "MaxPool", "GlobalMaxPool"})
INT8_TYPES = ("int8", "uint8")
ROLES = ("knn", "gather", "max", "qdq", "matmul_int8", "matmul_float", "other")
ROLE_TEXT = {
    "knn": "kNN (score MatMul, TopK, seeding, index arithmetic)",
    "gather": "gathers of neighbour features",
    "max": "max-reductions (over k, global pool)",
    "qdq": "Quantize/DequantizeLinear",
    "matmul_int8": "EdgeConv/head MatMul, integer kernels",
    "matmul_float": "EdgeConv/head MatMul/Gemm, float",
    "other": "everything else (add, LeakyReLU, concat, reshape, ...)",
}


def kind_of(op_type: str, input_types: Iterable[str] = ()) -> str:
    """``"integer"`` (an integer kernel), ``"qdq"`` (a Quantize/DequantizeLinear), ``"int8-data"`` (a data-movement
    or reduction kernel reading 8-bit tensors, e.g. a Gather of uint8 rows) or ``"float"``."""
    if op_type in INTEGER_OPS:
        return "integer"
    if op_type in QDQ_OPS:
        return "qdq"
    types = [t for t in input_types if t]
    if types and any(t in INT8_TYPES for t in types[:1]):
        return "int8-data"
    return "float"


# --- the graph ONNX Runtime runs -------------------------------------------------------------------------------


def optimized_model(path: str | Path, out: str | Path, threads: int = 1) -> Path:
    """Save the graph ONNX Runtime runs for ``path`` (all optimisations, pointkd's session options) to ``out``."""
    import onnxruntime as ort

    from pointkd.runtime.ort import session_options

    opts = session_options(threads)
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return Path(out)


def node_roles(model: Any) -> dict[str, str]:
    """Role (one of :data:`ROLES`) of every node of an ONNX ``model``, by op type and position.

    kNN nodes are the TopKs, every node all of whose outputs are read only by kNN nodes (the score MatMul, the
    query/key construction, the seeding: GatherElements, ReduceMin, Concat) and every node reading only kNN outputs
    and constants (the index arithmetic after a TopK), found by fixed-point iteration."""
    nodes = list(model.graph.node)
    producers = {out: n.name for n in nodes for out in n.output}
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        for name in n.input:
            if name:
                consumers[name].append(n.name)
    graph_outputs = {o.name for o in model.graph.output}
    by_name = {n.name: n for n in nodes}
    knn = {n.name for n in nodes if n.op_type == "TopK"}
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if n.name in knn:
                continue
            readers = [c for out in n.output for c in consumers.get(out, [])]
            upstream = bool(readers) and all(c in knn for c in readers) and not set(n.output) & graph_outputs
            srcs = [producers[i] for i in n.input if i in producers]
            index_math = n.op_type not in MATMUL_OPS | MAX_OPS | GATHER_OPS
            downstream = bool(srcs) and all(s in knn for s in srcs) and index_math
            if upstream or downstream:
                knn.add(n.name)
                changed = True
    roles = {}
    for name, n in by_name.items():
        op = n.op_type
        if name in knn:
            roles[name] = "knn"
        elif op in QDQ_OPS:
            roles[name] = "qdq"
        elif op in INTEGER_OPS and ("MatMul" in op or "Gemm" in op or "Conv" in op):
            roles[name] = "matmul_int8"
        elif op in MATMUL_OPS:
            roles[name] = "matmul_float"
        elif op in GATHER_OPS:
            roles[name] = "gather"
        elif op in MAX_OPS:
            roles[name] = "max"
        else:
            roles[name] = "other"
    return roles


def graph_summary(model: Any) -> dict[str, Any]:
    """Node counts of a (saved, optimised) ONNX ``model``: per op type and kind, and where the remaining Q/DQ nodes
    sit (``producer op -> QDQ op -> consumer ops``)."""
    nodes = list(model.graph.node)
    op_types = Counter(n.op_type for n in nodes)
    producers = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for n in nodes:
        for name in n.input:
            consumers[name].append(n)
    initializers = {i.name for i in model.graph.initializer}
    placement: Counter[str] = Counter()
    for n in nodes:
        if n.op_type not in QDQ_OPS:
            continue
        src = n.input[0]
        before = producers[src].op_type if src in producers else ("weight" if src in initializers else "input")
        after = sorted({c.op_type for out in n.output for c in consumers.get(out, [])}) or ["output"]
        placement[f"{before} -> {n.op_type} -> {'/'.join(after)}"] += 1
    kinds = Counter(kind_of(n.op_type) for n in nodes)
    return {
        "nodes": len(nodes),
        "op_types": dict(sorted(op_types.items(), key=lambda kv: (-kv[1], kv[0]))),
        "integer_kernels": kinds["integer"],
        "qdq_nodes": kinds["qdq"],
        "float_matmuls": sum(op_types[o] for o in MATMUL_OPS),
        "qdq_placement": dict(placement.most_common()),
    }


# --- the profile -------------------------------------------------------------------------------------------------


def load_profile(path: str | Path) -> list[dict[str, Any]]:
    return json.loads(Path(path).read_text())


def _types(entries: Iterable[dict[str, Any]]) -> list[str]:
    return [next(iter(e), "") for e in entries]


def node_times(events: list[dict[str, Any]], skip_runs: int = 1) -> dict[str, dict[str, Any]]:
    """Per node of an ORT profile: op type, input element types and its kernel time (µs) in each run after the
    first ``skip_runs`` (warm-up)."""
    found: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        name = ev["name"][: -len("_kernel_time")]
        args = ev.get("args", {})
        row = found.setdefault(
            name,
            {"op_type": args.get("op_name", "?"), "input_types": _types(args.get("input_type_shape", [])), "us": []},
        )
        row["us"].append(float(ev["dur"]))
    for row in found.values():
        row["us"] = row["us"][skip_runs:] if len(row["us"]) > skip_runs else row["us"]
    return found


def run_times_ms(events: list[dict[str, Any]], skip_runs: int = 1) -> list[float]:
    """Milliseconds of each ``model_run`` in the profile after the first ``skip_runs``."""
    runs = [float(ev["dur"]) / 1000 for ev in events if ev.get("cat") == "Session" and ev.get("name") == "model_run"]
    return runs[skip_runs:] if len(runs) > skip_runs else runs


def aggregate(
    events: list[dict[str, Any]], roles: dict[str, str] | None = None, skip_runs: int = 1, top: int = 12
) -> dict[str, Any]:
    """Per-op-type, per-kind and per-role time of an ORT profile: each node's median kernel time over the runs, the
    shares of their sum (which therefore sum to 1), and the ``top`` slowest nodes. ``roles``: node name -> role
    (:func:`node_roles` of the optimised graph); nodes it lacks get a role from their op type alone."""
    per_node = node_times(events, skip_runs)
    rows = []
    for name, row in per_node.items():
        op = row["op_type"]
        role = (roles or {}).get(name) or _role_of_op(op)
        rows.append(
            {
                "node": name,
                "op_type": op,
                "kind": kind_of(op, row["input_types"]),
                "role": role,
                "input_types": row["input_types"],
                "median_us": statistics.median(row["us"]),
                "runs": len(row["us"]),
            }
        )
    total = sum(r["median_us"] for r in rows) or 1.0

    def group(key: str) -> dict[str, dict[str, Any]]:
        acc: dict[str, dict[str, Any]] = {}
        for r in rows:
            g = acc.setdefault(r[key], {"us": 0.0, "nodes": 0, **({"kind": r["kind"]} if key == "op_type" else {})})
            g["us"] += r["median_us"]
            g["nodes"] += 1
        for g in acc.values():
            g["share"] = g["us"] / total
            g["us"] = round(g["us"], 2)
        return dict(sorted(acc.items(), key=lambda kv: -kv[1]["us"]))

    for r in rows:
        r["share"] = r["median_us"] / total
    rows.sort(key=lambda r: -r["median_us"])
    runs = run_times_ms(events, skip_runs)
    return {
        "kernel_total_us": round(total, 2),
        "run_p50_ms": round(statistics.median(runs), 4) if runs else None,
        "runs": len(runs),
        "nodes": len(rows),
        "by_op_type": group("op_type"),
        "by_kind": group("kind"),
        "by_role": group("role"),
        "node_kinds": dict(Counter(r["kind"] for r in rows)),
        "top_nodes": [{**r, "median_us": round(r["median_us"], 2)} for r in rows[:top]],
        "per_node_us": {r["node"]: r["median_us"] for r in rows},
        "node_ops": {r["node"]: r["op_type"] for r in rows},
    }


def quantized_pairs(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    """The quantized layers of two :func:`aggregate` results: each integer kernel of the int8 profile beside the
    same-named float node of the fp32 profile (quantization keeps node names), and the int8 model's Q/DQ time, i.e.
    what int8 does with the work it took over, against what fp32 spent on that work."""
    f_us, i_us = fp32["per_node_us"], int8["per_node_us"]
    kinds = {n: kind_of(op) for n, op in int8["node_ops"].items()}
    # ORT renames a Gemm it fused with its activation "fused <name>" (the int8 model runs that activation as its own
    # integer kernel, counted below)
    fp32_name = {n.removeprefix("fused "): n for n in f_us}
    rows = [
        {
            "node": n,
            "fp32_op": fp32["node_ops"][fp32_name[n]],
            "int8_op": int8["node_ops"][n],
            "fp32_us": f_us[fp32_name[n]],
            "int8_us": us,
        }
        for n, us in i_us.items()
        if kinds[n] == "integer" and n in fp32_name
    ]
    unpaired = {n: us for n, us in i_us.items() if kinds[n] == "integer" and n not in fp32_name}
    qdq = sum(us for n, us in i_us.items() if kinds[n] == "qdq")
    f_total = sum(r["fp32_us"] for r in rows)
    i_total = sum(r["int8_us"] for r in rows) + sum(unpaired.values())
    return {
        "layers": rows,
        "unpaired_integer_us": {n: round(us, 2) for n, us in unpaired.items()},
        "fp32_us": round(f_total, 2),
        "int8_kernels_us": round(i_total, 2),
        "qdq_us": round(qdq, 2),
        "int8_with_qdq_us": round(i_total + qdq, 2),
        "kernel_speedup": round(f_total / i_total, 3) if i_total else None,
        "speedup_with_qdq": round(f_total / (i_total + qdq), 3) if i_total + qdq else None,
        # Amdahl: the fp32 model's time if the quantized layers cost nothing, as a speedup bound for int8
        "bound_if_free": round(fp32["kernel_total_us"] / (fp32["kernel_total_us"] - f_total), 3),
    }


def _role_of_op(op: str) -> str:
    if op in QDQ_OPS:
        return "qdq"
    if op in INTEGER_OPS:
        return "matmul_int8"
    if op in MATMUL_OPS:
        return "matmul_float"
    if op in GATHER_OPS:
        return "gather"
    if op in MAX_OPS:
        return "max"
    return "knn" if op == "TopK" else "other"


# --- measurement -------------------------------------------------------------------------------------------------


def profile_sessions(
    paths: dict[str, Path], threads: int, feed: dict[str, np.ndarray], runs: int, prefix: str
) -> dict[str, Path]:
    """Run each model ``runs`` + 1 times under ORT's profiler, alternating between them run by run (so that a change
    in machine load hits all alike); the profile file of each."""
    from pointkd.runtime.ort import make_session

    sessions = {
        name: make_session(path, threads=threads, profile_prefix=f"{prefix}-{name}") for name, path in paths.items()
    }
    for _ in range(runs + 1):
        for session in sessions.values():
            session.run(None, feed)
    return {name: Path(session.end_profiling()) for name, session in sessions.items()}


def interleaved(sessions: dict[str, Any], feed: dict[str, np.ndarray], runs: int, rounds: int, warmup: int) -> dict:
    """End-to-end milliseconds of each session on ``feed``, in ``rounds`` interleaved rounds
    (:func:`pointkd.bench.harness.interleaved`)."""
    from pointkd.bench import harness

    return harness.interleaved({n: (lambda s=s: s.run(None, feed)) for n, s in sessions.items()}, runs, rounds, warmup)


def artifacts(checkpoint: Path, folder: Path, points: int) -> dict[str, Path]:
    """The fp32 and int8 model files of ``checkpoint``: one ``onnx-int8`` compile (its folder keeps both)."""
    from pointkd.export.compile import CompileOptions, compile_cached

    out = folder / f"{checkpoint.stem}-{points}-onnx-int8"
    manifest = compile_cached(checkpoint, out, CompileOptions(fmt="onnx-int8", num_points=points))
    return {"fp32": out / "model.onnx", "int8": out / manifest["model_file"], "manifest": out / "manifest.json"}


# --- report ------------------------------------------------------------------------------------------------------


def why(report: dict[str, Any], faster_at: float = 1.05) -> str:
    """The answer in words, every number read from ``report``. int8 counts as faster only when its p50 beats fp32's
    by ``faster_at`` at every setting measured."""
    g, gf = report["graphs"]["int8"], report["graphs"]["fp32"]
    rows = report["settings"]
    ratios = [r["speedup_int8_p50"] for r in rows]
    with_qdq = [r["quantized_layers"]["speedup_with_qdq"] for r in rows]
    bounds = [r["quantized_layers"]["bound_if_free"] for r in rows]
    untouched = [
        sum(r["profile"]["fp32"]["by_role"].get(k, {}).get("share", 0.0) for k in ("knn", "gather", "max"))
        for r in rows
    ]
    knn = [r["profile"]["fp32"]["by_role"].get("knn", {}).get("share", 0.0) for r in rows]
    qdq = [r["profile"]["int8"]["by_role"].get("qdq", {}).get("share", 0.0) for r in rows]
    cpu, isa = report["device"]["cpu"], ", ".join(report["cpu_flags"]) or "no AVX2"
    vnni = any("vnni" in f or "amx" in f for f in report["cpu_flags"])

    def span(xs: list[float], fmt: str = "{:.2f}", pct: bool = False) -> str:
        lo, hi = (min(xs) * 100, max(xs) * 100) if pct else (min(xs), max(xs))
        text = fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"
        return text + (" %" if pct else "x")

    if min(ratios) >= faster_at:
        verdict = f"int8 is faster than fp32 at every setting measured (fp32/int8 p50 {span(ratios)})"
    else:
        verdict = f"int8 is not faster than fp32 here: fp32/int8 p50 {span(ratios)} over {len(rows)} settings"
    sizes = report["sizes"]
    layer_verdict = (
        "slower than fp32 at every setting"
        if max(with_qdq) < 1
        else "faster than fp32 at every setting"
        if min(with_qdq) >= 1.1
        else "faster than fp32 at some settings and slower at others"
        if min(with_qdq) < 1
        else "not much faster than fp32"
    )
    no_vnni = "without VNNI, ONNX Runtime's u8s8 GEMM has no edge over its AVX2 float GEMM at these layer sizes"
    text = [
        f"{verdict} on {cpu} ({isa}; {'with' if vnni else 'no'} VNNI/AMX)"
        + (
            f"; a ratio above {max(bounds):.2f}x (the bound below) is machine-load noise, not int8."
            if max(ratios) > max(bounds) * 1.01
            else "."
        ),
        f"After ONNX Runtime's graph optimisation the int8 model runs {g['integer_kernels']} integer kernels "
        f"({', '.join(f'{k} x{v}' for k, v in g['op_types'].items() if k in INTEGER_OPS) or 'none'}) and "
        f"{g['qdq_nodes']} Quantize/DequantizeLinear nodes; {g['float_matmuls']} MatMul/Gemm stay float "
        f"(fp32 model: {gf['float_matmuls']}): {g['float_matmuls_knn']} kNN score MatMuls and "
        f"{g['float_matmuls'] - g['float_matmuls_knn']} projections of the raw xyz input (kept float on purpose).",
        f"On the layers it quantized, int8 is {layer_verdict}: fp32/int8 kernel time of the integer kernels against "
        f"the same nodes' float MatMul/Gemm in the fp32 profile (in brackets: with the Q/DQ nodes counted) "
        + ", ".join(
            f"{r['quantized_layers']['kernel_speedup']:.2f}x ({r['quantized_layers']['speedup_with_qdq']:.2f}x) at "
            f"batch {r['batch']}/{r['threads']} thread(s)"
            for r in rows
        )
        + f"; Q/DQ are {span(qdq, '{:.1f}', True)} of the int8 kernel time"
        + (f"; {no_vnni}." if not vnni and max(with_qdq) < 1.1 else "."),
        f"And the quantizable work is small: even at zero cost for those layers the int8 model would be at most "
        f"{span(bounds)} faster than fp32 (their share of the fp32 kernel time). The kNN alone (score MatMul, "
        f"seeded TopK) takes {span(knn, '{:.0f}', True)} of the fp32 kernel time, and with the neighbour gathers "
        f"and max-reductions {span(untouched, '{:.0f}', True)}; all of it stays float in int8 by design (int8 "
        "distances flip neighbours).",
        f"{'So int8 is a size win only' if min(ratios) < faster_at else 'And int8 is smaller too'}: the artifact "
        f"is {sizes['fp32_bytes'] / sizes['int8_bytes']:.2f}x smaller ({sizes['int8_bytes'] / 1024:.0f} KiB vs "
        f"{sizes['fp32_bytes'] / 1024:.0f} KiB) "
        f"at {report['accuracy']['oa_drop_pt']:+.2f} OA points against fp32 on the test split.",
    ]
    return " ".join(text)


def markdown(report: dict[str, Any]) -> str:
    dev = report["device"]
    lines = [
        f"# int8 vs fp32 on {dev['cpu']}: where the time goes ({Path(report['checkpoint']).name}, "
        f"{report['points']} points)",
        "",
        f"{dev['cores']} cores, SIMD {', '.join(report['cpu_flags']) or '-'}; onnxruntime "
        f"{dev['versions']['onnxruntime']}; other processes kept {report['busy_cores_before']:.2f} cores busy when it "
        f"started. Generated by `benchmarks/int8_profile.py` ({report['created']}). Latency: medians of interleaved "
        "runs on sessions without profiling; op shares: per-node median kernel time from ORT's profiler, summed.",
        "",
        "## Why",
        "",
        report["why"],
        "",
        "## End to end (interleaved, same run)",
        "",
        "| batch | threads | fp32 p50 (ms) | int8 p50 (ms) | fp32/int8 | fp32 p90 | int8 p90 | runs each |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["settings"]:
        f, i = r["latency"]["fp32"], r["latency"]["int8"]
        lines.append(
            f"| {r['batch']} | {r['threads']} | {f['p50_ms']:.3f} | {i['p50_ms']:.3f} | {r['speedup_int8_p50']:.2f}x "
            f"| {f['p90_ms']:.3f} | {i['p90_ms']:.3f} | {f['runs']} |"
        )
    lines += [
        "",
        "## The graph ONNX Runtime runs (after its optimisations)",
        "",
        "| | fp32 | int8 |",
        "| --- | ---: | ---: |",
    ]
    gf, gi = report["graphs"]["fp32"], report["graphs"]["int8"]
    for key, label in (
        ("nodes", "nodes"),
        ("integer_kernels", "integer kernels"),
        ("qdq_nodes", "Quantize/DequantizeLinear"),
        ("float_matmuls", "float MatMul/Gemm"),
    ):
        lines.append(f"| {label} | {gf[key]} | {gi[key]} |")
    ops = sorted(set(gf["op_types"]) | set(gi["op_types"]))
    lines += ["", "| op type | fp32 | int8 |", "| --- | ---: | ---: |"]
    for op in sorted(ops, key=lambda o: (-gi["op_types"].get(o, 0), o)):
        lines.append(f"| {op} | {gf['op_types'].get(op, 0)} | {gi['op_types'].get(op, 0)} |")
    lines += ["", "Where the int8 model's Q/DQ nodes sit (producer -> node -> consumers):", ""]
    lines += [f"- {k}: {v}" for k, v in gi["qdq_placement"].items()] or ["- none"]
    for r in report["settings"]:
        lines += ["", f"## Profile: batch {r['batch']}, {r['threads']} thread(s)", ""]
        lines += [
            "| role | fp32 µs | fp32 share | int8 µs | int8 share |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        pf, pi = r["profile"]["fp32"], r["profile"]["int8"]
        for role in ROLES:
            a, b = pf["by_role"].get(role), pi["by_role"].get(role)
            if a is None and b is None:
                continue
            cell = [(f"{x['us']:.0f}", f"{x['share'] * 100:.1f} %") if x else ("–", "–") for x in (a, b)]
            lines.append(f"| {ROLE_TEXT[role]} | {cell[0][0]} | {cell[0][1]} | {cell[1][0]} | {cell[1][1]} |")
        lines.append(
            f"| **kernel total** | {pf['kernel_total_us']:.0f} | 100 % | {pi['kernel_total_us']:.0f} | 100 % |"
        )
        lines += ["", "| int8 op type | nodes | µs | share | kind |", "| --- | ---: | ---: | ---: | --- |"]
        for op, g in pi["by_op_type"].items():
            lines.append(f"| {op} | {g['nodes']} | {g['us']:.0f} | {g['share'] * 100:.1f} % | {g['kind']} |")
        q = r["quantized_layers"]
        lines += [
            "",
            "| quantized layer | fp32 op | fp32 µs | int8 op | int8 µs | fp32/int8 |",
            "| --- | --- | ---: | --- | ---: | ---: |",
        ]
        for layer in q["layers"]:
            lines.append(
                f"| `{layer['node']}` | {layer['fp32_op']} | {layer['fp32_us']:.0f} | {layer['int8_op']} | "
                f"{layer['int8_us']:.0f} | {layer['fp32_us'] / layer['int8_us']:.2f}x |"
            )
        for node, us in q["unpaired_integer_us"].items():
            lines.append(f"| `{node}` | (fused into the float Gemm) | – | integer | {us:.0f} | |")
        lines.append(
            f"| **all, + {q['qdq_us']:.0f} µs of Q/DQ** | | {q['fp32_us']:.0f} | | {q['int8_with_qdq_us']:.0f} | "
            f"{q['speedup_with_qdq']:.2f}x |"
        )
        lines += [
            "",
            f"If the quantized layers cost nothing, the model would be at most {q['bound_if_free']:.2f}x faster "
            "than fp32 at this setting (their share of the fp32 kernel time, Amdahl).",
        ]
        lines += ["", "| int8 slowest nodes | op | role | kind | µs | share |"]
        lines.append("| --- | --- | --- | --- | ---: | ---: |")
        for n in pi["top_nodes"][:8]:
            lines.append(
                f"| `{n['node']}` | {n['op_type']} | {n['role']} | {n['kind']} | {n['median_us']:.0f} | "
                f"{n['share'] * 100:.1f} % |"
            )
    return "\n".join(lines) + "\n"


def cpu_flags() -> list[str]:
    """The SIMD features int8 GEMM dispatch cares about."""
    from pointkd.bench.device import cpu_flags as device_cpu_flags

    return device_cpu_flags(("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import onnx

    from pointkd.bench import harness
    from pointkd.data import fixed_subset, load_modelnet40
    from pointkd.process import busy_cores
    from pointkd.runtime.ort import make_session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "benchmarks" / "checkpoints" / "student_lsp.pt")
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--profile-runs", type=int, default=200, help="profiled runs at batch 1 (fewer at larger)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "runs" / "int8_profile" / "artifacts")
    # --runs: timed runs per format at batch 1 (fewer at larger batches)
    harness.add_common_args(parser, threads=[1, 2], repeats=600, rounds=20, repeats_flags=("--runs",))
    args = parser.parse_args(argv)

    info = harness.device_header(args.threads)
    out_dir = harness.out_folder(args.out, info)
    files = artifacts(args.checkpoint, args.artifacts, args.points)
    manifest = json.loads(files["manifest"].read_text())
    busy = busy_cores()
    data = load_modelnet40(None, num_points=args.points)
    clouds = fixed_subset(data.test_x[: max(args.batches)], args.points).numpy().astype(np.float32)
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint.resolve().relative_to(ROOT))
        if args.checkpoint.resolve().is_relative_to(ROOT)
        else str(args.checkpoint),
        "points": args.points,
        "device": info,
        "cpu_flags": cpu_flags(),
        "busy_cores_before": busy,
        "accuracy": manifest["accuracy"],
        "calibration": manifest["calibration"],
        "sizes": {"fp32_bytes": files["fp32"].stat().st_size, "int8_bytes": files["int8"].stat().st_size},
        "graphs": {},
        "settings": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        roles = {}
        for fmt in ("fp32", "int8"):
            opt = onnx.load(str(optimized_model(files[fmt], Path(tmp) / f"{fmt}.opt.onnx")))
            report["graphs"][fmt] = graph_summary(opt)
            roles[fmt] = node_roles(opt)
            report["graphs"][fmt]["float_matmuls_knn"] = sum(
                n.op_type in MATMUL_OPS and roles[fmt][n.name] == "knn" for n in opt.graph.node
            )
        for threads in args.threads:
            sessions = {fmt: make_session(files[fmt], threads=threads) for fmt in ("fp32", "int8")}
            for batch in args.batches:
                feed = {"points": np.ascontiguousarray(clouds[:batch])}
                scale = max(1, batch // 4)
                runs, prof_runs = max(20, args.repeats // scale), max(10, args.profile_runs // scale)
                times = interleaved(sessions, feed, runs, args.rounds, warmup=max(2, 20 // scale))
                row: dict[str, Any] = {"batch": batch, "threads": threads}
                row["latency"] = {fmt: harness.summary(t) for fmt, t in times.items()}
                row["speedup_int8_p50"] = round(row["latency"]["fp32"]["p50_ms"] / row["latency"]["int8"]["p50_ms"], 3)
                paths = {fmt: files[fmt] for fmt in ("fp32", "int8")}
                profiles = profile_sessions(paths, threads, feed, prof_runs, str(Path(tmp) / f"b{batch}-t{threads}"))
                row["profile"] = {
                    fmt: aggregate(load_profile(path), roles[fmt], skip_runs=1, top=12)
                    for fmt, path in profiles.items()
                }
                row["quantized_layers"] = quantized_pairs(row["profile"]["fp32"], row["profile"]["int8"])
                for agg in row["profile"].values():
                    del agg["per_node_us"], agg["node_ops"]
                report["settings"].append(row)
                print(
                    f"batch {batch}, {threads} thread(s): fp32 {row['latency']['fp32']['p50_ms']:.3f} ms, "
                    f"int8 {row['latency']['int8']['p50_ms']:.3f} ms ({row['speedup_int8_p50']:.2f}x)",
                    flush=True,
                )
    report["why"] = why(report)
    print(report["why"])
    harness.write(out_dir, "int8_profile", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
