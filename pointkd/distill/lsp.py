"""LSP: the Local Structure Preserving loss (Yang et al., "Distilling Knowledge from Graph Convolutional
Networks", CVPR 2020, §3.3–3.5), over the union of the teacher's and the student's kNN edges.

For one matched layer pair: teacher node features ``z^t`` ``[B, N, C_t]`` with its kNN graph ``idx_t``
``[B, N, k_t]``, student features ``z^s`` ``[B, N, C_s]`` with ``idx_s`` ``[B, N, k_s]`` (``C_t ≠ C_s`` and
``k_t ≠ k_s`` allowed). Each model builds its own dynamic graph, so both are compared on the *virtual* edge set
``U(i) = N_t(i) ∪ N_s(i)`` (duplicates counted once; ``max(k_t, k_s) ≤ |U(i)| ≤ k_t + k_s``):

.. math::
    S^m_{ij} = \\frac{\\exp K(z^m_i, z^m_j)}{\\sum_{l \\in U(i)} \\exp K(z^m_i, z^m_l)}

    \\mathcal{L}_{LSP} = \\frac{1}{BN} \\sum_{b, i} D_{KL}\\big(S^s_i \\,\\|\\, S^t_i\\big)

for ``j ∈ U(i)`` and each model ``m ∈ {s, t}``
(the paper's Eq. 5 direction; ``direction="teacher||student"`` gives ``D_KL(S^t_i ‖ S^s_i)``). The kernel ``K``
is one of :mod:`pointkd.distill.kernels`. The union is used only inside the loss: the models still aggregate
over their own graphs. The teacher side carries no gradient.

Three implementations, equal to float tolerance (``tests/test_lsp.py``):

* :func:`lsp_loss_padded` (default): the union as a padded ``[B, N, k_t + k_s]`` candidate list, sorted so that
  duplicates are adjacent and masked out; kernels are read from one Gram matrix per model (``[B, N, N]``, a
  ``bmm``) instead of gathering ``[B, N, K, C]`` feature pairs.
* :func:`lsp_loss_sparse`: torch-geometric's sparse utilities: a deduplicated (``coalesce``) ``edge_index``, a
  per-centre log-softmax and KL sum with ``scatter``, on per-edge feature dot products.
* :func:`lsp_loss_dense`: the reference, a masked softmax over the full ``N × N`` kernel matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.edgeconv import flat_index
from .kernels import Kernel

DIRECTIONS = ("student||teacher", "teacher||student")
LSP_IMPLS = ("padded", "sparse", "dense")


def union_candidates(idx_t: Tensor, idx_s: Tensor) -> tuple[Tensor, Tensor]:
    """Padded union of two kNN graphs: sorted candidates ``[B, N, k_t + k_s]`` and a mask, False on repeats."""
    if idx_t.shape[:2] != idx_s.shape[:2]:
        raise ValueError(f"teacher and student graphs cover different points: {idx_t.shape} vs {idx_s.shape}")
    cand = torch.cat([idx_t, idx_s], dim=-1).sort(dim=-1).values
    valid = torch.ones_like(cand, dtype=torch.bool)
    valid[..., 1:] = cand[..., 1:] != cand[..., :-1]
    return cand, valid


def _candidate_dots(z: Tensor, cand: Tensor, centres: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(z_i·z_j [B, M, K], ‖z_i‖² [B, M, 1], ‖z_j‖² [B, M, K])`` between centre ``i`` and its candidates ``cand``
    ``[B, M, K]``; the centres are all N points, or the rows ``centres`` ``[M]``. Gram rows ``[B, M, N]`` come
    from one ``bmm``."""
    b, m, k = cand.shape
    zc = z if centres is None else z[:, centres]
    gram = torch.bmm(zc, z.transpose(1, 2))  # [B, M, N]
    sq = (z * z).sum(-1)  # [B, N]
    sq_i = sq if centres is None else sq[:, centres]
    dot = gram.gather(2, cand)
    sq_j = sq.gather(1, cand.reshape(b, m * k)).view(b, m, k)
    return dot, sq_i.unsqueeze(-1), sq_j


