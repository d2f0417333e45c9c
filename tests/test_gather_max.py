"""``pointkd.GatherMax`` against ONNX Runtime's own Gather + Reshape + ReduceMax (bit for bit, NaN included), its
error paths, and the rewrite of an exported EdgeConv. Skips when the operator's library cannot be built here."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from pointkd.export.knn_op import DOMAIN, build_knn_op, fuse_knn  # noqa: E402
from pointkd.export.knn_op.fuse_gather_max import GATHER_MAX, fuse_gather_max_model  # noqa: E402
from pointkd.runtime.errors import KnnOpUnavailable  # noqa: E402

OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)]


@pytest.fixture(scope="module")
def library():
    try:
        return build_knn_op()
    except KnnOpUnavailable as err:
        pytest.skip(f"pointkd operators not buildable here: {err}")


SLOPE = 0.2


def stock_model(index_shape: list[int], c: int, tail: bool = False, bias: np.ndarray | None = None):
    """The export's ``ReduceMax(Reshape(Gather(data, Reshape(index, [-1])), index_shape + [c]), axes=[-2])``; with
    ``tail``, then ``LeakyRelu(m + (centre + bias))`` as DeployEdgeConv's output."""
    m = "m" if tail else "out"
    nodes = [
        helper.make_node("Reshape", ["index", "flat"], ["index_flat"]),
        helper.make_node("Gather", ["data", "index_flat"], ["gathered"], axis=0),
        helper.make_node("Reshape", ["gathered", "edges"], ["edge"]),
        helper.make_node("ReduceMax", ["edge", "axes"], [m], keepdims=0),
    ]
    inits = [
        helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("edges", TensorProto.INT64, [len(index_shape) + 1], [*index_shape, c]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [len(index_shape) - 1]),
    ]
    inputs = [
        helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, c]),
        helper.make_tensor_value_info("index", TensorProto.INT64, index_shape),
    ]
    if tail:
        nodes += [
            helper.make_node("Add", ["centre", "bias"], ["biased"]),
            helper.make_node("Add", [m, "biased"], ["pre"]),
            helper.make_node("LeakyRelu", ["pre"], ["out"], alpha=SLOPE),
        ]
        inits.append(helper.make_tensor("bias", TensorProto.FLOAT, [c], bias))
        inputs.append(helper.make_tensor_value_info("centre", TensorProto.FLOAT, [*index_shape[:-1], c]))
    graph = helper.make_graph(
        nodes, "stock", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits
    )
    return helper.make_model(graph, opset_imports=OPSETS[:1])


def fused_model(centre: bool = False, bias: np.ndarray | None = None, slope: float | None = None):
    names = ["data", "index", *(["centre"] if centre else []), *(["bias"] if bias is not None else [])]
    attrs = {} if slope is None else {"negative_slope": slope}
    graph = helper.make_graph(
        [helper.make_node(GATHER_MAX, names, ["out"], domain=DOMAIN, **attrs)],
        "fused",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64 if name == "index" else TensorProto.FLOAT, None)
            for name in names
            if name != "bias"
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [] if bias is None else [helper.make_tensor("bias", TensorProto.FLOAT, list(bias.shape), bias.reshape(-1))],
    )
    return helper.make_model(graph, opset_imports=OPSETS)


def _run(model, feeds: dict, library=None, threads: int = 1) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if library is not None:
        opts.register_custom_ops_library(str(library))
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize(
    ("index_shape", "rows", "c"),
    [([2, 300, 10], 600, 32), ([1, 1024, 20], 1024, 128), ([3, 7, 5], 21, 5), ([9, 1], 4, 3), ([2, 0, 4], 8, 8)],
)
def test_matches_gather_reducemax_bit_for_bit(library, index_shape, rows, c):
    """Repeated indices, C not a multiple of 4, k = 1 and an empty index; values where the max is often a zero of
    either sign: the same bits as ONNX Runtime, 1 and 2 threads. With NaN planted: NaN exactly where a gathered value
    is NaN (ONNX Runtime's own NaN rule depends on the shape), its bits elsewhere."""
    rng = np.random.default_rng(rows + c)
    index = rng.integers(0, rows, index_shape)
    data = -np.abs(rng.standard_normal((rows, c))).astype(np.float32)
    zeros = rng.random(data.shape) < 0.3
    data[zeros] = np.where(rng.random(zeros.sum()) < 0.5, np.float32(-0.0), np.float32(0.0))
    with_nan = rng.standard_normal((rows, c)).astype(np.float32)
    with_nan[rng.random(data.shape) < 0.02] = np.nan
    if index.size == 0:  # no stock twin: Reshape reads a 0 in its target as "keep this dimension"
        assert _run(fused_model(), {"data": data, "index": index}, library).shape == (*index_shape[:-1], c)
        return
    for values in (data, with_nan):
        feeds = {"data": values, "index": index}
        want = _run(stock_model(index_shape, c), feeds)
        nan = np.isnan(values[index]).any(-2)
        for threads in (1, 2):
            got = _run(fused_model(), feeds, library, threads)
            assert got.shape == want.shape == (*index_shape[:-1], c)
            np.testing.assert_array_equal(np.isnan(got), nan)
            np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
        if values is data and index.size >= 100:  # the data does test the sign of zero
            assert np.signbit(want[want == 0]).any() and not np.signbit(want[want == 0]).all()


