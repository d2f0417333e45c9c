"""KD: Hinton et al., "Distilling the Knowledge in a Neural Network" (2015).

Logits ``[B, K]`` of student ``s`` and teacher ``t`` at temperature ``T``:

.. math::
    \\mathcal{L}_{KD} = T^2 \\, D_{KL}\\big(\\mathrm{softmax}(t/T) \\,\\|\\, \\mathrm{softmax}(s/T)\\big)

averaged over the batch; the ``T²`` keeps gradient magnitudes comparable across temperatures. The objective
weighs it against cross-entropy as ``(1 − α)·CE + α·L_KD`` (the LSP paper's baseline uses α = 0.1).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    t = temperature
    log_s = F.log_softmax(student_logits / t, dim=-1)
    log_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * t * t


class KDLoss(nn.Module):
    def __init__(self, temperature: float = 4.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return kd_loss(student_logits, teacher_logits, self.temperature)