def _orient(log_s: Tensor, log_t: Tensor, direction: str) -> tuple[Tensor, Tensor]:
    """``(log P, log Q)`` of ``D_KL(P ‖ Q)`` for the chosen direction."""
    return (log_s, log_t) if direction == "student||teacher" else (log_t, log_s)


def _kl_rows(logit_s: Tensor, logit_t: Tensor, valid: Tensor, direction: str) -> Tensor:
    """Per-row ``D_KL`` between the softmaxes of two logit tensors over the entries where ``valid``.

    Masked entries are zeroed *before* the product, not after: ``0 · (−inf − −inf)`` would put NaN into the
    backward pass even where the forward value is masked."""
    neg_inf = torch.tensor(float("-inf"), dtype=logit_s.dtype, device=logit_s.device)
    zero = torch.zeros((), dtype=logit_s.dtype, device=logit_s.device)
    log_s = torch.where(valid, F.log_softmax(torch.where(valid, logit_s, neg_inf), dim=-1), zero)
    log_t = torch.where(valid, F.log_softmax(torch.where(valid, logit_t, neg_inf), dim=-1), zero)
    log_p, log_q = _orient(log_s, log_t, direction)
    p = torch.where(valid, log_p.exp(), zero)
    return (p * (log_p - log_q)).sum(-1)


