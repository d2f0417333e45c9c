"""The fast per-point EdgeConv must equal the direct per-edge form: forward, gradients, BN running stats."""

from __future__ import annotations

import pytest
import torch

from pointkd.models.edgeconv import EdgeConv, adjacency_csr, gather_neighbors
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
def test_fast_equals_naive_train_mode(shape, negative_bn):
    b, n, c_in, c_out, k = shape
    naive, fast = _pair(c_in, c_out, negative_bn)
    x = torch.randn(b, n, c_in, dtype=torch.float64)
    idx = knn_dense(x, k)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = naive(x1, idx), fast(x2, idx)
    torch.testing.assert_close(y2, y1, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(y1)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.weight.grad, naive.weight.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.bn.weight.grad, naive.bn.weight.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fast.bn.bias.grad, naive.bn.bias.grad, rtol=1e-9, atol=1e-9)
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
