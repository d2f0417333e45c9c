"""Training objectives: plain supervised cross-entropy, and distillation from a frozen teacher by name.

An objective is called once per step as ``objective(student, points, labels) -> StepLoss``; it owns any
trainable helper (FitNet regressors), which the trainer optimises and checkpoints with the student.

Methods (``METHODS``):

==============  ===========================================================================
``scratch``     ``CE``
``kd``          ``(1 − α)·CE + α·L_KD`` (Hinton; T, α)
``fitnet``      ``CE + β_fit·Σ_l w_l·L_FitNet(l)``
``at``          ``CE + β_at/2·Σ_l w_l·L_AT(l)`` (Zagoruyko & Komodakis' β/2)
``lsp``         ``CE + λ·Σ_l w_l·L_LSP(l)`` over the teacher ∪ student virtual edges
``lsp+kd``      ``(1 − α)·CE + α·L_KD + λ·Σ_l w_l·L_LSP(l)``
``hkd``         ``CE + β_hkd·L_HOL`` (holistic KD: instance graphs, TAGCN, InfoNCE; :mod:`.hkd`)
``hkd+kd``      ``(1 − α)·CE + α·L_KD + β_hkd·L_HOL``
``stride``      ``CE + β_stride·mean(α ⊙ (E + λ_S·L_LSP))`` over every layer pair (:mod:`.layer_attention`)
==============  ===========================================================================

``l`` runs over the (teacher layer, student layer) pairs of the layer map (:mod:`.layer_map`); ``stride`` needs no
map (its attention weighs every pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DISTILL_METHODS, DistillSection
from ..models import DGCNN
from .at import ATLoss
from .fitnet import FitNetLoss
from .hkd import HKDLoss
from .kd import kd_loss
from .kernels import Kernel
from .layer_attention import LayerAttentionLoss
from .layer_map import default_layer_map, validate_layer_map
from .lsp import LSPLoss, random_centres

METHODS = DISTILL_METHODS


@dataclass
class StepLoss:
    loss: Tensor  # the scalar to back-propagate
    logits: Tensor  # the student's logits [B, K]
    terms: dict[str, float] = field(default_factory=dict)  # each weighted term, for logs and progress bars


@dataclass
class TeacherOutput:
    features: list[Tensor]  # per teacher layer computed, [B, N, C_l]
    graphs: list[Tensor]  # per teacher layer computed, [B, N, k_t]
    logits: Tensor | None = None  # [B, K], when the method reads them
    embedding: Tensor | None = None  # [B, D], when the method reads it


class Supervised(nn.Module):
    """Cross-entropy with label smoothing."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, model: nn.Module, points: Tensor, labels: Tensor) -> StepLoss:
        logits = model(points)
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return StepLoss(ce, logits, {"ce": float(ce.detach())})


