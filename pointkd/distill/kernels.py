"""Kernel similarities between node features for LSP, written in terms of dot products.

Every kernel here is a function of ``g_ij = z_i·z_j`` and the squared norms ``n_i = ‖z_i‖²``, ``n_j = ‖z_j‖²``,
so it can be evaluated on gathered entries of a Gram matrix (``[B, N, N]``, one ``bmm``) instead of on gathered
feature vectors (``[B, N, K, C]``):

============  =======================================  ==========================
name          K(z_i, z_j)                              in dot-product terms
============  =======================================  ==========================
``rbf``       ``exp(-‖z_i − z_j‖² / (2σ²))``           ``exp(-(n_i + n_j − 2g) / (2σ²))``
``poly``      ``(z_i·z_j + c)^d``                      ``(g + c)^d``
``linear``    ``z_i·z_j``                              ``g``
``l2``        ``−‖z_i − z_j‖²``                        ``−(n_i + n_j − 2g)``
============  =======================================  ==========================

``l2`` is the Euclidean form of the LSP paper's Eq. 4. As printed there (``+‖z_i − z_j‖²`` inside the softmax)
it gives the *farthest* neighbours the largest weight, the opposite of a local-structure similarity; we use the
negative squared distance, so near neighbours weigh most, as for every other kernel here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

KERNELS = ("rbf", "poly", "linear", "l2")


@dataclass(frozen=True)
class Kernel:
    name: str = "rbf"
    sigma: float = 1.0  # rbf bandwidth
    degree: int = 2  # poly
    coef: float = 0.0  # poly offset c

    def __post_init__(self) -> None:
        if self.name not in KERNELS:
            raise ValueError(f"unknown LSP kernel {self.name!r}; choose from {KERNELS}")
        if self.sigma <= 0:
            raise ValueError(f"rbf sigma must be > 0, got {self.sigma}")

    def from_dots(self, dot: Tensor, sq_i: Tensor, sq_j: Tensor) -> Tensor:
        """``K`` from ``z_i·z_j``, ``‖z_i‖²`` and ``‖z_j‖²`` (broadcastable tensors of any shape)."""
        return _FORMS[self.name](self, dot, sq_i, sq_j)

    def pairwise(self, z_i: Tensor, z_j: Tensor) -> Tensor:
        """``K`` on explicit feature pairs ``[..., C]`` (the reference form, used by the tests)."""
        return self.from_dots((z_i * z_j).sum(-1), (z_i * z_i).sum(-1), (z_j * z_j).sum(-1))


def _sqdist(dot: Tensor, sq_i: Tensor, sq_j: Tensor) -> Tensor:
    return (sq_i + sq_j - 2.0 * dot).clamp_min(0.0)


_FORMS: dict[str, Callable[[Kernel, Tensor, Tensor, Tensor], Tensor]] = {
    "rbf": lambda k, d, a, b: torch.exp(-_sqdist(d, a, b) / (2.0 * k.sigma**2)),
    "poly": lambda k, d, a, b: (d + k.coef) ** k.degree,
    "linear": lambda k, d, a, b: d,
    "l2": lambda k, d, a, b: -_sqdist(d, a, b),
}
