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

  The max over neighbours itself is a max-reduce sparse matmul with the same adjacency
  (``torch.sparse.mm(A, a, reduce="amax")``, a CSR kernel that never forms ``[B, N, k, C]``; CPU only, so on other
  devices the gather + max over ``[B, N, k, C]`` stays). When ``a`` needs a
  gradient the winning neighbour is wanted too; ``reduce="amax"`` only returns it through a slow arg-tracking
  path, so :func:`neighbor_argmax` packs each point's index into the low mantissa bits of ``float64(a)`` (a float32
  widened to float64 has 29 zero low bits), takes the amax of those keys and reads the index back: exact, the
  same values as the gather + max it replaced (``benchmarks/results/<device>/edgeconv_max*``).

  Under a bf16 autocast region (``train.precision: bf16``) only the two per-point matmuls run in bf16; the edge
  part above runs in fp32 and so does the output (:mod:`pointkd.models.precision`).
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


def adjacency_csr(
    idx: Tensor, n: int, dtype: torch.dtype = torch.float32, transpose: bool = True
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Block-diagonal adjacency of a batched kNN graph as CSR ``A`` (row i: its k neighbours), its transpose
    ``At`` and the in-degrees ``[B·N]`` (both None with ``transpose=False``)."""
    b, _, k = idx.shape
    rows = b * n
    cols = flat_index(idx, n)
    ones = torch.ones(cols.numel(), dtype=dtype, device=idx.device)
    crow = torch.arange(0, rows * k + 1, k, device=idx.device)
    a = torch.sparse_csr_tensor(crow, cols, ones, (rows, rows), check_invariants=False)
    if not transpose:
        return a, None, None
    order = torch.sort(cols, stable=True).indices  # measured faster than argsort(stable=True)
    deg = torch.bincount(cols, minlength=rows)
    crow_t = torch.zeros(rows + 1, dtype=torch.int64, device=idx.device)
    crow_t[1:] = deg.cumsum(0)
    at = torch.sparse_csr_tensor(crow_t, order // k, ones, (rows, rows), check_invariants=False)
    return a, at, deg


def _csr_neighbors(adj: Tensor, b: int, n: int) -> Tensor:
    """The per-cloud neighbour indices ``[B, N, k]`` of an :func:`adjacency_csr` matrix (k per row)."""
    cols = adj.col_indices().view(b, n, -1)
    return cols - (torch.arange(b, device=cols.device) * n).view(b, 1, 1)


# Low mantissa bits of a float32 widened to float64 (always zero): room for a point index in neighbor_argmax.
_INDEX_BITS = 29


def neighbor_max(a: Tensor, adj: Tensor, sign: Tensor | None = None) -> Tensor:
    """``max_{j∈N(i)} a_j`` per channel, ``a`` ``[B, N, C]`` -> ``[B, N, C]``; ``adj`` is the CSR adjacency of
    :func:`adjacency_csr`; channels where ``sign`` ``[C]`` is -1 take the min instead."""
    b, n, c = a.shape
    x = a if sign is None else a * sign
    if x.device.type != "cpu":  # reduce="amax" is a CPU-only CSR kernel: elsewhere gather + max
        out = gather_neighbors(x.detach(), _csr_neighbors(adj, b, n)).amax(dim=2)
    else:
        out = torch.sparse.mm(adj.to(x.dtype), x.detach().reshape(b * n, c), reduce="amax").view(b, n, c)
    return out if sign is None else out * sign


@torch.no_grad()
def neighbor_argmax(a: Tensor, idx: Tensor, adj: Tensor, sign: Tensor | None = None) -> Tensor:
    """Point index (into N) of ``argmax_{j∈N(i)} a_j`` per channel, ``[B, N, C]`` int64, ``argmin`` where
    ``sign`` is -1. For float32 ``a`` one max-reduce SpMM over float64 keys (module docstring); other dtypes (no
    spare mantissa bits) take the gather + max over ``[B, N, k, C]``."""
    b, n, c = a.shape
    x = a.detach() if sign is None else a.detach() * sign
    if x.dtype != torch.float32 or n >= 2**_INDEX_BITS or x.device.type != "cpu":
        return idx.gather(2, gather_neighbors(x, idx).max(dim=2).indices)
    point = torch.arange(n, device=a.device).repeat(b).view(b * n, 1)
    # ±inf would turn into NaNs with index bits: stand-ins beyond any float32 keep the order (NaN -> 0).
    wide = torch.nan_to_num(x.reshape(b * n, c).double(), nan=0.0, posinf=2.0**200, neginf=-(2.0**200))
    keys = (wide.view(torch.int64) | point).view(torch.float64)
    best = torch.sparse.mm(adj.to(torch.float64), keys, reduce="amax")
    return (best.view(torch.int64) & (2**_INDEX_BITS - 1)).view(b, n, c)


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
        w1, w2 = self.split_weight()
        a = F.linear(x, w1)  # [B, N, C_out], neighbour term
        c = F.linear(x, w2)  # [B, N, C_out], centre term
        device = a.device.type
        if torch.is_autocast_enabled(device) and a.dtype != torch.float32:
            # Mixed precision: the per-point matmuls above ran in autocast's dtype; the edge part runs in fp32
            # (moments, SpMM, neighbour argmax: see pointkd.models.precision).
            with torch.autocast(device, enabled=False):
                return self._edge_part(a.float(), c.float(), idx)
        return self._edge_part(a, c, idx)

    def _edge_part(self, a: Tensor, c: Tensor, idx: Tensor) -> Tensor:
        """``max_j σ(BN(a_j + c_i))`` over the neighbours ``idx`` ``[B, N, k]`` of each point, from the neighbour
        and centre terms ``a``, ``c`` ``[B, N, C_out]`` (module docstring)."""
        b, n, _ = a.shape
        k = idx.shape[-1]
        bn = self.bn
        adj = None
        if self.training or not bn.track_running_stats:
            mean, var, adj = _edge_moments(a, c, idx)
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
        sign = torch.where(scale < 0, -1.0, 1.0).to(a.dtype) if bool((scale < 0).any()) else None
        if adj is None:
            adj = adjacency_csr(idx, n, a.dtype, transpose=False)[0]
        if a.requires_grad:
            sel = a.gather(1, neighbor_argmax(a, idx, adj, sign))  # the gradient flows to the winning neighbour
        else:
            sel = neighbor_max(a, adj, sign)
        return F.leaky_relu(scale * (sel + c) + shift, self.negative_slope)


def _edge_moments(a: Tensor, c: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel mean and biased variance of ``e_ij = a_j + c_i`` over all edges, without forming ``e``; and
    the adjacency it built."""
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
    return mean_a + mean_c, second / m, adj


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm1d, mean: Tensor, var: Tensor, count: int) -> None:
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    unbiased = var * (count / max(count - 1, 1))
    bn.running_mean.lerp_(mean.detach(), momentum)
    bn.running_var.lerp_(unbiased.detach(), momentum)
