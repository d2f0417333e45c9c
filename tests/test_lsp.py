"""LSP over the teacher ∪ student virtual edges: three implementations agree with each other and with a
direct per-node computation; zero when the models coincide; gradients reach the student only."""

from __future__ import annotations

import math

import pytest
import torch

from pointkd.distill import (
    KERNELS,
    Kernel,
    LSPLoss,
    lsp_loss_dense,
    lsp_loss_padded,
    lsp_loss_sparse,
    random_centres,
    union_candidates,
)
from pointkd.models.knn import knn_dense

IMPLS = [lsp_loss_padded, lsp_loss_sparse, lsp_loss_dense]
DIRECTIONS = ["student||teacher", "teacher||student"]


def _inputs(b=2, n=48, c_s=8, c_t=16, k_s=5, k_t=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    z_s = torch.randn(b, n, c_s, generator=g, dtype=torch.float64)
    z_t = torch.randn(b, n, c_t, generator=g, dtype=torch.float64)
    return z_s, knn_dense(z_s, k_s), z_t, knn_dense(z_t, k_t)


def _per_node_reference(z_s, idx_s, z_t, idx_t, kernel, direction):
    """Loops over nodes with Python sets: the definition, written out."""
    total, count = 0.0, 0
    for b in range(z_s.shape[0]):
        for i in range(z_s.shape[1]):
            union = sorted(set(idx_t[b, i].tolist()) | set(idx_s[b, i].tolist()))
            ks = torch.stack([kernel.pairwise(z_s[b, i], z_s[b, j]) for j in union])
            kt = torch.stack([kernel.pairwise(z_t[b, i], z_t[b, j]) for j in union])
            log_s, log_t = ks.log_softmax(0), kt.log_softmax(0)
            log_p, log_q = (log_s, log_t) if direction == "student||teacher" else (log_t, log_s)
            total += float((log_p.exp() * (log_p - log_q)).sum())
            count += 1
    return total / count


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_implementations_agree_with_the_definition(kernel, direction):
    z_s, idx_s, z_t, idx_t = _inputs(n=24)
    k = Kernel(kernel, sigma=3.0)
    ref = _per_node_reference(z_s, idx_s, z_t, idx_t, k, direction)
    for impl in IMPLS:
        assert float(impl(z_s, idx_s, z_t, idx_t, k, direction)) == pytest.approx(ref, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradients_agree_across_implementations(kernel):
    z_s, idx_s, z_t, idx_t = _inputs()
    grads = []
    for impl in IMPLS:
        zs = z_s.clone().requires_grad_()
        impl(zs, idx_s, z_t, idx_t, Kernel(kernel, sigma=2.0)).backward()
        grads.append(zs.grad)
    torch.testing.assert_close(grads[0], grads[2], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(grads[1], grads[2], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_when_student_and_teacher_coincide(impl):
    z, idx, _, _ = _inputs()
    for kernel in KERNELS:
        assert float(impl(z, idx, z.clone(), idx.clone(), Kernel(kernel))) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_positive_and_differentiable_wrt_the_student_only(impl):
    z_s, idx_s, z_t, idx_t = _inputs()
    z_s.requires_grad_()
    z_t.requires_grad_()
    loss = impl(z_s, idx_s, z_t, idx_t, Kernel("l2"))
    assert float(loss) > 0
    loss.backward()
    assert z_s.grad is not None and float(z_s.grad.abs().sum()) > 0
    assert z_t.grad is None  # the teacher is frozen


def test_union_counts_duplicate_edges_once():
    idx_t = torch.tensor([[[0, 1, 2], [1, 0, 2]]])
    idx_s = torch.tensor([[[0, 2, 2], [1, 1, 0]]])  # overlapping and self-duplicated edges
    cand, valid = union_candidates(idx_t, idx_s)
    sets = [sorted(cand[0, i][valid[0, i]].tolist()) for i in range(2)]
    assert sets == [[0, 1, 2], [0, 1, 2]]
    # with the linear kernel on 1-d features the union softmax is known in closed form
    z_s = torch.tensor([[[1.0], [2.0], [3.0]]], dtype=torch.float64)
    z_t = torch.tensor([[[1.0], [1.0], [1.0]]], dtype=torch.float64)
    idx_t3 = torch.tensor([[[0, 1], [1, 0], [2, 1]]])
    idx_s3 = torch.tensor([[[0, 0], [1, 1], [2, 2]]])
    loss = lsp_loss_padded(z_s, idx_s3, z_t, idx_t3, Kernel("linear"), "teacher||student")
    expected = 0.0
    for i, union in enumerate([[0, 1], [0, 1], [1, 2]]):
        logits = torch.tensor([float(z_s[0, i, 0] * z_s[0, j, 0]) for j in union])
        log_q = logits.log_softmax(0)  # teacher features are all equal: its distribution is uniform, 1/2 each
        expected += float((0.5 * (math.log(0.5) - log_q)).sum())
    assert float(loss) == pytest.approx(expected / 3)


def test_different_k_and_channels_are_fine_but_point_counts_must_match():
    z_s, idx_s, z_t, idx_t = _inputs(k_s=3, k_t=20, c_s=4, c_t=32)
    assert float(LSPLoss()(z_s.float(), idx_s, z_t.float(), idx_t)) >= 0
    with pytest.raises(ValueError, match="different points"):
        lsp_loss_padded(z_s[:, :10], idx_s[:, :10], z_t, idx_t)
    with pytest.raises(ValueError, match="unknown LSP kernel"):
        Kernel("cosine")
    with pytest.raises(ValueError, match="unknown LSP impl"):
        LSPLoss(impl="fused")


def test_rbf_kernel_values():
    k = Kernel("rbf", sigma=2.0)
    a, b = torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0])
    assert float(k.pairwise(a, b)) == pytest.approx(math.exp(-25 / 8))
    assert float(Kernel("poly", degree=2, coef=1.0).pairwise(a + 1, b)) == pytest.approx((7 + 1) ** 2)
    assert float(Kernel("l2").pairwise(a, b)) == pytest.approx(-25.0)


def test_lsp_over_all_centres_equals_the_full_loss():
    z_s, idx_s, z_t, idx_t = _inputs()
    full = lsp_loss_padded(z_s, idx_s, z_t, idx_t)
    every = lsp_loss_padded(z_s, idx_s, z_t, idx_t, centres=torch.arange(z_s.shape[1]))
    torch.testing.assert_close(every, full, rtol=1e-12, atol=1e-12)


def test_lsp_over_random_centres_is_unbiased():
    """The mean over many draws of M of N centres approaches the full loss (standard error bound), and one draw
    equals the mean of the per-node losses of exactly those centres."""
    z_s, idx_s, z_t, idx_t = _inputs(n=40)
    full = float(lsp_loss_padded(z_s, idx_s, z_t, idx_t))
    per_node = torch.stack(
        [lsp_loss_padded(z_s, idx_s, z_t, idx_t, centres=torch.tensor([i])) for i in range(40)]
    ).double()
    torch.manual_seed(0)
    draws = [random_centres(40, 8) for _ in range(5000)]
    for c in draws[:50]:  # the loss over a draw is the mean of its centres' per-node losses...
        loss = lsp_loss_padded(z_s, idx_s, z_t, idx_t, centres=c).double()
        torch.testing.assert_close(loss, per_node[c].mean(), rtol=1e-10, atol=1e-12)
    estimates = torch.stack([per_node[c].mean() for c in draws])  # ...so the draws' estimates are these
    stderr = float(estimates.std()) / math.sqrt(len(draws))
    assert abs(float(estimates.mean()) - full) < 4 * stderr
    assert float(estimates.std()) > 0  # the draws really differ


def test_random_centres_draws_distinct_sorted_indices():
    torch.manual_seed(1)
    c = random_centres(100, 30)
    assert c.shape == (30,) and len(set(c.tolist())) == 30 and torch.equal(c, c.sort().values)
    assert random_centres(100, None) is None and random_centres(100, 100) is None
    with pytest.raises(ValueError, match="centres"):
        random_centres(100, 0)


def test_lsp_centres_need_the_padded_implementation():
    z_s, idx_s, z_t, idx_t = _inputs()
    with pytest.raises(ValueError, match="padded"):
        LSPLoss(impl="sparse")(z_s, idx_s, z_t, idx_t, centres=torch.arange(4))


def test_normalized_kernel_equals_the_kernel_on_unit_features():
    g = torch.Generator().manual_seed(2)
    z_i, z_j = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    unit = lambda z: z / z.norm(dim=-1, keepdim=True)  # noqa: E731
    for name in KERNELS:
        torch.testing.assert_close(
            Kernel(name, normalize=True).pairwise(z_i, z_j), Kernel(name).pairwise(unit(z_i), unit(z_j))
        )


@pytest.mark.parametrize("impl", IMPLS)
def test_lsp_on_normalized_features_equals_lsp_of_unit_features(impl):
    z_s, idx_s, z_t, idx_t = _inputs()
    unit = lambda z: z / z.norm(dim=-1, keepdim=True)  # noqa: E731
    got = impl(z_s, idx_s, z_t, idx_t, Kernel("rbf", normalize=True))
    torch.testing.assert_close(got, impl(unit(z_s), idx_s, unit(z_t), idx_t, Kernel("rbf")))


def test_median_sigma_is_the_median_teacher_distance_over_the_compared_edges():
    z_s, idx_s, z_t, idx_t = _inputs()
    d2 = []
    for b in range(z_t.shape[0]):
        for i in range(z_t.shape[1]):
            for j in set(idx_t[b, i].tolist()) | set(idx_s[b, i].tolist()):
                if j != i:
                    d2.append(float(((z_t[b, i] - z_t[b, j]) ** 2).sum()))
    sigma = math.sqrt(float(torch.tensor(d2, dtype=torch.float64).median()))
    got = LSPLoss(Kernel("rbf", sigma_rule="median"))(z_s, idx_s, z_t, idx_t)
    torch.testing.assert_close(got, lsp_loss_dense(z_s, idx_s, z_t, idx_t, Kernel("rbf", sigma=sigma)))
    with pytest.raises(ValueError, match="padded"):
        LSPLoss(Kernel("rbf", sigma_rule="median"), impl="dense")(z_s, idx_s, z_t, idx_t)


def test_kernel_options_are_checked():
    with pytest.raises(ValueError, match="sigma rule"):
        Kernel("rbf", sigma_rule="mean")
    with pytest.raises(ValueError, match="bandwidth"):
        Kernel("poly", sigma_rule="median")
