from __future__ import annotations

import pytest
import torch

from pointkd.models import knn, knn_cluster, knn_dense, torch_cluster_available


def _brute_force(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x.double(), x.double())
    return d.topk(k, dim=-1, largest=False).indices


@pytest.mark.parametrize("c", [3, 16])
def test_dense_knn_matches_brute_force(c):
    x = torch.randn(3, 200, c)
    idx = knn_dense(x, 12)
    ref = _brute_force(x, 12)
    assert idx.shape == (3, 200, 12)
    # same neighbour sets (random float data has no ties)
    assert torch.equal(idx.sort(-1).values, ref.sort(-1).values)
    # nearest first: the point itself
    assert torch.equal(idx[..., 0], torch.arange(200).expand(3, 200))


@pytest.mark.skipif(not torch_cluster_available(), reason="torch-cluster not installed (optional backend)")
@pytest.mark.parametrize("c", [3, 64])
def test_cluster_knn_matches_dense(c):
    x = torch.randn(4, 300, c)
    a, b = knn_dense(x, 10), knn_cluster(x, 10)
    assert b.shape == a.shape and b.dtype == torch.int64
    # same neighbour sets, ties aside: float32 rounding can swap two near-equidistant k-th neighbours, so
    # compare the exact (float64) distances of the chosen neighbours, and require nearly all sets identical
    d = torch.cdist(x.double(), x.double())
    torch.testing.assert_close(d.gather(2, a).sort(-1).values, d.gather(2, b).sort(-1).values, rtol=1e-5, atol=1e-5)
    same = (a.sort(-1).values == b.sort(-1).values).all(-1).float().mean()
    assert same > 0.99


def test_auto_backend_gives_dense_neighbour_sets():
    x = torch.randn(2, 100, 3)
    assert torch.equal(knn(x, 8, "auto").sort(-1).values, knn_dense(x, 8).sort(-1).values)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k=50"):
        knn_dense(torch.randn(1, 10, 3), 50)
    with pytest.raises(ValueError, match="expected points"):
        knn_dense(torch.randn(10, 3), 2)
    with pytest.raises(ValueError, match="unknown knn backend"):
        knn(torch.randn(1, 10, 3), 2, "faiss")
