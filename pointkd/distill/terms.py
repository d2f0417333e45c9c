"""The registered distillation terms (:mod:`.registry`): cross-entropy, KD, FitNet, AT, LSP, HKD, layer attention.

Each term returns its unweighted loss; the objective sums ``weight · term``. The feature terms (``fitnet``, ``at``,
``lsp``) run over the (teacher layer ``t``, student layer ``s``) pairs of a layer map (:mod:`.layer_map`) with
per-pair weights ``w_l``:

.. math::
    \\mathcal{L}_{term} = \\sum_l w_l \\, \\mathcal{L}(z^s_{s_l}, z^t_{t_l})

``layer_attention`` needs no map: its learned attention weighs every pair (:mod:`.layer_attention`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import DGCNN
from .at import ATLoss
from .fitnet import FitNetLoss
from .hkd import HKDLoss
from .kd import KDLoss
from .kernels import Kernel
from .layer_attention import LayerAttentionLoss
from .layer_map import default_layer_map, validate_layer_map
from .lsp import LSPLoss, random_centres
from .registry import StepOutputs, Term, register_loss


@register_loss("ce")
class CrossEntropyTerm(Term):
    """Cross-entropy of the student's logits ``[B, K]`` against the labels ``[B]``, with label smoothing and
    optional per-class weights ``[K]`` (the objective fills in ``train.label_smoothing`` and the weights of
    ``train.class_weights`` when the spec does not set them)."""

    reads_teacher = False

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        weight: float = 1.0,
        label_smoothing: float = 0.0,
        class_weight: Sequence[float] | Tensor | None = None,
    ):
        super().__init__(weight)
        self.label_smoothing = label_smoothing
        w = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", w, persistent=False)  # derived from the data, not state

    def forward(self, out: StepOutputs) -> Tensor:
        return F.cross_entropy(
            out.student.logits, out.labels, weight=self.class_weight, label_smoothing=self.label_smoothing
        )


@register_loss("kd")
class KDTerm(Term):
    """Hinton's ``T²·KL(softmax(t/T) ‖ softmax(s/T))`` on the logits ``[B, K]`` (:mod:`.kd`)."""

    reads_head = True

    def __init__(self, teacher: DGCNN, student: DGCNN, weight: float, temperature: float = 4.0):
        super().__init__(weight)
        self.kd = KDLoss(temperature)

    def forward(self, out: StepOutputs) -> Tensor:
        return self.kd(out.student.logits, out.teacher.logits)


@register_loss("hkd")
class HKDTerm(Term):
    """Holistic KD (:mod:`.hkd`): InfoNCE between TAGCN embeddings of the two instance graphs of the batch, read
    from the pooled embeddings ``[B, D]`` and the logits ``[B, K]``."""

    reads_head = True

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        weight: float,
        dim: int = 128,
        k: int = 4,
        queue: int = 4096,
        temperature: float = 0.1,
    ):
        super().__init__(weight)
        self.hkd = HKDLoss(student.embedding_dim, teacher.embedding_dim, dim, k, queue, temperature)

    def forward(self, out: StepOutputs) -> Tensor:
        s, t = out.student, out.teacher
        return self.hkd(s.embedding, t.embedding, s.logits, t.logits)


class LayerPairTerm(Term):
    """A feature term over the pairs of ``layer_map`` (``[[teacher_layer, student_layer], ...]``; None: every n-th
    teacher layer, :func:`.default_layer_map`), weighted by ``layer_weights`` (one per pair; None: all 1)."""

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        weight: float,
        layer_map: Sequence[Sequence[int]] | None = None,
        layer_weights: Sequence[float] | None = None,
    ):
        super().__init__(weight)
        t_layers, s_layers = len(teacher.config.widths), len(student.config.widths)
        self.pairs = (
            validate_layer_map(layer_map, t_layers, s_layers)
            if layer_map is not None
            else default_layer_map(t_layers, s_layers)
        )
        weights = layer_weights if layer_weights is not None else [1.0] * len(self.pairs)
        if len(weights) != len(self.pairs):
            raise ValueError(f"{len(weights)} layer_weights for {len(self.pairs)} layer pairs {self.pairs}")
        self.layer_weights = [float(w) for w in weights]

    def deepest_teacher_layer(self) -> int:
        return max(t for t, _ in self.pairs)

    def over_layers(self, pair_loss: Callable[[int, int, int], Tensor]) -> Tensor:
        """``Σ_l w_l · pair_loss(teacher_layer, student_layer, l)``."""
        pairs = zip(self.pairs, self.layer_weights, strict=True)
        return sum(w * pair_loss(t, s, i) for i, ((t, s), w) in enumerate(pairs))


