"""The fused kNN backend for torch (pointkd.models.knn_fused) against the dense one, and its error paths."""

from __future__ import annotations

import importlib

import pytest
import torch

from pointkd.models import create_model, knn, knn_dense
from pointkd.runtime.errors import KnnOpUnavailable

knn_fused_mod = pytest.importorskip("pointkd.models.knn_fused")


@pytest.fixture(scope="module", autouse=True)
def kernel():
    try:
        knn_fused_mod._kernel()
    except KnnOpUnavailable as err:
        pytest.skip(f"fused kNN kernel not buildable here: {err}")


def squared_distances(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    x64 = x.double()
    return ((x64.unsqueeze(2) - torch.stack([xb[i] for xb, i in zip(x64, idx, strict=True)])) ** 2).sum(-1)


@pytest.mark.parametrize(("shape", "k"), [((2, 512, 3), 20), ((2, 256, 64), 16), ((1, 300, 130), 10), ((3, 9, 2), 9)])
def test_fused_picks_the_dense_neighbours(shape, k):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape) + k))
    dense, fused = knn_dense(x, k), knn_fused_mod.knn_fused(x, k)
    assert fused.shape == dense.shape and fused.dtype == torch.int64
    # Every row holds k distinct points, best first, and they are the k nearest up to float32 rounding.
    assert (fused.sort(-1).values.diff(dim=-1) > 0).all()
    d_fused, d_dense = squared_distances(x, fused), squared_distances(x, dense)
    assert (d_fused.diff(dim=-1) >= -1e-4).all()
    torch.testing.assert_close(d_fused, d_dense, atol=1e-4, rtol=1e-5)
    # Away from near-ties (random data: almost every row) the neighbour lists are identical.
    assert (fused == dense).all(-1).float().mean() >= 0.995


def test_ties_go_to_the_lower_index():
    x = torch.zeros(2, 16, 4)
    assert (knn_fused_mod.knn_fused(x, 5) == torch.arange(5)).all()


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_instruction_set_gives_the_same_graph(isa, monkeypatch):
    x = torch.randn(2, 200, 33, generator=torch.Generator().manual_seed(3))
    want = knn_fused_mod.knn_fused(x, 12)
    monkeypatch.setenv("POINTKD_KNN_ISA", isa)
    try:
        got = knn_fused_mod.knn_fused(x, 12)
    except RuntimeError as err:
        pytest.skip(f"{isa} not on this CPU: {err}")
    assert torch.equal(got, want)


def test_thread_count_does_not_change_the_graph():
    x = torch.randn(5, 128, 16, generator=torch.Generator().manual_seed(4))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = knn_fused_mod.knn_fused(x, 8)
        torch.set_num_threads(2)
        two = knn_fused_mod.knn_fused(x, 8)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_a_model_on_the_fused_backend_trains_like_the_dense_one():
    torch.manual_seed(0)
    dense = create_model("dgcnn_student", num_classes=40, knn_backend="dense").eval()
    fused = create_model("dgcnn_student", num_classes=40, knn_backend="fused").eval()
    fused.load_state_dict(dense.state_dict())
    x = torch.randn(2, 256, 3, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([3, 7])
    losses = []
    for model in (dense, fused):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1])
    for (name, a), b in zip(dense.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_export_keeps_the_dense_graph():
    traced = torch.jit.trace(lambda t: knn(t, 4, "fused"), torch.randn(1, 16, 3))
    assert "topk" in str(traced.graph)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="k=9"):
        knn_fused_mod.knn_fused(torch.randn(1, 8, 3), 9)
    with pytest.raises(ValueError, match=r"\[B, N, C\]"):
        knn_fused_mod.knn_fused(torch.randn(8, 3), 2)


def test_an_unknown_instruction_set_is_an_error(monkeypatch):
    monkeypatch.setenv("POINTKD_KNN_ISA", "sse9")
    with pytest.raises(RuntimeError, match="POINTKD_KNN_ISA"):
        knn_fused_mod.knn_fused(torch.randn(1, 8, 3), 2)


@pytest.fixture
def fresh_auto_choice():
    knn_mod = importlib.import_module("pointkd.models.knn")  # the module (the package's ``knn`` is the function)
    knn_mod.fused_knn_ready.cache_clear()
    yield knn_mod
    knn_mod.fused_knn_ready.cache_clear()


def test_auto_uses_the_fused_kernel_on_cpu_float32(fresh_auto_choice, monkeypatch):
    monkeypatch.setattr(fresh_auto_choice, "torch_cluster_available", lambda: False)
    calls = []
    real = knn_fused_mod.knn_fused
    monkeypatch.setattr(knn_fused_mod, "knn_fused", lambda x, k: calls.append(k) or real(x, k))
    x = torch.randn(2, 64, 16, generator=torch.Generator().manual_seed(6))
    got = knn(x, 5, "auto")
    assert calls == [5] and torch.equal(got, real(x, 5))
    knn(x.double(), 5, "auto")  # float64: dense, the fused kernel is float32
    assert calls == [5]


def test_auto_falls_back_to_dense_when_opted_out_or_unbuildable(fresh_auto_choice, monkeypatch):
    monkeypatch.setattr(fresh_auto_choice, "torch_cluster_available", lambda: False)
    x = torch.randn(1, 40, 8, generator=torch.Generator().manual_seed(7))
    monkeypatch.setenv("POINTKD_KNN_FUSED", "0")
    assert not fresh_auto_choice.fused_knn_ready()
    assert torch.equal(knn(x, 4, "auto"), knn_dense(x, 4))
    fresh_auto_choice.fused_knn_ready.cache_clear()
    monkeypatch.delenv("POINTKD_KNN_FUSED")

    def unbuildable():
        raise KnnOpUnavailable("no C++ compiler")

    monkeypatch.setattr(knn_fused_mod, "_kernel", unbuildable)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        assert not fresh_auto_choice.fused_knn_ready()
    assert torch.equal(knn(x, 4, "auto"), knn_dense(x, 4))
