"""Training objectives: plain supervised cross-entropy, and distillation from a frozen teacher as a weighted sum of
registered terms (:mod:`.registry`):

.. math::
    \\mathcal{L} = \\sum_i w_i \\, \\mathcal{L}_i(\\text{student}(x), \\text{teacher}(x))

The terms come from ``distill.terms``, or from the ``distill.method`` preset (:mod:`.presets`) that expands the
flat ``distill.*`` fields into terms. An objective is called once per step as
``objective(student, points, labels) -> StepLoss``; it owns the terms' trainable heads (FitNet regressors, HKD's
TAGCN heads, the layer attention), which the trainer optimises and checkpoints with the student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DistillSection
from ..models import DGCNN
from ..models.precision import check_precision, forward_in
from .presets import preset_terms
from .registry import StepOutputs, TeacherOutput, build_loss, loss_options, term_name


@dataclass
class StepLoss:
    loss: Tensor  # the scalar to back-propagate
    logits: Tensor  # the student's logits [B, K]
    terms: dict[str, float] = field(default_factory=dict)  # each weighted term, for logs and progress bars


class Supervised(nn.Module):
    """Cross-entropy with label smoothing and, optionally, per-class weights ``[K]``; the model's forward in
    ``precision`` (:mod:`pointkd.models.precision`), the loss in fp32."""

    def __init__(self, label_smoothing: float = 0.0, class_weight: Tensor | None = None, precision: str = "fp32"):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.precision = check_precision(precision)
        self.register_buffer("class_weight", class_weight, persistent=False)  # derived from the data, not state

    def forward(self, model: nn.Module, points: Tensor, labels: Tensor) -> StepLoss:
        logits = forward_in(self.precision, model, points)
        ce = F.cross_entropy(logits, labels, weight=self.class_weight, label_smoothing=self.label_smoothing)
        return StepLoss(ce, logits, {"ce": float(ce.detach())})


class Distill(nn.Module):
    """Distillation from a frozen ``teacher`` into ``student``: the terms of ``settings`` (``distill.terms`` or
    the ``distill.method`` preset), summed with their weights.

    Term specs that leave them out get the section's ``layer_map`` and ``layer_weights`` and the run's
    ``label_smoothing`` and ``class_weight`` (for ``ce``). The teacher runs only as deep as the terms read, and its
    head only when a term reads logits or the embedding. Both forwards run in ``precision``, the terms in fp32."""

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        settings: DistillSection,
        label_smoothing: float = 0.0,
        class_weight: Tensor | None = None,
        precision: str = "fp32",
    ):
        super().__init__()
        settings.validate()
        self.settings = settings
        self.precision = check_precision(precision)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = [teacher]  # a list keeps it out of this module's parameters and state_dict
        shared = {
            "layer_map": settings.layer_map,
            "layer_weights": settings.layer_weights,
            "label_smoothing": label_smoothing,
            "class_weight": class_weight,
        }
        self.losses = nn.ModuleDict()
        for spec in preset_terms(settings):
            options = loss_options(spec["loss"])
            spec = {**{k: v for k, v in shared.items() if k in options}, **spec}
            self.losses[term_name(spec)] = build_loss(spec, teacher, student)

    def _apply(self, fn, *args, **kwargs):
        self.teacher[0]._apply(fn, *args, **kwargs)  # .to(device) moves the teacher too (it is no submodule)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, model: nn.Module, points: Tensor, labels: Tensor) -> StepLoss:
        t_out = self._teacher_outputs(points)
        first_graph = self._shared_first_graph(model, t_out.graphs[0])
        s_out = forward_in(self.precision, model.forward_features, points, first_graph=first_graph)
        out = StepOutputs(s_out, t_out, points, labels)
        terms = {name: term.weight * term(out) for name, term in self.losses.items()}
        loss = torch.stack(list(terms.values())).sum()
        return StepLoss(loss, s_out.logits, {k: float(v.detach()) for k, v in terms.items()})

    @torch.no_grad()
    def _teacher_outputs(self, points: Tensor) -> TeacherOutput:
        """The frozen teacher's layers (only up to the deepest one a term reads), plus its head where a term reads
        logits or the embedding."""
        teacher = self.teacher[0]
        if any(term.reads_head for term in self.losses.values()):
            out = forward_in(self.precision, teacher.forward_features, points)
            return TeacherOutput(out.features, out.graphs, out.logits, out.embedding)
        deepest = max(0, *(term.deepest_teacher_layer() for term in self.losses.values()))
        features, graphs = forward_in(self.precision, teacher.forward_layers, points, upto=deepest)
        return TeacherOutput(features, graphs)

    def _shared_first_graph(self, student: nn.Module, teacher_graph: Tensor) -> Tensor | None:
        """The student's xyz graph read off the teacher's: both rank the same points by the same score, nearest
        first, so the student's k nearest are the first k of the teacher's (equal up to distance ties)."""
        k = student.config.k
        if not self.settings.share_first_graph or k > teacher_graph.shape[-1]:
            return None
        return teacher_graph[..., :k]

    def save_figures(self, out_dir: str | Path) -> list[Path]:
        """After training: each term's figures (the learned layer-attention map as ``layer_attention.png``)."""
        figures: list[Path] = []
        for term in self.losses.values():
            if hasattr(term, "save_figures"):
                figures += term.save_figures(Path(out_dir))
        return figures
