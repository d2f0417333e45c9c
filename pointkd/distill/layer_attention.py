"""Layer attention (the ``layer_attention`` loss and preset; after STRIDE, the name its preset first had):
structure and embedding distillation over every (teacher layer, student layer) pair, weighted by a learned
attention, so teachers and students of any depth and width can be matched without a hand-made layer map.

Node features ``z^t_l`` ``[B, N, C^t_l]`` (``l < L_t``) and ``z^s_m`` ``[B, N, C^s_m]`` (``m < L_s``), mean-pooled
over points to ``\\bar z`` ``[B, C]``:

.. math::
    q_m = W^q_m \\bar z^s_m, \\quad k_l = W^k_l \\bar z^t_l, \\qquad
    \\alpha_{lm} = \\mathrm{softmax}_l\\Big(\\frac{1}{B\\sqrt d} \\sum_b q_{m,b} \\cdot k_{l,b}\\Big)

    E_{lm} = \\frac1B \\sum_b \\big\\lVert \\hat e^t_{l,b} - \\hat e^s_{m,b} \\big\\rVert^2, \\quad
    \\hat e^t_l = \\mathrm{norm}(U^\\top W^t_l \\bar z^t_l), \\ \\hat e^s_m = \\mathrm{norm}(U^\\top W^s_m \\bar z^s_m)

    \\mathcal{L} = \\mathrm{mean}_{l,m}\\ \\alpha_{lm} \\big(w_E E_{lm} + w_S \\mathcal{L}_{LSP}(l, m)\\big)

Every layer has its own linear maps into the shared dimension ``d``: ``W^q, W^k`` for the attention, ``W^s, W^t``
for the embeddings (separate projections), and ``U`` ``[d, r]`` an optional learned low-rank subspace (``rank``;
identity when None). The structural dissimilarity is the LSP loss (:mod:`.lsp`) over the union of the two layers'
kNN graphs. The attention is a softmax over teacher layers for each student layer, ``[L_t, L_s]``; its running mean
over training is kept (``attention_mean``) for the PNG the trainer writes. The teacher side carries no gradient;
the student and every projection do.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lsp import LSPLoss


class LayerAttentionLoss(nn.Module):
    """``forward(features_s, graphs_s, features_t, graphs_t) -> scalar`` over lists of per-layer features
    ``[B, N, C_l]`` and kNN graphs ``[B, N, k]`` of both models; see the module docstring."""

    def __init__(
        self,
        student_widths: list[int] | tuple[int, ...],
        teacher_widths: list[int] | tuple[int, ...],
        dim: int = 64,
        rank: int | None = None,
        structural: LSPLoss | None = None,
        embedding_weight: float = 1.0,
        structural_weight: float = 1.0,
    ):
        super().__init__()
        if rank is not None and not 1 <= rank <= dim:
            raise ValueError(f"rank must be in 1..{dim}, got {rank}")
        self.dim = dim
        self.query = nn.ModuleList(nn.Linear(c, dim) for c in student_widths)
        self.key = nn.ModuleList(nn.Linear(c, dim) for c in teacher_widths)
        self.embed_s = nn.ModuleList(nn.Linear(c, dim) for c in student_widths)
        self.embed_t = nn.ModuleList(nn.Linear(c, dim) for c in teacher_widths)
        self.subspace = nn.Parameter(torch.randn(dim, rank) / math.sqrt(dim)) if rank else None
        self.structural = structural
        self.embedding_weight, self.structural_weight = embedding_weight, structural_weight
        self.register_buffer("attention_sum", torch.zeros(len(teacher_widths), len(student_widths)))
        self.register_buffer("attention_steps", torch.zeros((), dtype=torch.long))

    def attention(self, pooled_s: list[Tensor], pooled_t: list[Tensor]) -> Tensor:
        """``α`` ``[L_t, L_s]`` from mean-pooled features (lists of ``[B, C]``)."""
        q = torch.stack([w(z) for w, z in zip(self.query, pooled_s, strict=True)])  # [L_s, B, d]
        k = torch.stack([w(z) for w, z in zip(self.key, pooled_t, strict=True)])  # [L_t, B, d]
        scores = torch.einsum("sbd,tbd->ts", q, k) / (q.shape[1] * math.sqrt(self.dim))
        return scores.softmax(dim=0)

    def _embed(self, maps: nn.ModuleList, pooled: list[Tensor]) -> Tensor:
        e = torch.stack([w(z) for w, z in zip(maps, pooled, strict=True)])  # [L, B, d]
        if self.subspace is not None:
            e = e @ self.subspace
        return F.normalize(e, dim=-1)

    def dissimilarity(
        self, features_s: list[Tensor], graphs_s: list[Tensor], features_t: list[Tensor], graphs_t: list[Tensor]
    ) -> Tensor:
        """``w_E E + w_S L_LSP`` per pair, ``[L_t, L_s]``."""
        pooled_s = [z.mean(1) for z in features_s]
        pooled_t = [z.detach().mean(1) for z in features_t]
        e_s, e_t = self._embed(self.embed_s, pooled_s), self._embed(self.embed_t, pooled_t)
        d = self.embedding_weight * (e_t[:, None] - e_s[None, :]).pow(2).sum(-1).mean(-1)  # [L_t, L_s]
        if self.structural is not None and self.structural_weight:
            rows = [
                torch.stack(
                    [self.structural(zs, gs, zt.detach(), gt) for zs, gs in zip(features_s, graphs_s, strict=True)]
                )
                for zt, gt in zip(features_t, graphs_t, strict=True)
            ]
            d = d + self.structural_weight * torch.stack(rows)
        return d

    def forward(
        self, features_s: list[Tensor], graphs_s: list[Tensor], features_t: list[Tensor], graphs_t: list[Tensor]
    ) -> Tensor:
        if len(features_s) != len(self.query) or len(features_t) != len(self.key):
            raise ValueError(
                f"expected {len(self.key)} teacher and {len(self.query)} student layers, "
                f"got {len(features_t)} and {len(features_s)}"
            )
        alpha = self.attention([z.mean(1) for z in features_s], [z.detach().mean(1) for z in features_t])
        if self.training:
            with torch.no_grad():
                self.attention_sum += alpha.detach()
                self.attention_steps += 1
        return (alpha * self.dissimilarity(features_s, graphs_s, features_t, graphs_t)).mean()

    @property
    def attention_mean(self) -> Tensor:
        """The attention averaged over every training step so far, ``[L_t, L_s]``."""
        return self.attention_sum / self.attention_steps.clamp_min(1)

    def plot(self, path: str | os.PathLike, title: str = "") -> Path:
        """The mean attention as a heat map PNG (teacher layers as rows, student layers as columns)."""
        from ..plotting import heatmap, save_png

        a = self.attention_mean.cpu().numpy()
        fig = heatmap(
            a,
            [f"S{j}" for j in range(a.shape[1])],
            [f"T{i}" for i in range(a.shape[0])],
            "student layer",
            "teacher layer",
            title or f"layer attention (mean over {int(self.attention_steps)} steps)",
            (1.2 * a.shape[1] + 2.5, 1.0 * a.shape[0] + 1.8),
            cmap="viridis",
            annotate=True,
        )
        return save_png(fig, path)
