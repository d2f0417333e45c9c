"""The input contract every kNN backend checks (dense, fused, torch-cluster): one home that they all import."""

from __future__ import annotations

from torch import Tensor


def check_knn_input(x: Tensor, k: int) -> None:
    """Raise ValueError unless ``x`` is ``[B, N, C]`` and ``1 <= k <= N``."""
    if x.dim() != 3:
        raise ValueError(f"expected points [B, N, C], got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"k={k} needs 1 <= k <= number of points ({x.shape[1]})")
