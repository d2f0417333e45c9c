"""EdgeConv (Wang et al., "Dynamic Graph CNN", TOG 2019) with BatchNorm and LeakyReLU, max over neighbours.

For node features ``x`` ``[B, N, C]`` and a kNN graph ``idx`` ``[B, N, k]``:

.. math::
    y_i = \\max_{j \\in \\mathcal{N}(i)} \\sigma\\big(\\mathrm{BN}(W [x_j - x_i \\,\\|\\, x_i])\\big)

with ``W`` ``[C_out, 2C]`` (no bias), BatchNorm statistics taken over all ``B·N·k`` edges, and
``σ`` = LeakyReLU(0.2). Output ``[B, N, C_out]``.

Two implementations, equal to float tolerance (``tests/test_edgeconv.py``):

* ``"naive"``: builds the ``[B, N, k, 2C]`` edge tensor and applies ``W`` to every edge.
* ``"fast"`` (default): writing ``W = [W_1 | W_2]``,

  .. math::
      W [x_j - x_i \\,\\|\\, x_i] = \\underbrace{W_1 x_j}_{a_j} + \\underbrace{(W_2 - W_1) x_i}_{b_i}

  so the matmul runs once per point instead of once per edge (``k``x fewer MACs). BN is an affine map
  ``s·e + t`` per channel and LeakyReLU is monotone, so the max over ``j`` commutes with both: the output is
  ``σ(s·(a_{j*} + b_i) + t)`` with ``j* = argmax_j a_j`` where ``s > 0`` and ``argmin_j a_j`` where ``s < 0``.
  In training the BN batch statistics over edges are computed in closed form from per-point sums
  (``mean = E_edges[a_j] + E[b_i]``; the centred second moment via the neighbour sums ``Σ_{j∈N(i)} a_j``), so
  autograd never stores a ``[B, N, k, C_out]`` tensor; the neighbour sums are one sparse (CSR) matmul with
  the block-diagonal adjacency, forward and backward.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

EDGECONV_IMPLS = ("fast", "naive")


def gather_neighbors(x: Tensor, idx: Tensor) -> Tensor:
    """``x`` ``[B, N, C]``, ``idx`` ``[B, M, k]`` (indices into N) -> ``[B, M, k, C]``."""
    b, n, c = x.shape
    _, m, k = idx.shape
    return x.reshape(b * n, c).index_select(0, flat_index(idx, n)).view(b, m, k, c)


def flat_index(idx: Tensor, n: int) -> Tensor:
    """Per-cloud point indices ``[B, ...]`` (each in ``0..n-1``) -> flat indices into ``B·n`` points, ``[B·...]``."""
    b = idx.shape[0]
    return (idx + (torch.arange(b, device=idx.device) * n).view(b, 1, 1)).view(-1)


class _SpMM(torch.autograd.Function):
    """``A @ x`` for a sparse CSR ``A`` whose transpose ``At`` is given too, so backward is one more SpMM.

    Written by hand because ``torch.sparse.mm`` has no CSR backward on the CPU, and the dense alternative (a
    gather + sum over neighbours, whose backward is an ``index_add`` of ``B·N·k`` rows) measured 10x slower."""

    @staticmethod
    def forward(ctx, a: Tensor, at: Tensor, x: Tensor) -> Tensor:
        ctx.at = at
        return a @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.at @ grad


def adjacency_csr(idx: Tensor, n: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """Block-diagonal adjacency of a batched kNN graph as CSR ``A`` (row i: its k neighbours), its transpose
    ``At`` and the in-degrees ``[B·N]``."""
    b, _, k = idx.shape
    rows = b * n
    cols = flat_index(idx, n)
    ones = torch.ones(cols.numel(), dtype=dtype, device=idx.device)
    crow = torch.arange(0, rows * k + 1, k, device=idx.device)
    a = torch.sparse_csr_tensor(crow, cols, ones, (rows, rows), check_invariants=False)
    order = cols.argsort(stable=True)
    deg = torch.bincount(cols, minlength=rows)
    crow_t = torch.zeros(rows + 1, dtype=torch.int64, device=idx.device)
    crow_t[1:] = deg.cumsum(0)
    at = torch.sparse_csr_tensor(crow_t, order // k, ones, (rows, rows), check_invariants=False)
    return a, at, deg


class EdgeConv(nn.Module):
    """One EdgeConv layer; ``forward(x [B, N, C], idx [B, N, k]) -> [B, N, C_out]``."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2, impl: str = "fast"):
        super().__init__()
        if impl not in EDGECONV_IMPLS:
            raise ValueError(f"unknown EdgeConv impl {impl!r}; choose from {EDGECONV_IMPLS}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.negative_slope = negative_slope
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(out_channels, 2 * in_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's default init
        self.bn = nn.BatchNorm1d(out_channels)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, impl={self.impl!r}"

    def forward(self, x: Tensor, idx: Tensor) -> Tensor:
        if self.impl == "naive":
            return self.forward_naive(x, idx)
        return self.forward_fast(x, idx)

    def forward_naive(self, x: Tensor, idx: Tensor) -> Tensor:
        b, n, _ = x.shape
        k = idx.shape[-1]
        xj = gather_neighbors(x, idx)
        xi = x.unsqueeze(2).expand_as(xj)
        e = F.linear(torch.cat([xj - xi, xi], dim=-1), self.weight)  # [B, N, k, C_out]
        e = self.bn(e.reshape(b * n * k, -1)).view(b, n, k, -1)
        return F.leaky_relu(e, self.negative_slope).amax(dim=2)

    def split_weight(self) -> tuple[Tensor, Tensor]:
        """``(W_1, W_2 - W_1)``: the neighbour and centre matrices of the per-point form."""
        c = self.in_channels
        w1 = self.weight[:, :c]
        return w1, self.weight[:, c:] - w1

    def forward_fast(self, x: Tensor, idx: Tensor) -> Tensor:
        b, n, _ = x.shape
        k = idx.shape[-1]
        w1, w2 = self.split_weight()
        a = F.linear(x, w1)  # [B, N, C_out], neighbour term
        c = F.linear(x, w2)  # [B, N, C_out], centre term
        bn = self.bn
        if self.training or not bn.track_running_stats:
            mean, var = _edge_moments(a, c, idx)
            if bn.track_running_stats:
                _update_running_stats(bn, mean, var, b * n * k)
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = torch.rsqrt(var + bn.eps)
        if bn.affine:
            scale = bn.weight * scale
            shift = bn.bias - mean * scale
        else:
            shift = -mean * scale
        with torch.no_grad():
            g = gather_neighbors(a.detach(), idx)  # [B, N, k, C_out]
            if bool((scale < 0).any()):
                g = g * torch.where(scale < 0, -1.0, 1.0).to(g.dtype)
            # max(dim).indices: measured 4x faster than argmax over this middle dimension
            pick = g.max(dim=2).indices  # [B, N, C_out]: position within the k neighbours
            src = idx.gather(2, pick)  # [B, N, C_out]: the chosen neighbour's point index
        sel = a.gather(1, src)
        return F.leaky_relu(scale * (sel + c) + shift, self.negative_slope)


def _edge_moments(a: Tensor, c: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of ``e_ij = a_j + c_i`` over all edges, without forming ``e``."""
    b, n, co = a.shape
    k = idx.shape[-1]
    m = b * n * k
    adj, adj_t, deg = adjacency_csr(idx, n, a.dtype)
    deg = deg.to(a.dtype).view(b, n, 1)
    mean_a = (deg * a).sum((0, 1)) / m
    mean_c = c.mean((0, 1))
    ac = a - mean_a
    cc = c - mean_c
    nbr_sum = _SpMM.apply(adj, adj_t, ac.reshape(b * n, co)).view(b, n, co)  # Σ_{j∈N(i)} (a_j - mean_a)
    second = (deg * ac * ac).sum((0, 1)) + 2.0 * (cc * nbr_sum).sum((0, 1)) + k * (cc * cc).sum((0, 1))
    return mean_a + mean_c, second / m


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm1d, mean: Tensor, var: Tensor, count: int) -> None:
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    unbiased = var * (count / max(count - 1, 1))
    bn.running_mean.lerp_(mean.detach(), momentum)
    bn.running_var.lerp_(unbiased.detach(), momentum)
