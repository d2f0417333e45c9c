"""FitNet hints: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015), for point features.

A learned regressor ``r`` (a per-point linear map ``C_s -> C_t``) maps the student's node features
``z^s`` ``[B, N, C_s]`` onto the teacher's ``z^t`` ``[B, N, C_t]``:

.. math::
    \\mathcal{L}_{FitNet} = \\frac{1}{B N C_t} \\sum_{b, i} \\lVert r(z^s_{b,i}) - z^t_{b,i} \\rVert^2

Points are the same in both models (same input order), so features align point by point. The regressor is
trained with the student and discarded after distillation.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FitNetLoss(nn.Module):
    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.regressor = nn.Linear(student_channels, teacher_channels, bias=False)

    def forward(self, z_s: Tensor, z_t: Tensor) -> Tensor:
        if z_s.shape[:2] != z_t.shape[:2]:
            raise ValueError(f"student and teacher features cover different points: {z_s.shape} vs {z_t.shape}")
        return F.mse_loss(self.regressor(z_s), z_t.detach())
