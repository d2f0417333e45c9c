"""AT: attention transfer (Zagoruyko & Komodakis, ICLR 2017), with attention over points.

The attention map of node features ``z`` ``[B, N, C]`` is the per-point energy ``a_i = mean_c |z_ic|^p``
(``p = 2``), flattened to ``[B, N]`` and L2-normalised per cloud; the loss is the squared difference between the
student's and the teacher's normalised maps, averaged over clouds *and points* (channel counts may differ; point
counts must match):

.. math::
    \\mathcal{L}_{AT} = \\frac{1}{BN} \\sum_b \\Big\\lVert \\frac{a^s_b}{\\lVert a^s_b \\rVert_2}
        - \\frac{a^t_b}{\\lVert a^t_b \\rVert_2} \\Big\\rVert_2^2

The mean over points is the reference implementation's scale (``(at(x) - at(y)).pow(2).mean()``, weighted by
``β/2`` with ``β = 1000``): summing over points instead makes the term N times larger, and with β = 1000 and
512 points it outweighed the cross-entropy ~75x and wrecked training (``benchmarks/studies/distill_compare/``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def attention_map(z: Tensor, p: float = 2.0) -> Tensor:
    """``[B, N, C] -> [B, N]``, unit L2 norm per cloud."""
    return F.normalize(z.abs().pow(p).mean(-1), dim=-1)


class ATLoss(nn.Module):
    def __init__(self, p: float = 2.0):
        super().__init__()
        self.p = p

    def forward(self, z_s: Tensor, z_t: Tensor) -> Tensor:
        if z_s.shape[:2] != z_t.shape[:2]:
            raise ValueError(f"student and teacher features cover different points: {z_s.shape} vs {z_t.shape}")
        diff = attention_map(z_s, self.p) - attention_map(z_t.detach(), self.p)
        return diff.pow(2).mean()
