"""Per-class cross-entropy weights from the training split's class counts (``train.class_weights``).

ModelNet40 is imbalanced (its training split holds 889 chairs and 64 bowls) and mean class
accuracy weighs every class alike, so up-weighting the small classes trades a little overall accuracy for mAcc.
With ``n_c`` clouds of class ``c`` among ``N``:

.. math::
    w_c = \\frac{n_c^{-p}}{Z}, \\qquad Z = \\frac{1}{N} \\sum_c n_c \\, n_c^{-p}

so the weights average 1 over the training clouds (``p = 1/2`` for ``inverse_sqrt``, ``p = 1`` for ``inverse``,
where every class then carries the same total weight). ``F.cross_entropy(weight=w)`` divides a batch's sum by the
batch's total weight, so the loss keeps its scale against the distillation terms whatever the rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import CLASS_WEIGHT_RULES

_POWERS = {"inverse_sqrt": 0.5, "inverse": 1.0}


def class_weights(labels: Tensor, num_classes: int, rule: str) -> Tensor | None:
    """The weights ``[num_classes]`` (float32) of ``rule`` for training labels ``[N]``; ``None`` for ``"none"``."""
    if rule not in CLASS_WEIGHT_RULES:
        raise ValueError(f"class weight rule must be one of {CLASS_WEIGHT_RULES}, got {rule!r}")
    if rule == "none":
        return None
    counts = torch.bincount(labels.long().flatten(), minlength=num_classes).double()
    if counts.numel() != num_classes:
        raise ValueError(f"labels go up to {counts.numel() - 1}, past {num_classes} classes")
    if bool((counts == 0).any()):
        empty = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"classes {empty} have no training cloud: no weight can be derived for them")
    raw = counts.pow(-_POWERS[rule])
    return (raw * counts.sum() / (raw * counts).sum()).float()
