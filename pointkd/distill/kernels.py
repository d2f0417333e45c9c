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

Options: ``normalize`` L2-normalises the features first (``g -> g / sqrt(n_i n_j)``, ``n -> 1``), so the kernel
sees directions only and the RBF stays in ``[e^{-2/σ²}, 1]`` at every layer; ``sigma_rule="median"`` sets the RBF
bandwidth of each layer pair, per step, to the median teacher distance over the compared edges (the median
heuristic: ``K = e^{-1/2}`` there), instead of one fixed σ for layers whose feature scales differ by orders of
magnitude (``benchmarks/studies/lsp_kernel_scale/lsp_kernel_scale.md``).

``l2`` is the Euclidean form of the LSP paper's Eq. 4. As printed there (``+‖z_i − z_j‖²`` inside the softmax)
it gives the *farthest* neighbours the largest weight, the opposite of a local-structure similarity; we use the
negative squared distance, so near neighbours weigh most, as for every other kernel here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..config import KERNELS, SIGMA_RULES

_EPS = 1e-12


@dataclass(frozen=True)
class Kernel:
    name: str = "rbf"
    sigma: float = 1.0  # rbf bandwidth
    degree: int = 2  # poly
    coef: float = 0.0  # poly offset c
    sigma_rule: str = "fixed"  # fixed | median (rbf: σ per layer pair and step, see the module docstring)
    normalize: bool = False  # L2-normalise the features before the kernel

    def __post_init__(self) -> None:
        if self.name not in KERNELS:
            raise ValueError(f"unknown LSP kernel {self.name!r}; choose from {KERNELS}")
        if self.sigma <= 0:
            raise ValueError(f"rbf sigma must be > 0, got {self.sigma}")
        if self.sigma_rule not in SIGMA_RULES:
            raise ValueError(f"unknown sigma rule {self.sigma_rule!r}; choose from {SIGMA_RULES}")
        if self.sigma_rule == "median" and self.name != "rbf":
            raise ValueError(f"the median sigma rule sets an rbf bandwidth; kernel {self.name!r} has none")

    def from_dots(self, dot: Tensor, sq_i: Tensor, sq_j: Tensor) -> Tensor:
        """``K`` from ``z_i·z_j``, ``‖z_i‖²`` and ``‖z_j‖²`` (broadcastable tensors of any shape)."""
        if self.normalize:
            dot, sq_i, sq_j = normalized_dots(dot, sq_i, sq_j)
        return _FORMS[self.name](self, dot, sq_i, sq_j)

    def with_median_sigma(self, dot: Tensor, sq_i: Tensor, sq_j: Tensor, edges: Tensor) -> Kernel:
        """This kernel with σ = the median distance over ``edges`` (a mask over ``dot``), computed without
        gradient; unchanged under the fixed rule."""
        if self.sigma_rule != "median":
            return self
        with torch.no_grad():
            if self.normalize:
                dot, sq_i, sq_j = normalized_dots(dot, sq_i, sq_j)
            d2 = _sqdist(dot, sq_i, sq_j)
            d2 = d2[edges]
            sigma = float(d2.median().sqrt()) if d2.numel() else self.sigma
        return replace(self, sigma=max(sigma, 1e-6))

    def pairwise(self, z_i: Tensor, z_j: Tensor) -> Tensor:
        """``K`` on explicit feature pairs ``[..., C]`` (the reference form, used by the tests)."""
        return self.from_dots((z_i * z_j).sum(-1), (z_i * z_i).sum(-1), (z_j * z_j).sum(-1))


def normalized_dots(dot: Tensor, sq_i: Tensor, sq_j: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Dot products and squared norms of the L2-normalised features (zero vectors stay zero)."""
    inv_i, inv_j = sq_i.clamp_min(_EPS).rsqrt(), sq_j.clamp_min(_EPS).rsqrt()
    return dot * inv_i * inv_j, sq_i * inv_i * inv_i, sq_j * inv_j * inv_j


def _sqdist(dot: Tensor, sq_i: Tensor, sq_j: Tensor) -> Tensor:
    return (sq_i + sq_j - 2.0 * dot).clamp_min(0.0)


_FORMS: dict[str, Callable[[Kernel, Tensor, Tensor, Tensor], Tensor]] = {
    "rbf": lambda k, d, a, b: torch.exp(-_sqdist(d, a, b) / (2.0 * k.sigma**2)),
    "poly": lambda k, d, a, b: (d + k.coef) ** k.degree,
    "linear": lambda k, d, a, b: d,
    "l2": lambda k, d, a, b: -_sqdist(d, a, b),
}
