"""k-nearest-neighbour graphs for dense point batches.

For points ``x`` of shape ``[B, N, C]`` the kNN graph is an index tensor ``idx`` of shape ``[B, N, k]`` where
``idx[b, i]`` holds the ``k`` points nearest to ``x[b, i]`` in Euclidean distance, the point itself included
(distance 0), as in DGCNN.

The backends:

* ``"dense"`` (default, exportable): the ranking score

  .. math::
      s_{ij} = 2\\,x_i^\\top x_j - \\lVert x_j \\rVert^2 = -\\lVert x_i - x_j \\rVert^2 + \\lVert x_i \\rVert^2

  differs from the negative squared distance only by a per-row constant, so ``topk`` over ``j`` picks the same
  neighbours. One batched matmul plus one ``topk``; ONNX exports it as MatMul + TopK with a constant ``k``.
* ``"cluster"``: ``torch_cluster.knn`` (a KD-tree on the CPU), on every call.
* ``"fused"``: one C++ kernel for the score and the top-k, never writing the ``[B, N, N]`` scores
  (:mod:`pointkd.models.knn_fused`; CPU, built once per machine with its C++ compiler; not exportable).
* ``"auto"`` (default): torch-cluster where it measured faster, else fused where it can be built, else dense;
  dense whenever the graph is being exported, traced or compiled. ``benchmarks/studies/knn_backends/`` (results in
  ``benchmarks/studies/knn_backends/knn_backends.md``): on xyz input torch-cluster takes 0.4-0.7x the time of dense
  (1 x 1024: 4.0 vs 6.3 ms; 32 x 512: 41 vs 60 ms), in 64-d feature space 4.9-5.9x, so ``"auto"`` uses it for
  inputs of at most ``CLUSTER_MAX_DIM`` dimensions when it is installed. The fused kernel made whole training
  steps 1.10-1.51x faster than dense (``benchmarks/studies/train_step_levers/``).
  ``POINTKD_KNN_FUSED=0`` keeps ``"auto"`` off it.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch
from torch import Tensor

from .knn_input import check_knn_input

KNN_BACKENDS = ("auto", "dense", "cluster", "fused")
# Largest input dimension for which "auto" prefers torch-cluster (measured: faster at 3-d, slower at 64-d).
CLUSTER_MAX_DIM = 8


@functools.cache
def torch_cluster_available() -> bool:
    try:
        import torch_cluster  # noqa: F401
    except Exception:  # ImportError, or an ABI mismatch raising OSError/RuntimeError
        return False
    return True


def knn_scores(x: Tensor) -> Tensor:
    """Ranking scores ``[B, N, N]`` whose row-wise top-k are the k nearest neighbours of each point."""
    sq = (x * x).sum(-1)  # [B, N]
    # One fused call (2·x·xᵀ − ‖x_j‖²): measured 2-3x faster than bmm, scale, subtract as three passes.
    return torch.baddbmm(sq.unsqueeze(1), x, x.transpose(1, 2), beta=-1.0, alpha=2.0)


def knn_dense(x: Tensor, k: int) -> Tensor:
    """Dense kNN: ``x`` ``[B, N, C]`` -> ``idx`` ``[B, N, k]`` (int64), nearest first."""
    check_knn_input(x, k)
    return knn_scores(x).topk(k, dim=-1).indices


def knn_cluster(x: Tensor, k: int) -> Tensor:
    """kNN with ``torch_cluster.knn``: same contract as :func:`knn_dense`."""
    check_knn_input(x, k)
    if not torch_cluster_available():
        raise RuntimeError(
            "torch-cluster is not installed: `pip install --no-build-isolation torch-cluster` "
            "(compiles for ~18 min), or use knn backend 'dense'"
        )
    import torch_cluster

    b, n, c = x.shape
    flat = x.detach().reshape(b * n, c).contiguous()
    batch = torch.arange(b, device=x.device).repeat_interleave(n)
    row, col = torch_cluster.knn(flat, flat, k, batch, batch)
    if row.numel() != b * n * k:
        raise RuntimeError(f"torch_cluster.knn returned {row.numel()} edges, expected {b * n * k}")
    # Group by query point; the stable sort keeps torch-cluster's nearest-first order within a row.
    order = torch.sort(row, stable=True).indices
    col = col[order].view(b, n, k)
    return col - (torch.arange(b, device=x.device) * n).view(b, 1, 1)


def knn(x: Tensor, k: int, backend: str = "auto") -> Tensor:
    """kNN graph ``[B, N, k]`` of ``x`` ``[B, N, C]`` with the chosen backend (see module docstring)."""
    if backend == "dense":
        return knn_dense(x, k)
    if backend == "cluster":
        return knn_cluster(x, k)
    if backend == "fused":
        if _exporting():
            return knn_dense(x, k)  # the exported graph is MatMul + TopK; pointkd compile fuses it for ONNX Runtime
        from .knn_fused import knn_fused

        return knn_fused(x, k)
    if backend != "auto":
        raise ValueError(f"unknown knn backend {backend!r}; choose from {KNN_BACKENDS}")
    if _exporting() or x.device.type != "cpu" or x.dtype != torch.float32:
        return knn_dense(x, k)
    if x.shape[-1] <= CLUSTER_MAX_DIM and torch_cluster_available():
        return knn_cluster(x, k)
    if fused_knn_ready():
        from .knn_fused import knn_fused

        return knn_fused(x, k)
    return knn_dense(x, k)


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


@functools.cache
def fused_knn_ready() -> bool:
    """Whether ``"auto"`` may use the fused kernel: not opted out (``POINTKD_KNN_FUSED=0``) and built or buildable
    here (the first call may compile it, tens of seconds, once per machine). Without a compiler it says why once."""
    if os.environ.get("POINTKD_KNN_FUSED", "1") == "0":
        return False
    from ..runtime.errors import KnnOpUnavailable
    from .knn_fused import _kernel

    try:
        _kernel()
    except KnnOpUnavailable as err:
        warnings.warn(f"kNN: the fused kernel is unavailable ({err}); using the dense backend", stacklevel=2)
        return False
    return True
