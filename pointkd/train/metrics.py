"""Classification metrics from predictions: overall accuracy, mean class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` int64 counts, rows = true class, columns = predicted class."""
    flat = target.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass
class ClassificationReport:
    oa: float  # overall accuracy, fraction of clouds right
    macc: float  # mean over classes present in the targets of per-class accuracy
    per_class: list[float]  # accuracy per class (nan where a class has no target)
    support: list[int]
    confusion: Tensor

    @classmethod
    def from_predictions(cls, pred: Tensor, target: Tensor, num_classes: int) -> ClassificationReport:
        cm = confusion_matrix(pred, target, num_classes)
        support = cm.sum(1)
        correct = cm.diagonal()
        per_class = torch.where(support > 0, correct.double() / support.clamp_min(1).double(), float("nan"))
        present = support > 0
        return cls(
            oa=float(correct.sum()) / max(int(support.sum()), 1),
            macc=float(per_class[present].mean()) if bool(present.any()) else float("nan"),
            per_class=per_class.tolist(),
            support=support.tolist(),
            confusion=cm,
        )