@register_loss("fitnet")
class FitNetTerm(LayerPairTerm):
    """FitNet hints (:mod:`.fitnet`): one learned regressor ``C_s -> C_t`` per layer pair."""

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        weight: float,
        layer_map: Sequence[Sequence[int]] | None = None,
        layer_weights: Sequence[float] | None = None,
    ):
        super().__init__(teacher, student, weight, layer_map, layer_weights)
        widths_s, widths_t = student.config.widths, teacher.config.widths
        self.regressors = nn.ModuleList(FitNetLoss(widths_s[s], widths_t[t]) for t, s in self.pairs)

    def forward(self, out: StepOutputs) -> Tensor:
        s, t = out.student, out.teacher
        return self.over_layers(lambda ti, si, i: self.regressors[i](s.features[si], t.features[ti]))


@register_loss("at")
class ATTerm(LayerPairTerm):
    """Attention transfer (:mod:`.at`) over points, ``p``-th power maps. Zagoruyko & Komodakis weigh it by
    ``β/2``: the ``at`` preset's weight is ``at_weight / 2``."""

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        weight: float,
        p: float = 2.0,
        layer_map: Sequence[Sequence[int]] | None = None,
        layer_weights: Sequence[float] | None = None,
    ):
        super().__init__(teacher, student, weight, layer_map, layer_weights)
        self.at = ATLoss(p)

    def forward(self, out: StepOutputs) -> Tensor:
        s, t = out.student, out.teacher
        return self.over_layers(lambda ti, si, _: self.at(s.features[si], t.features[ti]))


def lsp_loss_module(
    kernel: str, sigma: float, degree: int, coef: float, sigma_rule: str, normalize: bool, impl: str, direction: str
) -> LSPLoss:
    return LSPLoss(Kernel(kernel, sigma, degree, coef, sigma_rule, normalize), impl, direction)


@register_loss("lsp")
class LSPTerm(LayerPairTerm):
    """Local structure preserving (:mod:`.lsp`) over the union of both models' kNN edges; ``centres``: average
    over this many random centre nodes per step (one draw shared by every layer pair; None: all points)."""

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        weight: float,
        kernel: str = "rbf",
        sigma: float = 1.0,
        degree: int = 2,
        coef: float = 0.0,
        sigma_rule: str = "fixed",
        normalize: bool = False,
        impl: str = "padded",
        direction: str = "student||teacher",
        centres: int | None = None,
        layer_map: Sequence[Sequence[int]] | None = None,
        layer_weights: Sequence[float] | None = None,
    ):
        super().__init__(teacher, student, weight, layer_map, layer_weights)
        if centres is not None and centres < 1:
            raise ValueError(f"lsp centres must be >= 1 or None (all), got {centres}")
        self.lsp = lsp_loss_module(kernel, sigma, degree, coef, sigma_rule, normalize, impl, direction)
        self.centres = centres

    def forward(self, out: StepOutputs) -> Tensor:
        s, t = out.student, out.teacher
        centres = random_centres(out.points.shape[1], self.centres, out.points.device)
        return self.over_layers(
            lambda ti, si, _: self.lsp(s.features[si], s.graphs[si], t.features[ti], t.graphs[ti], centres)
        )


@register_loss("layer_attention")
class LayerAttentionTerm(Term):
    """Layer attention (:mod:`.layer_attention`, after STRIDE): embedding and LSP dissimilarities of every
    (teacher layer, student layer) pair, weighted by a learned attention; the LSP options are its structural
    term's. Reads every teacher layer; after training it draws the mean attention (:meth:`save_figures`)."""

    def __init__(
        self,
        teacher: DGCNN,
        student: DGCNN,
        weight: float,
        dim: int = 64,
        rank: int | None = None,
        embedding_weight: float = 1.0,
        structural_weight: float = 100.0,
        kernel: str = "rbf",
        sigma: float = 1.0,
        degree: int = 2,
        coef: float = 0.0,
        sigma_rule: str = "fixed",
        normalize: bool = False,
        impl: str = "padded",
        direction: str = "student||teacher",
    ):
        super().__init__(weight)
        structural = lsp_loss_module(kernel, sigma, degree, coef, sigma_rule, normalize, impl, direction)
        self.attention = LayerAttentionLoss(
            student.config.widths, teacher.config.widths, dim, rank, structural, embedding_weight, structural_weight
        )
        self.teacher_layers = len(teacher.config.widths)

    def deepest_teacher_layer(self) -> int:
        return self.teacher_layers - 1

    def forward(self, out: StepOutputs) -> Tensor:
        s, t = out.student, out.teacher
        return self.attention(s.features, s.graphs, t.features, t.graphs)

    def save_figures(self, out_dir: Path) -> list[Path]:
        return [self.attention.plot(out_dir / "layer_attention.png")]
