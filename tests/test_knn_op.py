"""The fused kNN operator ``pointkd.KnnTopK`` against ONNX Runtime's own MatMul + TopK, ``torch.topk`` and the stock
exported students; its graph rewrite, error paths and build. Skips when no C++ compiler (or no headers) is at hand."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from pointkd.export.knn_op import (  # noqa: E402
    DOMAIN,
    OP_TYPE,
    build_knn_op,
    fuse_knn,
)
from pointkd.export.knn_op.build import _verify_tarball, find_compiler  # noqa: E402
from pointkd.export.knn_op.fuse_gather_max import GATHER_MAX  # noqa: E402
from pointkd.export.onnx_export import export_onnx, knn_nodes  # noqa: E402
from pointkd.runtime.errors import ExportError, KnnOpUnavailable  # noqa: E402
from pointkd.runtime.knn_op import make_fused_session  # noqa: E402
from pointkd.runtime.ort import make_session  # noqa: E402


@pytest.fixture(scope="module")
def library():
    try:
        return build_knn_op()
    except KnnOpUnavailable as err:
        pytest.skip(f"fused kNN operator not buildable here: {err}")


def _inputs(b: int, n: int, d: int) -> list:
    return [
        helper.make_tensor_value_info("query", TensorProto.FLOAT, ["b", n, d]),
        helper.make_tensor_value_info("key", TensorProto.FLOAT, ["b", n, d]),
    ]


def stock_model(k: int, n: int, d: int):
    """The exported plain kNN: ``TopK(MatMul(query, Transpose(key)), k)`` (ONNX Runtime's own kernels)."""
    nodes = [
        helper.make_node("Transpose", ["key"], ["key_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["query", "key_t"], ["score"]),
        helper.make_node("TopK", ["score", "K"], ["values", "indices"], sorted=0, largest=1, axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "stock",
        _inputs(1, n, d),
        [helper.make_tensor_value_info("indices", TensorProto.INT64, None)],
        [helper.make_tensor("K", TensorProto.INT64, [1], [k])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def fused_model(
    k: int,
    n: int,
    d: int,
    seeded: bool = False,
    dtype=TensorProto.FLOAT,
    shaped: bool = True,
    sorted_: int | None = None,
):
    inputs = _inputs(1, n, d)
    for info in inputs:
        info.type.tensor_type.elem_type = dtype
        if not shaped:  # any rank reaches the operator
            info.type.tensor_type.ClearField("shape")
    names = ["query", "key"]
    if seeded:
        inputs.append(helper.make_tensor_value_info("seed", TensorProto.INT64, ["b", n, "s"]))
        names.append("seed")
    attrs = {} if sorted_ is None else {"sorted": sorted_}
    node = helper.make_node(OP_TYPE, names, ["indices"], domain=DOMAIN, k=k, **attrs)
    graph = helper.make_graph(
        [node], "fused", inputs, [helper.make_tensor_value_info("indices", TensorProto.INT64, None)]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)])


def _session(model, library=None, threads: int = 1):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if library is not None:
        opts.register_custom_ops_library(str(library))
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_stock(query: np.ndarray, key: np.ndarray, k: int, threads: int = 1) -> np.ndarray:
    _, n, d = query.shape
    return _session(stock_model(k, n, d), threads=threads).run(None, {"query": query, "key": key})[0]


def run_fused(library, query, key, k: int, seed=None, threads: int = 1) -> np.ndarray:
    _, n, d = query.shape
    feeds = {"query": query, "key": key}
    if seed is not None:
        feeds["seed"] = seed
    return _session(fused_model(k, n, d, seed is not None), library, threads).run(None, feeds)[0]


def knn_inputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``query = [x, 1]``, ``key = [x, -½‖x‖²]`` as the export builds them (float32)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    sq = (x * x).sum(-1, keepdims=True, dtype=np.float32)
    return np.concatenate([x, np.ones_like(sq)], -1), np.concatenate([x, np.float32(-0.5) * sq], -1)


def differing_rows(a: np.ndarray, b: np.ndarray) -> int:
    """Rows whose neighbour *sets* differ."""
    return int((~(np.sort(a, -1) == np.sort(b, -1)).all(-1)).sum())


# --- against ONNX Runtime's MatMul + TopK -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "n", "c", "k"),
    [(2, 512, 3, 10), (1, 1024, 32, 10), (3, 100, 64, 7), (2, 37, 4, 37), (1, 300, 128, 20), (2, 50, 199, 3)],
)
def test_random_rows_match_ort_topk(library, b, n, c, k):
    """Random features, plain and seeded, 1 and 2 threads; D = c + 1 > 128 exercises MLAS's two K slices."""
    query, key = knn_inputs(np.random.default_rng(n + c).standard_normal((b, n, c)))
    want = run_stock(query, key, k)
    for threads in (1, 2):
        got = run_fused(library, query, key, k, threads=threads)
        assert got.shape == (b, n, k) and got.dtype == np.int64
        assert differing_rows(got, want) == 0
    assert differing_rows(run_fused(library, query, key, k, seed=want[..., ::-1].copy(), threads=2), want) == 0


@pytest.mark.parametrize(("c", "eps"), [(32, 1e-6), (64, 3e-7), (3, 1e-6)])
def test_near_ties_match_ort_bit_for_bit(library, c, eps):
    """Integer features plus noise at the float32 rounding level: the neighbour sets hinge on the scores' last bits.
    A float32 score summed in another order picks different sets on these rows (checked, so the data is hard);
    the operator must pick exactly ONNX Runtime's."""
    rng = np.random.default_rng(c)
    x = rng.integers(-2, 3, (4, 512, c)) + eps * rng.standard_normal((4, 512, c))
    query, key = knn_inputs(x)
    want = run_stock(query, key, 10, threads=2)
    other_order = np.einsum("bid,bjd->bij", query[..., ::-1], key[..., ::-1])
    assert differing_rows(np.argsort(-other_order, -1, kind="stable")[..., :10], want) > 10
    assert differing_rows(run_fused(library, query, key, 10, threads=2), want) == 0
    assert differing_rows(run_fused(library, query, key, 10, seed=want, threads=2), want) == 0


def test_exact_ties_resolve_to_the_lower_index(library):
    """Duplicate points and small-integer features (float32 scores exact, ties everywhere): the set and the order
    are ``(score desc, index asc)``, as ONNX Runtime's TopK resolves equal values."""
    rng = np.random.default_rng(1)
    x = rng.integers(-1, 2, (3, 64, 3)).astype(np.float32)
    x[:, 32:] = x[:, :32]  # every point twice
    query, key = knn_inputs(x)
    score = np.einsum("bid,bjd->bij", query.astype(np.float64), key.astype(np.float64))  # exact here
    order = np.argsort(-score, -1, kind="stable")[..., :12]
    got = run_fused(library, query, key, 12)
    np.testing.assert_array_equal(got, order)
    assert differing_rows(got, run_stock(query, key, 12)) == 0
    all_equal = np.zeros((1, 40, 5), np.float32)  # every score 0: the first k columns
    np.testing.assert_array_equal(run_fused(library, all_equal, all_equal, 6)[0], np.tile(np.arange(6), (40, 1)))


def test_matches_torch_topk(library):
    """Random clouds: the same neighbour sets as ``torch.topk`` over ``knn_topk``'s float64 scores."""
    x = torch.randn(2, 512, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    query, key = knn_inputs(x.numpy())
    score = torch.from_numpy(query).double() @ torch.from_numpy(key).double().transpose(1, 2)
    want = score.topk(20, dim=-1, sorted=False).indices.numpy()
    assert differing_rows(run_fused(library, query, key, 20), want) == 0


def test_unsorted_gives_the_same_sets(library):
    """sorted=0 (the exported TopK's setting) skips ordering each row: the same neighbour sets, plain and seeded;
    sorted=1 (the default) lists them best first."""
    query, key = knn_inputs(np.random.default_rng(6).standard_normal((2, 300, 16)))
    feeds = {"query": query, "key": key}
    best_first = _session(fused_model(12, 300, 17, sorted_=1), library).run(None, feeds)[0]
    np.testing.assert_array_equal(best_first, run_fused(library, query, key, 12))
    score = np.einsum("bid,bjd->bij", query.astype(np.float64), key.astype(np.float64))
    assert (np.diff(np.take_along_axis(score, best_first, -1), axis=-1) <= 1e-9).all()
    unsorted = _session(fused_model(12, 300, 17, sorted_=0), library, threads=2).run(None, feeds)[0]
    assert differing_rows(unsorted, best_first) == 0
    seeded = _session(fused_model(12, 300, 17, seeded=True, sorted_=0), library).run(None, {**feeds, "seed": unsorted})
    assert differing_rows(seeded[0], best_first) == 0
    with pytest.raises(Exception, match="sorted must be 0 or 1"):
        _session(fused_model(12, 300, 17, sorted_=2), library).run(None, feeds)


def test_seed_is_only_a_hint(library):
    """Random distinct seeds, seeds with duplicates (a bound that is not one) and the true neighbours all give the
    unseeded answer; fewer than k seeds are refused."""
    rng = np.random.default_rng(2)
    query, key = knn_inputs(rng.standard_normal((2, 200, 8)))
    want = run_fused(library, query, key, 10)
    random_seed = np.stack([np.stack([rng.permutation(200)[:12] for _ in range(200)]) for _ in range(2)])
    duplicated = np.broadcast_to(want[..., :1], (2, 200, 10)).copy()  # the best column, 10 times: tau too high
    for seed in (want, random_seed, duplicated):
        np.testing.assert_array_equal(run_fused(library, query, key, 10, seed=seed), want)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_instruction_sets_agree(library, isa, monkeypatch):
    query, key = knn_inputs(np.random.default_rng(3).standard_normal((2, 300, 33)))
    want = run_stock(query, key, 10)
    monkeypatch.setenv("POINTKD_KNN_ISA", isa)
    try:
        got = run_fused(library, query, key, 10, threads=2)
    except Exception as err:
        if "this CPU" in str(err):
            pytest.skip(f"{isa}: {err}")
        raise
    assert differing_rows(got, want) == 0


def test_nan_scores_are_never_picked(library):
    query, key = knn_inputs(np.random.default_rng(4).standard_normal((1, 50, 4)))
    key[0, 7, 0] = np.nan  # column 7 scores NaN in every row
    got = run_fused(library, query, key, 5)
    assert not (got == 7).any()
    finite = query.copy(), key.copy()
    finite[1][0, 7] = [0, 0, 0, 0, -1e30]  # column 7 last in every row instead
    assert differing_rows(got, run_stock(*finite, 5)) == 0


# --- error paths ------------------------------------------------------------------------------------------------


def test_errors(library, monkeypatch):
    query, key = knn_inputs(np.random.default_rng(5).standard_normal((1, 16, 3)))
    with pytest.raises(Exception, match="larger than the number of points"):
        run_fused(library, query, key, 17)
    with pytest.raises(Exception, match=r"query must be \[B, N, D\]"):
        _session(fused_model(4, 16, 4, shaped=False), library).run(None, {"query": query[0], "key": key[0]})
    with pytest.raises(Exception, match="key must have the query's shape"):
        _session(fused_model(4, 16, 4, shaped=False), library).run(None, {"query": query, "key": key[:, :8]})
    with pytest.raises(Exception, match="S >= k"):
        run_fused(library, query, key, 4, seed=np.zeros((1, 16, 3), np.int64))
    with pytest.raises(Exception, match="outside"):
        run_fused(library, query, key, 4, seed=np.full((1, 16, 4), 16, np.int64))
    with pytest.raises(Exception, match=r"(?i)type"):  # float64: refused by the operator's declared types
        _session(fused_model(4, 16, 4, dtype=TensorProto.DOUBLE), library).run(
            None, {"query": query.astype(np.float64), "key": key.astype(np.float64)}
        )
    monkeypatch.setenv("POINTKD_KNN_ISA", "sse9")
    with pytest.raises(Exception, match="POINTKD_KNN_ISA"):
        run_fused(library, query, key, 4)


def test_no_compiler_is_a_clear_error():
    with pytest.raises(KnnOpUnavailable, match="no C\\+\\+ compiler"):
        find_compiler("/nonexistent/g++")
    with pytest.raises(KnnOpUnavailable, match="no C\\+\\+ compiler"):
        build_knn_op(compiler="/nonexistent/g++")


def test_header_tarball_is_verified(tmp_path):
    fake = tmp_path / "onnxruntime.tgz"
    fake.write_bytes(b"not the published tarball")
    with pytest.raises(KnnOpUnavailable, match="does not match"):
        _verify_tarball(fake)


def test_build_is_cached_and_keeps_isa_code_apart(library):
    """A second build is a lookup; AVX-512 / AVX2 instructions occur only in their own kernels' functions (the
    linker merged no inline copy built for a wider CPU into the code every CPU runs)."""
    assert build_knn_op() == library
    if shutil.which("objdump") is None:
        pytest.skip("no objdump")
    asm = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(library)], capture_output=True, text=True)
    function, offenders = "", set()
    for line in asm.stdout.splitlines():
        if line.endswith(">:"):
            function = line.lower()  # e.g. Kernel<(anonymous namespace)::Avx2, 6, 2>::tile, knn_kernels_avx2()
        elif ("%zmm" in line and "avx512" not in function) or ("%ymm" in line and "avx" not in function):
            offenders.add(function)
    assert not offenders


# --- the graph rewrite on the real students ---------------------------------------------------------------------


def test_fuse_rejects_a_topk_that_is_not_a_knn(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "K"], ["v", "i"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 9])],
        [helper.make_tensor_value_info("i", TensorProto.INT64, None)],
        [helper.make_tensor("K", TensorProto.INT64, [1], [2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="score MatMul"):
        fuse_knn(tmp_path / "m.onnx", tmp_path / "out.onnx")


@pytest.fixture(scope="module")
def test_clouds():
    from pointkd.data import DataError, load_modelnet40

    try:
        data = load_modelnet40(None, num_points=512)
    except (DataError, OSError) as err:
        pytest.skip(f"no ModelNet40 here: {err}")
    return np.ascontiguousarray(data.test_x[:256, :512], dtype=np.float32)


def _with_graph_outputs(path, names, out):
    model = onnx.load(str(path))
    for name in names:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.INT64, None))
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("checkpoint", ["student_lsp", "student_fast_lsp"])
def test_real_students_are_exact(library, test_clouds, checkpoint, tmp_path):
    """The exported student and its fused rewrite on 256 real test clouds: identical neighbour sets in every kNN
    layer and logits within 1e-5; the graph keeps every other node."""
    from pathlib import Path

    from pointkd.checkpoint import model_from_checkpoint

    ckpt = Path(__file__).resolve().parents[1] / "benchmarks" / "checkpoints" / f"{checkpoint}.pt"
    model = model_from_checkpoint(ckpt)
    stock = export_onnx(model, tmp_path / "stock.onnx", 512)
    fused_path = tmp_path / "fused.onnx"
    fused = fuse_knn(stock, fused_path)
    stock_model_, fused_model_ = onnx.load(str(stock)), onnx.load(str(fused_path))
    graphs = sum(layer == 0 or model.config.builds_graph(layer) for layer in range(len(model.convs)))
    assert len(fused) == len(knn_nodes(stock_model_)) == graphs
    assert [f.seed is not None for f in fused] == [False] + [True] * (len(fused) - 1)
    stock_by_name = {n.name: n for n in stock_model_.graph.node}
    fused_names = {n.name for n in fused_model_.graph.node}
    removed = [n for n in stock_model_.graph.node if n.name not in fused_names]
    chain = {"Transpose", "MatMul", "GatherElements", "ReduceMin", "Abs", "Mul", "Sub", "Expand", "Concat", "TopK"}
    chain |= {"Gather", "Reshape", "ReduceMax", "Add", "LeakyRelu"}  # each EdgeConv's gather + max and its tail
    assert {n.op_type for n in removed} <= chain
    assert sum(n.op_type == "TopK" for n in removed) == sum(n.op_type == "MatMul" for n in removed) == len(fused)
    convs = len(model.convs)
    assert sum(n.op_type == "Gather" for n in removed) == sum(n.op_type == "ReduceMax" for n in removed) == convs
    assert sum(n.op_type == "LeakyRelu" for n in removed) == convs
    assert sum(n.op_type == "Add" for n in removed) == 2 * convs  # the centre term's bias, then + centre
    assert sum(n.op_type == GATHER_MAX for n in fused_model_.graph.node) == convs
    for node in fused_model_.graph.node:  # every other node exactly as exported
        assert node.op_type in (OP_TYPE, GATHER_MAX) or node == stock_by_name[node.name]
    assert all(
        attr.i == 0
        for n in fused_model_.graph.node
        if n.op_type == OP_TYPE
        for attr in n.attribute
        if attr.name == "sorted"
    )  # the export's TopK is unsorted

    indices = [f.indices for f in fused]
    s_stock = make_session(_with_graph_outputs(stock, indices, tmp_path / "a.onnx"), threads=2)
    s_fused = make_fused_session(_with_graph_outputs(fused_path, indices, tmp_path / "b.onnx"), library, threads=2)
    worst, differing = 0.0, 0
    for i in range(0, len(test_clouds), 32):
        batch = {"points": test_clouds[i : i + 32]}
        a, b = s_stock.run(None, batch), s_fused.run(None, batch)
        worst = max(worst, float(np.abs(a[0] - b[0]).max()))
        differing += sum(differing_rows(x, y) for x, y in zip(a[1:], b[1:], strict=True))
    assert differing == 0
    assert worst <= 1e-5