class Distill(nn.Module):
    """Distillation from a frozen ``teacher`` into the model being trained; see the module docstring."""

    def __init__(self, teacher: DGCNN, student: DGCNN, settings: DistillSection, label_smoothing: float = 0.0):
        super().__init__()
        settings.validate()
        self.settings = s = settings
        self.label_smoothing = label_smoothing
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = [teacher]  # a list keeps it out of this module's parameters and state_dict
        t_layers, s_layers = len(teacher.config.widths), len(student.config.widths)
        pairs = (
            validate_layer_map(s.layer_map, t_layers, s_layers)
            if s.layer_map is not None
            else default_layer_map(t_layers, s_layers)
        )
        self.pairs = pairs
        weights = s.layer_weights if s.layer_weights is not None else [1.0] * len(pairs)
        if len(weights) != len(pairs):
            raise ValueError(f"{len(weights)} layer_weights for {len(pairs)} layer pairs {pairs}")
        self.weights = [float(w) for w in weights]
        self.lsp = LSPLoss(
            Kernel(s.kernel, s.sigma, s.degree, s.coef, s.sigma_rule, s.lsp_normalize), s.lsp_impl, s.lsp_direction
        )
        self.at = ATLoss()
        self.fitnets = nn.ModuleList()
        if s.method == "fitnet":
            for t, st in pairs:
                self.fitnets.append(FitNetLoss(student.config.widths[st], teacher.config.widths[t]))
        if s.method in ("hkd", "hkd+kd"):
            self.hkd = HKDLoss(
                student.embedding_dim, teacher.embedding_dim, s.hkd_dim, s.hkd_k, s.hkd_queue, s.hkd_temperature
            )
        if s.method == "stride":
            self.stride = LayerAttentionLoss(
                student.config.widths,
                teacher.config.widths,
                s.stride_dim,
                s.stride_rank,
                self.lsp,
                s.stride_embedding_weight,
                s.stride_structural_weight,
            )

    def _apply(self, fn, *args, **kwargs):
        self.teacher[0]._apply(fn, *args, **kwargs)  # .to(device) moves the teacher too (it is no submodule)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, model: nn.Module, points: Tensor, labels: Tensor) -> StepLoss:
        s = self.settings
        t_out = self._teacher_outputs(points)
        s_out = model.forward_features(points, first_graph=self._shared_first_graph(model, t_out.graphs[0]))
        ce = F.cross_entropy(s_out.logits, labels, label_smoothing=self.label_smoothing)
        terms: dict[str, Tensor] = {}
        if s.method in ("kd", "lsp+kd", "hkd+kd"):
            terms["ce"] = (1 - s.kd_alpha) * ce
            terms["kd"] = s.kd_alpha * kd_loss(s_out.logits, t_out.logits, s.kd_temperature)
        else:
            terms["ce"] = ce
        if s.method in ("lsp", "lsp+kd"):
            centres = random_centres(points.shape[1], s.lsp_centres, points.device)
            terms["lsp"] = s.lsp_lambda * self._over_layers(
                lambda t, st, _: self.lsp(
                    s_out.features[st], s_out.graphs[st], t_out.features[t], t_out.graphs[t], centres
                )
            )
        if s.method == "fitnet":
            terms["fitnet"] = s.fitnet_weight * self._over_layers(
                lambda t, st, i: self.fitnets[i](s_out.features[st], t_out.features[t])
            )
        if s.method == "at":
            terms["at"] = (
                s.at_weight / 2 * self._over_layers(lambda t, st, _: self.at(s_out.features[st], t_out.features[t]))
            )
        if s.method in ("hkd", "hkd+kd"):
            terms["hkd"] = s.hkd_weight * self.hkd(s_out.embedding, t_out.embedding, s_out.logits, t_out.logits)
        if s.method == "stride":
            terms["stride"] = s.stride_weight * self.stride(s_out.features, s_out.graphs, t_out.features, t_out.graphs)
        loss = torch.stack(list(terms.values())).sum()
        return StepLoss(loss, s_out.logits, {k: float(v.detach()) for k, v in terms.items()})

    @torch.no_grad()
    def _teacher_outputs(self, points: Tensor) -> TeacherOutput:
        """The frozen teacher's layers (only up to the deepest one a loss reads), plus its head where KD or HKD
        read logits or the embedding."""
        teacher, method = self.teacher[0], self.settings.method
        if method in ("kd", "lsp+kd", "hkd", "hkd+kd"):
            out = teacher.forward_features(points)
            return TeacherOutput(out.features, out.graphs, out.logits, out.embedding)
        deepest = len(teacher.convs) - 1 if method == "stride" else max(t for t, _ in self.pairs)
        features, graphs = teacher.forward_layers(points, upto=deepest)
        return TeacherOutput(features, graphs)

    def _shared_first_graph(self, student: nn.Module, teacher_graph: Tensor) -> Tensor | None:
        """The student's xyz graph read off the teacher's: both rank the same points by the same score, nearest
        first, so the student's k nearest are the first k of the teacher's (equal up to distance ties)."""
        k = student.config.k
        if not self.settings.share_first_graph or k > teacher_graph.shape[-1]:
            return None
        return teacher_graph[..., :k]

    def save_figures(self, out_dir: str | Path) -> list[Path]:
        """After training: the learned layer-attention map (``stride``) as ``layer_attention.png``."""
        if self.settings.method != "stride":
            return []
        return [self.stride.plot(Path(out_dir) / "layer_attention.png")]

    def _over_layers(self, term) -> Tensor:
        return sum(w * term(t, st, i) for i, ((t, st), w) in enumerate(zip(self.pairs, self.weights, strict=True)))
