"""The fast per-point EdgeConv must equal the direct per-edge form: forward, gradients, BN running stats."""

from __future__ import annotations

import pytest
import torch

from pointkd.models.edgeconv import EdgeConv, adjacency_csr, gather_neighbors, neighbor_argmax, neighbor_max
from pointkd.models.knn import knn_dense


def _pair(c_in: int, c_out: int, negative_bn: bool) -> tuple[EdgeConv, EdgeConv]:
    naive = EdgeConv(c_in, c_out, impl="naive").double()
    fast = EdgeConv(c_in, c_out, impl="fast").double()
    with torch.no_grad():
        naive.bn.weight.uniform_(0.5, 1.5)
        naive.bn.bias.uniform_(-0.5, 0.5)
        if negative_bn:
            naive.bn.weight[::3] *= -1  # negative BN scales turn the max into a min
    fast.load_state_dict(naive.state_dict())
    return naive, fast


@pytest.mark.parametrize("negative_bn", [False, True])
@pytest.mark.parametrize("shape", [(2, 64, 3, 16, 8), (3, 50, 7, 5, 20)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32: the packed-key argmax path
def test_fast_equals_naive_train_mode(shape, negative_bn, dtype):
    b, n, c_in, c_out, k = shape
    naive, fast = (m.to(dtype) for m in _pair(c_in, c_out, negative_bn))
    tol = {"rtol": 1e-9, "atol": 1e-9} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    x = torch.randn(b, n, c_in, dtype=dtype)
    idx = knn_dense(x, k)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = naive(x1, idx), fast(x2, idx)
    torch.testing.assert_close(y2, y1, **tol)
    w = torch.randn_like(y1)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **tol)
    torch.testing.assert_close(fast.weight.grad, naive.weight.grad, **tol)
    torch.testing.assert_close(fast.bn.weight.grad, naive.bn.weight.grad, **tol)
    torch.testing.assert_close(fast.bn.bias.grad, naive.bn.bias.grad, **tol)
    torch.testing.assert_close(fast.bn.running_mean, naive.bn.running_mean)
    torch.testing.assert_close(fast.bn.running_var, naive.bn.running_var)


def test_fast_equals_naive_eval_mode_float32():
    naive, fast = _pair(6, 12, negative_bn=True)
    naive, fast = naive.float(), fast.float()
    x = torch.randn(2, 40, 6)
    idx = knn_dense(x, 10)
    for _ in range(3):  # populate running stats
        naive(x, idx), fast(x, idx)
    naive.eval(), fast.eval()
    torch.testing.assert_close(fast(x, idx), naive(x, idx), rtol=1e-5, atol=1e-5)


def test_gather_neighbors_matches_loop():
    x = torch.randn(2, 10, 4)
    idx = torch.randint(0, 10, (2, 10, 3))
    g = gather_neighbors(x, idx)
    for b in range(2):
        for i in range(10):
            torch.testing.assert_close(g[b, i], x[b, idx[b, i]])


def test_adjacency_csr_is_the_graph_and_its_transpose():
    idx = torch.randint(0, 6, (2, 6, 3))
    a, at, deg = adjacency_csr(idx, 6)
    dense = torch.zeros(12, 12)
    for b in range(2):
        for i in range(6):
            for j in idx[b, i]:
                dense[b * 6 + i, b * 6 + int(j)] += 1
    torch.testing.assert_close(a.to_dense(), dense)
    torch.testing.assert_close(at.to_dense(), dense.T)
    torch.testing.assert_close(deg.float(), dense.sum(0))


def test_unknown_impl_is_rejected():
    with pytest.raises(ValueError, match="unknown EdgeConv impl"):
        EdgeConv(3, 8, impl="fastest")


def _reference_argmax(a: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return idx.gather(2, gather_neighbors(a, idx).max(dim=2).indices)


@pytest.mark.parametrize("values", ["normal", "ties", "negative", "huge"])
def test_neighbor_argmax_packed_keys_pick_the_max(values):
    gen = torch.Generator().manual_seed(3)
    b, n, c, k = 3, 70, 9, 12
    idx = knn_dense(torch.randn(b, n, 5, generator=gen), k)
    a = {
        "normal": lambda: torch.randn(b, n, c, generator=gen),
        "ties": lambda: torch.randint(-2, 3, (b, n, c), generator=gen).float(),  # many equal maxima, and ±0
        "negative": lambda: -torch.rand(b, n, c, generator=gen),
        "huge": lambda: torch.randn(b, n, c, generator=gen) * 1e38,  # ±inf beyond 3.4e38
    }[values]()
    adj = adjacency_csr(idx, n, transpose=False)[0]
    src = neighbor_argmax(a, idx, adj)
    want = gather_neighbors(a, idx).amax(dim=2)
    assert torch.equal(a.gather(1, src), want)  # the picked neighbour holds the max (any one of tied maxima)
    assert bool((src.unsqueeze(2) == idx.unsqueeze(-1)).any(2).all())  # and is one of the point's neighbours
    if values in ("normal", "huge"):  # no ties: the very same neighbour as the gather + max
        assert torch.equal(src, _reference_argmax(a, idx))
    torch.testing.assert_close(neighbor_max(a, adj), want, rtol=0, atol=0)


def test_neighbor_argmax_with_negative_sign_is_argmin():
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(2, 40, 6, generator=gen)
    idx = knn_dense(torch.randn(2, 40, 3, generator=gen), 8)
    adj = adjacency_csr(idx, 40, transpose=False)[0]
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0])
    src = neighbor_argmax(a, idx, adj, sign)
    assert torch.equal(src, _reference_argmax(a * sign, idx))
    g = gather_neighbors(a, idx)
    want = torch.where(sign > 0, g.amax(dim=2), g.amin(dim=2))
    assert torch.equal(neighbor_max(a, adj, sign), want)


def test_neighbor_argmax_float64_falls_back_to_the_gather():
    a = torch.randn(2, 30, 4, dtype=torch.float64)
    idx = knn_dense(torch.randn(2, 30, 3), 5)
    adj = adjacency_csr(idx, 30, torch.float64, transpose=False)[0]
    assert torch.equal(neighbor_argmax(a, idx, adj), _reference_argmax(a, idx))


def test_neighbor_max_off_the_cpu_path_equals_the_sparse_kernel():
    """Off the CPU (no CSR amax kernel there) the gather path runs; forced here on CPU it gives the same values."""
    a = torch.randn(2, 30, 5)
    idx = knn_dense(torch.randn(2, 30, 3), 6)
    adj = adjacency_csr(idx, 30, transpose=False)[0]
    want = neighbor_max(a, adj)

    class FakeDevice:
        type = "cuda"

    class OffCpu(torch.Tensor):
        @property
        def device(self):  # only the branch test sees a non-CPU device
            return FakeDevice()

    got = neighbor_max(a.as_subclass(OffCpu), adj)
    assert torch.equal(got.as_subclass(torch.Tensor), want)
