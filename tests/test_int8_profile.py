"""benchmarks/int8_profile.py's aggregation on a tiny quantized graph (the real profile of the student is committed in
benchmarks/results/amd-epyc-unknown-avx2-2c/int8_profile.*): roles, integer-kernel and Q/DQ counts in the graph ONNX
Runtime runs, and per-op shares of a real ORT profile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pointkd.export.quantize import quantize_int8  # noqa: E402
from pointkd.runtime.ort import make_session  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def profiler():
    spec = importlib.util.spec_from_file_location("int8_profile", ROOT / "benchmarks" / "int8_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model(path: Path) -> Path:
    """points [B, 8, 3] -> xyz projection (float: it reads the input) -> ReLU -> MatMul -> max over points -> Gemm,
    plus a kNN branch (score MatMul of the projection with its transpose -> TopK) whose indices are an output."""
    rng = np.random.default_rng(0)
    w = {
        "w1": rng.normal(size=(3, 16)),
        "w2": rng.normal(size=(16, 16)) / 4,
        "w3": rng.normal(size=(16, 4)) / 4,
        "b3": rng.normal(size=(4,)),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "k"))
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"))
    nodes = [
        helper.make_node("MatMul", ["points", "w1"], ["h1"], name="proj"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu"),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="edge"),
        helper.make_node("ReduceMax", ["h2", "axis"], ["pooled"], name="pool", keepdims=0),
        helper.make_node("Gemm", ["pooled", "w3", "b3"], ["logits"], name="head"),
        helper.make_node("Transpose", ["h1"], ["h1t"], name="keys", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["h1", "h1t"], ["score"], name="score"),
        helper.make_node("TopK", ["score", "k"], ["vals", "idx"], name="topk", sorted=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", 8, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 8, 2]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int8_profile")
    fp32 = tiny_model(tmp / "tiny.onnx")
    calib = np.random.default_rng(1).normal(size=(32, 8, 3)).astype(np.float32)
    int8 = quantize_int8(fp32, tmp / "tiny.int8.onnx", calib)
    return tmp, fp32, int8


def profile(prof, path: Path, prefix: Path, runs: int = 6) -> list[dict]:
    session = make_session(path, threads=1, profile_prefix=str(prefix))
    feed = {"points": np.random.default_rng(2).normal(size=(2, 8, 3)).astype(np.float32)}
    for _ in range(runs):
        session.run(None, feed)
    return prof.load_profile(session.end_profiling())


def test_graph_counts_integer_kernels_and_qdq(tiny):
    prof = profiler()
    tmp, fp32, int8 = tiny
    qdq_model = onnx.load(str(int8))
    produced_by = {out: n.op_type for n in qdq_model.graph.node for out in n.output}
    # the quantizer's choice: MatMul/Gemm nodes reading a DequantizeLinear (the xyz projection and kNN score stay float)
    quantized = {
        n.name
        for n in qdq_model.graph.node
        if n.op_type in ("MatMul", "Gemm") and any(produced_by.get(i) == "DequantizeLinear" for i in n.input)
    }
    assert quantized == {"edge", "head"}

    opt = onnx.load(str(prof.optimized_model(int8, tmp / "tiny.int8.opt.onnx")))
    summary = prof.graph_summary(opt)
    by_op = {n.name: n.op_type for n in opt.graph.node}
    integer = {name for name, op in by_op.items() if op in prof.INTEGER_OPS}
    assert summary["integer_kernels"] == len(integer)
    assert {"edge", "head"} <= integer  # both fused into integer kernels, names kept
    # ORT fuses the score MatMul with the Transpose into a FusedMatMul named after it; it stays float
    score = next(name for name in by_op if name.startswith("score"))
    assert by_op[score] in ("MatMul", "FusedMatMul") and by_op["proj"] == "MatMul"
    assert summary["float_matmuls"] == 2
    assert summary["qdq_nodes"] == sum(op in prof.QDQ_OPS for op in by_op.values()) > 0
    assert sum(summary["qdq_placement"].values()) == summary["qdq_nodes"]

    roles = prof.node_roles(opt)
    assert roles[score] == roles["topk"] == "knn"
    assert roles["proj"] == "matmul_float" and roles["edge"] == roles["head"] == "matmul_int8"
    assert roles["pool"] == "max"

    fp32_opt = onnx.load(str(prof.optimized_model(fp32, tmp / "tiny.opt.onnx")))
    assert prof.graph_summary(fp32_opt)["integer_kernels"] == prof.graph_summary(fp32_opt)["qdq_nodes"] == 0


def test_profile_shares_and_quantized_pairs(tiny):
    prof = profiler()
    tmp, fp32, int8 = tiny
    opt = onnx.load(str(prof.optimized_model(int8, tmp / "tiny.int8.opt2.onnx")))
    roles = prof.node_roles(opt)
    events = profile(prof, int8, tmp / "int8")
    agg = prof.aggregate(events, roles, skip_runs=1)

    names = {n.name for n in opt.graph.node}
    assert set(agg["per_node_us"]) <= names  # the profile names the nodes of the saved optimised graph
    assert agg["runs"] == 5 and all(n["runs"] == 5 for n in agg["top_nodes"])
    for key in ("by_op_type", "by_kind", "by_role"):
        assert sum(g["share"] for g in agg[key].values()) == pytest.approx(1.0)
        assert sum(g["nodes"] for g in agg[key].values()) == agg["nodes"]
    integer_nodes = {n.name for n in opt.graph.node if n.op_type in prof.INTEGER_OPS}
    assert agg["node_kinds"]["integer"] == len(integer_nodes)
    assert agg["node_kinds"]["qdq"] == sum(n.op_type in prof.QDQ_OPS for n in opt.graph.node)
    assert agg["by_role"]["knn"]["nodes"] == sum(r == "knn" for r in roles.values())
    assert agg["kernel_total_us"] == pytest.approx(sum(agg["per_node_us"].values()), abs=0.01)

    base = prof.aggregate(profile(prof, fp32, tmp / "fp32"), skip_runs=1)
    pairs = prof.quantized_pairs(base, agg)
    assert {row["node"] for row in pairs["layers"]} == integer_nodes & set(base["per_node_us"])
    assert {row["fp32_op"] for row in pairs["layers"]} <= {"MatMul", "Gemm", "FusedGemm"}
    assert pairs["bound_if_free"] >= 1.0


def test_node_times_drops_warmup_and_takes_medians():
    prof = profiler()

    def ev(name, op, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "args": {"op_name": op}}

    events = [
        {"cat": "Session", "name": "model_run", "dur": 9000},
        ev("a", "MatMul", 900),
        ev("b", "DequantizeLinear", 100),
        {"cat": "Node", "name": "a_fence_before", "dur": 5},
        {"cat": "Session", "name": "model_run", "dur": 1000},
        ev("a", "MatMul", 30),
        ev("b", "DequantizeLinear", 10),
        {"cat": "Session", "name": "model_run", "dur": 1200},
        ev("a", "MatMul", 50),
        ev("b", "DequantizeLinear", 10),
    ]
    agg = prof.aggregate(events, skip_runs=1)
    assert agg["per_node_us"] == {"a": 40.0, "b": 10.0}
    assert agg["by_kind"]["qdq"]["share"] == pytest.approx(0.2)
    assert agg["by_role"]["matmul_float"]["share"] == pytest.approx(0.8)
    assert agg["run_p50_ms"] == pytest.approx(1.1)