@pytest.mark.parametrize("c", [32, 7])
def test_tail_matches_add_and_leakyrelu_bit_for_bit(library, c):
    """With the EdgeConv tail ``LeakyRelu(m + (centre + bias))``: ONNX Runtime's bits, 1 and 2 threads; centre alone
    and the slope alone are each one IEEE step."""
    rng = np.random.default_rng(c)
    index_shape = [2, 200, 10]
    data = rng.standard_normal((400, c)).astype(np.float32)
    index = rng.integers(0, 400, index_shape)
    centre = rng.standard_normal((2, 200, c)).astype(np.float32)
    centre[0, 0, 0] = -0.0
    bias = rng.standard_normal(c).astype(np.float32)
    feeds = {"data": data, "index": index, "centre": centre}
    want = _run(stock_model(index_shape, c, tail=True, bias=bias), feeds)
    assert (want < 0).mean() > 0.1  # the slope is exercised
    for threads in (1, 2):
        got = _run(fused_model(centre=True, bias=bias, slope=SLOPE), feeds, library, threads)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    m = data[index].max(-2)
    np.testing.assert_array_equal(_run(fused_model(centre=True), feeds, library), m + centre)
    leaky = _run(fused_model(slope=SLOPE), {"data": data, "index": index}, library)
    np.testing.assert_array_equal(leaky, np.where(m >= 0, m, np.float32(SLOPE) * m))


def test_errors(library):
    data = np.zeros((6, 4), np.float32)
    with pytest.raises(Exception, match=r"index 6 is outside \[0, 6\)"):
        _run(fused_model(), {"data": data, "index": np.full((2, 3), 6)}, library)
    with pytest.raises(Exception, match=r"index -1 is outside"):  # Gather's negative indices are not taken
        _run(fused_model(), {"data": data, "index": np.full((2, 3), -1)}, library)
    with pytest.raises(Exception, match=r"data must be \[R, C\]"):
        _run(fused_model(), {"data": data[None], "index": np.zeros((2, 3), np.int64)}, library)
    with pytest.raises(Exception, match="k >= 1"):
        _run(fused_model(), {"data": data, "index": np.zeros((2, 0), np.int64)}, library)
    with pytest.raises(Exception, match="scalar"):
        _run(fused_model(), {"data": data, "index": np.zeros((), np.int64)}, library)
    feeds = {"data": data, "index": np.zeros((2, 3), np.int64)}
    with pytest.raises(Exception, match=r"centre must have the output's shape \[2, 4\]"):
        _run(fused_model(centre=True), {**feeds, "centre": np.zeros((2, 5), np.float32)}, library)
    with pytest.raises(Exception, match=r"bias must be \[C\] = \[4\]"):
        _run(
            fused_model(centre=True, bias=np.zeros(3, np.float32)),
            {**feeds, "centre": np.zeros((2, 4), np.float32)},
            library,
        )


def test_rewrite_only_takes_the_export_pattern():
    """The stock subgraph becomes one GatherMax, with its tail where there is one; a ReduceMax over another axis, or a
    Gather whose result has another reader, is left alone."""
    model = stock_model([2, 50, 10], 16)
    assert [f.out for f in fuse_gather_max_model(model)] == ["out"]
    assert [n.op_type for n in model.graph.node] == [GATHER_MAX]
    assert not model.graph.initializer  # the reshape targets and axes went with their nodes

    with_tail = stock_model([2, 50, 10], 16, tail=True, bias=np.arange(16, dtype=np.float32))
    (found,) = fuse_gather_max_model(with_tail)
    assert (found.out, found.centre, found.bias, found.negative_slope) == (
        "out",
        "centre",
        "bias",
        pytest.approx(SLOPE),
    )
    (node,) = with_tail.graph.node
    assert list(node.input) == ["data", "index", "centre", "bias"] and node.attribute[0].name == "negative_slope"
    assert [i.name for i in with_tail.graph.initializer] == ["bias"]

    with_dead = stock_model([2, 50, 10], 16)  # a node nothing reads, before the rewrite: left as it was
    with_dead.graph.node.insert(0, helper.make_node("Identity", ["data"], ["unused"], name="dead"))
    fuse_gather_max_model(with_dead)
    assert [n.op_type for n in with_dead.graph.node] == ["Identity", GATHER_MAX]

    other_axis = stock_model([2, 50, 10], 16)
    other_axis.graph.initializer[2].CopyFrom(helper.make_tensor("axes", TensorProto.INT64, [1], [1]))
    assert fuse_gather_max_model(other_axis) == []

    shared = stock_model([2, 50, 10], 16)
    shared.graph.output.append(helper.make_tensor_value_info("gathered", TensorProto.FLOAT, None))
    assert fuse_gather_max_model(shared) == []
    assert [n.op_type for n in shared.graph.node] == ["Reshape", "Gather", "Reshape", "ReduceMax"]


def test_fuse_knn_can_leave_the_gathers(tmp_path):
    """``fuse_knn(gather_max=False)`` rewrites only the kNNs (the stock Gathers stay)."""
    import torch

    from pointkd.export.onnx_export import export_onnx
    from pointkd.models import create_model

    model = create_model("dgcnn_student").eval()
    torch.manual_seed(0)
    stock = export_onnx(model, tmp_path / "stock.onnx", 64)
    fuse_knn(stock, tmp_path / "knn.onnx", gather_max=False)
    fuse_knn(stock, tmp_path / "all.onnx")
    ops = {name: [n.op_type for n in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node] for name in ("knn", "all")}
    assert ops["knn"].count("Gather") == len(model.convs) and GATHER_MAX not in ops["knn"]
    assert ops["all"].count(GATHER_MAX) == len(model.convs) and "Gather" not in ops["all"]
