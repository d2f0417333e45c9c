"""The server's strict JSON parse of one request body, this checkout's ``serving.strict_json`` against another's
(``--before DIR``: a copy of an earlier commit, e.g. ``git archive COMMIT | tar -x -C DIR``).

Bodies as the load test sends them: ``/predict`` JSON ``{"points": ...}`` and a v2 JSON infer request, each of one
1024-point cloud (3,072 floats, ``json.dumps`` of float32 values as Python floats). Timed: ``load_json`` alone and
``load_json`` + ``numbers_of`` (what a parse worker does before resampling), and, for a version that has it,
``load_json`` + ``rows_of_three`` (the ``/predict`` fast path: byte checks in C instead of a type check per value),
min and median of ``--repeats`` rounds of ``--calls`` calls each, taking turns. Pure CPU on one thread:
min-of-rounds is the figure least moved by other load.

Run: ``python benchmarks/json_parse.py --before DIR`` -> ``benchmarks/results/json_parse.{md,json}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np

from pointkd.bench import harness
from serving import strict_json

RESULTS = Path(__file__).parent / "results"


def bodies() -> dict[str, tuple[bytes, str]]:
    cloud = np.random.default_rng(0).standard_normal((1024, 3)).astype(np.float32)
    tensor = {"name": "points", "shape": [1, 1024, 3], "datatype": "FP32", "data": cloud.ravel().tolist()}
    return {
        "json /predict": (json.dumps({"points": cloud.tolist()}).encode(), "points"),
        "v2 JSON infer": (json.dumps({"inputs": [tensor]}).encode(), "data"),
    }


def module_at(folder: Path):
    spec = importlib.util.spec_from_file_location("strict_json_before", folder / "serving" / "strict_json.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(fns: dict, calls: int, repeats: int, warmup: int = 0) -> dict:
    """Each function's min and median ms per call over ``repeats`` rounds of ``calls`` calls, the functions taking
    turns round by round (:func:`pointkd.bench.harness.interleaved`, so that a burst of other load falls on all of
    them, not on one)."""
    batches = {name: (lambda fn=fn: [fn() for _ in range(calls)]) for name, fn in fns.items()}
    rounds = harness.interleaved(batches, repeats, repeats, warmup)  # one timed batch per function per round
    out = {}
    for name, r in rounds.items():
        s = harness.summary([t / calls for t in r], quantiles=(50,), low=True)
        out[name] = {"min_ms": s["min_ms"], "median_ms": s["p50_ms"]}
    return out


def numbers(mod, body: bytes, field: str):
    doc = mod.load_json(body, 10**7)
    value = doc["points"] if field == "points" else doc["inputs"][0]["data"]
    return mod.numbers_of(value, field)


def fast(mod, body: bytes):
    out = mod.rows_of_three(body, mod.load_json(body, 10**7))
    assert out is not None, "the fast path declined the load test's body"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--before-commit", default="", help="the commit --before was copied from, for the report")
    ap.add_argument("--calls", type=int, default=50, help="calls per timed round")
    out = "DIR/NAME: writes DIR/NAME.{json,md} (default benchmarks/results/json_parse)"
    harness.add_common_args(ap, out=out, threads=None, repeats=15, warmup=0)  # --repeats: rounds of --calls calls
    args = ap.parse_args()
    info = harness.device_header([1])
    versions = {"before": module_at(args.before), "after": strict_json}
    rows = {}
    for name, (body, field) in bodies().items():
        fns = {}
        for version, mod in versions.items():
            fns[(version, "load_json")] = lambda m=mod, b=body: m.load_json(b, 10**7)
            fns[(version, "load_json + numbers_of")] = lambda m=mod, b=body, f=field: numbers(m, b, f)
            if field == "points" and hasattr(mod, "rows_of_three"):
                fns[(version, "load_json + rows_of_three")] = lambda m=mod, b=body: fast(m, b)
        for (version, what), t in timed(fns, args.calls, args.repeats, args.warmup).items():
            rows.setdefault(f"{name} / {version}", {"bytes": len(body)})[what] = t
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"device": info, "after_commit": commit, "before_commit": args.before_commit, "calls": args.calls}
    report |= {"repeats": args.repeats, "rows": rows}
    lines = [
        "# Strict JSON parse of one 1024-point body: before / after",
        "",
        f"`python benchmarks/json_parse.py --before DIR` (before: {args.before_commit}, after: {commit}); min and "
        f"median ms per call of {args.repeats} rounds x {args.calls} calls, one thread, under /work/logs/paused.sh.",
        "",
        "| body / version | bytes | load_json min | median | + numbers_of min | median | + rows_of_three min | "
        "median |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        a, b = r["load_json"], r["load_json + numbers_of"]
        c = r.get("load_json + rows_of_three", {"min_ms": "–", "median_ms": "–"})
        lines.append(
            f"| {name} | {r['bytes']} | {a['min_ms']} | {a['median_ms']} | {b['min_ms']} | {b['median_ms']} | "
            f"{c['min_ms']} | {c['median_ms']} |"
        )
    harness.write(*harness.out_stem(args.out, RESULTS / "json_parse"), report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