def _check(z_s: Tensor, idx_s: Tensor, z_t: Tensor, idx_t: Tensor, direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if z_s.shape[:2] != z_t.shape[:2]:
        raise ValueError(f"student and teacher features cover different points: {z_s.shape} vs {z_t.shape}")
    for name, z, idx in (("student", z_s, idx_s), ("teacher", z_t, idx_t)):
        if idx.shape[:2] != z.shape[:2]:
            raise ValueError(f"{name} graph {tuple(idx.shape)} does not match its features {tuple(z.shape)}")


def _reference_kernel(
    kernel: Kernel | None, z_s: Tensor, idx_s: Tensor, z_t: Tensor, idx_t: Tensor, direction: str
) -> Kernel:
    """``kernel`` (default :class:`Kernel`) for the sparse and dense references, after :func:`_check`; they take a
    fixed sigma only."""
    kernel = kernel or Kernel()
    if kernel.sigma_rule != "fixed":
        raise ValueError("the median sigma rule is implemented in lsp_loss_padded only")
    _check(z_s, idx_s, z_t, idx_t, direction)
    return kernel


def lsp_loss_padded(
    z_s: Tensor,
    idx_s: Tensor,
    z_t: Tensor,
    idx_t: Tensor,
    kernel: Kernel | None = None,
    direction: str = "student||teacher",
    centres: Tensor | None = None,
) -> Tensor:
    """``centres`` ``[M]`` (distinct point indices) averages over those centre nodes only: drawn uniformly
    without replacement, an unbiased estimate of the mean over all N at ``M/N`` of the cost."""
    kernel = kernel or Kernel()
    _check(z_s, idx_s, z_t, idx_t, direction)
    if centres is not None:
        idx_s, idx_t = idx_s[:, centres], idx_t[:, centres]
    cand, valid = union_candidates(idx_t, idx_s)
    with torch.no_grad():
        dots_t = _candidate_dots(z_t.detach(), cand, centres)
        centre = torch.arange(z_t.shape[1], device=cand.device) if centres is None else centres
        kernel = kernel.with_median_sigma(*dots_t, valid & (cand != centre.view(1, -1, 1)))  # self-pairs left out
        logit_t = kernel.from_dots(*dots_t)
    logit_s = kernel.from_dots(*_candidate_dots(z_s, cand, centres))
    return _kl_rows(logit_s, logit_t, valid, direction).mean()


def random_centres(n: int, m: int | None, device: torch.device | str = "cpu") -> Tensor | None:
    """``m`` distinct centre indices out of ``n``, uniform, from torch's global generator (which the trainer
    seeds per step); None when ``m`` is None or covers every point."""
    if m is None or m >= n:
        return None
    if m < 1:
        raise ValueError(f"lsp centres must be >= 1, got {m}")
    return torch.randperm(n, device=device)[:m].sort().values


def lsp_loss_sparse(
    z_s: Tensor,
    idx_s: Tensor,
    z_t: Tensor,
    idx_t: Tensor,
    kernel: Kernel | None = None,
    direction: str = "student||teacher",
) -> Tensor:
    from torch_geometric.utils import coalesce, scatter

    kernel = _reference_kernel(kernel, z_s, idx_s, z_t, idx_t, direction)
    b, n, _ = z_s.shape
    centres, nbrs = [], []
    for idx in (idx_t, idx_s):
        centres.append(flat_index(torch.arange(n, device=idx.device).view(1, n, 1).expand_as(idx), n))
        nbrs.append(flat_index(idx, n))
    edge_index = coalesce(torch.stack([torch.cat(centres), torch.cat(nbrs)]), num_nodes=b * n)
    row, col = edge_index

    def edge_logits(z: Tensor) -> Tensor:
        flat = z.reshape(b * n, -1)
        zi, zj = flat[row], flat[col]
        return kernel.from_dots((zi * zj).sum(-1), (zi * zi).sum(-1), (zj * zj).sum(-1))

    def log_softmax(x: Tensor) -> Tensor:
        # per-centre log-softmax with scatter (log of torch_geometric.utils.softmax underflows for large kernels)
        top = scatter(x.detach(), row, dim=0, dim_size=b * n, reduce="max")[row]
        lse = scatter((x - top).exp(), row, dim=0, dim_size=b * n, reduce="sum").log()[row] + top
        return x - lse

    log_s = log_softmax(edge_logits(z_s))
    with torch.no_grad():
        log_t = log_softmax(edge_logits(z_t.detach()))
    log_p, log_q = _orient(log_s, log_t, direction)
    return scatter(log_p.exp() * (log_p - log_q), row, dim=0, dim_size=b * n, reduce="sum").mean()


def lsp_loss_dense(
    z_s: Tensor,
    idx_s: Tensor,
    z_t: Tensor,
    idx_t: Tensor,
    kernel: Kernel | None = None,
    direction: str = "student||teacher",
) -> Tensor:
    kernel = _reference_kernel(kernel, z_s, idx_s, z_t, idx_t, direction)
    b, n, _ = z_s.shape
    mask = torch.zeros(b, n, n, dtype=torch.bool, device=z_s.device)
    mask.scatter_(2, idx_t, True)
    mask.scatter_(2, idx_s, True)

    def full(z: Tensor) -> Tensor:
        return kernel.pairwise(z.unsqueeze(2), z.unsqueeze(1))  # [B, N, N]

    return _kl_rows(full(z_s), full(z_t.detach()), mask, direction).mean()


_IMPLS = {"padded": lsp_loss_padded, "sparse": lsp_loss_sparse, "dense": lsp_loss_dense}


class LSPLoss(nn.Module):
    """``forward(z_s, idx_s, z_t, idx_t) -> scalar``; see the module docstring."""

    def __init__(self, kernel: Kernel | str = "rbf", impl: str = "padded", direction: str = "student||teacher"):
        super().__init__()
        if impl not in _IMPLS:
            raise ValueError(f"unknown LSP impl {impl!r}; choose from {LSP_IMPLS}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.kernel = Kernel(kernel) if isinstance(kernel, str) else kernel
        self.impl = impl
        self.direction = direction

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, impl={self.impl!r}, direction={self.direction!r}"

    def forward(self, z_s: Tensor, idx_s: Tensor, z_t: Tensor, idx_t: Tensor, centres: Tensor | None = None) -> Tensor:
        """``centres``: the subset of centre nodes (:func:`random_centres`); padded implementation only."""
        if centres is None and self.kernel.sigma_rule == "fixed":
            return _IMPLS[self.impl](z_s, idx_s, z_t, idx_t, self.kernel, self.direction)
        if self.impl != "padded":
            raise ValueError(
                f"LSP centre subsets and the median sigma rule need the padded implementation, not {self.impl!r}"
            )
        return lsp_loss_padded(z_s, idx_s, z_t, idx_t, self.kernel, self.direction, centres)
