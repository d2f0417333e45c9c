"""Dense, batched DGCNN classifier that exposes what distillation needs.

``points [B, N, 3] -> logits [B, num_classes]``. Each EdgeConv layer ``l`` builds its own kNN graph
``idx_l [B, N, k]`` on its input features (a dynamic graph; layers not listed in ``knn_layers`` reuse the last
graph), and produces node features ``z_l [B, N, C_l]``. :meth:`DGCNN.forward_features` returns all of them.

Head: either a per-point embedding ``Linear(ΣC_l -> emb_dim) + BN + LeakyReLU`` over the concatenated layer outputs
followed by global pooling (the DGCNN teacher), or, with ``emb_dim = 0``, each layer pooled on its own and the
pooled vectors concatenated (the small students). Pooling is ``"max"`` or ``"max+avg"`` (concatenated).
Then ``mlp`` hidden layers ``Linear(no bias) + BN + LeakyReLU + Dropout`` and a final ``Linear``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor, nn

from .edgeconv import EdgeConv
from .knn import KNN_BACKENDS, knn

POOLINGS = ("max", "max+avg")


@dataclass(frozen=True)
class DGCNNConfig:
    """Architecture of one DGCNN; every field can be overridden through ``create_model(name, **overrides)``."""

    widths: tuple[int, ...] = (64, 64, 128, 256)
    k: int = 20
    emb_dim: int = 1024
    mlp: tuple[int, ...] = (512, 256)
    pooling: str = "max+avg"
    dropout: float = 0.5
    num_classes: int = 40
    in_channels: int = 3
    negative_slope: float = 0.2
    # Layers (0-based) that build a new kNN graph; None = every layer (fully dynamic). Layer 0 always does.
    knn_layers: tuple[int, ...] | None = None
    knn_backend: str = "auto"
    edgeconv_impl: str = "fast"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "mlp", tuple(int(h) for h in self.mlp))
        if self.knn_layers is not None:
            object.__setattr__(self, "knn_layers", tuple(sorted({int(i) for i in self.knn_layers} | {0})))
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive ints, got {self.widths}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.knn_backend not in KNN_BACKENDS:
            raise ValueError(f"knn_backend must be one of {KNN_BACKENDS}, got {self.knn_backend!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.knn_layers is not None and max(self.knn_layers) >= len(self.widths):
            raise ValueError(f"knn_layers {self.knn_layers} name a layer beyond the {len(self.widths)} EdgeConvs")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["mlp"] = list(self.mlp)
        d["knn_layers"] = None if self.knn_layers is None else list(self.knn_layers)
        return d

    def builds_graph(self, layer: int) -> bool:
        return self.knn_layers is None or layer in self.knn_layers


@dataclass
class DGCNNOutput:
    logits: Tensor  # [B, num_classes]
    features: list[Tensor]  # per EdgeConv layer, [B, N, C_l]
    graphs: list[Tensor]  # per EdgeConv layer, the kNN indices it aggregated over, [B, N, k]
    embedding: Tensor  # pooled global feature fed to the MLP head, [B, D]


class DGCNN(nn.Module):
    def __init__(self, config: DGCNNConfig):
        super().__init__()
        self.config = config
        c_in = config.in_channels
        convs = []
        for w in config.widths:
            convs.append(EdgeConv(c_in, w, config.negative_slope, impl=config.edgeconv_impl))
            c_in = w
        self.convs = nn.ModuleList(convs)
        total = sum(config.widths)
        if config.emb_dim > 0:
            # A per-point Linear on [B·N, C] (same math as DGCNN's Conv1d(k=1)), measured faster than mkldnn's conv.
            self.embed = nn.Sequential(
                nn.Linear(total, config.emb_dim, bias=False),
                nn.BatchNorm1d(config.emb_dim),
                nn.LeakyReLU(config.negative_slope),
            )
            pooled = config.emb_dim
        else:
            self.embed = None
            pooled = total
        if config.pooling == "max+avg":
            pooled *= 2
        layers: list[nn.Module] = []
        for h in config.mlp:
            layers += [
                nn.Linear(pooled, h, bias=False),
                nn.BatchNorm1d(h),
                nn.LeakyReLU(config.negative_slope),
                nn.Dropout(config.dropout),
            ]
            pooled = h
        layers.append(nn.Linear(pooled, config.num_classes))
        self.head = nn.Sequential(*layers)

    @property
    def embedding_dim(self) -> int:
        """Size of the pooled global feature the head reads (``DGCNNOutput.embedding``)."""
        return self.head[0].in_features

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, points: Tensor) -> Tensor:
        return self.forward_features(points).logits

    def forward_layers(
        self,
        points: Tensor,
        graphs: list[Tensor] | None = None,
        first_graph: Tensor | None = None,
        upto: int | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """The EdgeConv part alone: per layer, node features ``[B, N, C_l]`` and the graph ``[B, N, k]`` it
        aggregated over, for layers ``0..upto`` (default: all). No head: what a frozen teacher needs for the
        feature losses (LSP, AT, FitNet)."""
        if points.dim() != 3 or points.shape[-1] != self.config.in_channels:
            raise ValueError(f"expected points [B, N, {self.config.in_channels}], got {tuple(points.shape)}")
        cfg = self.config
        if graphs is not None and len(graphs) != len(self.convs):
            raise ValueError(f"graphs: expected one per EdgeConv ({len(self.convs)}), got {len(graphs)}")
        if first_graph is not None and first_graph.shape[:2] != points.shape[:2]:
            raise ValueError(f"first_graph {tuple(first_graph.shape)} does not match points {tuple(points.shape)}")
        last = len(self.convs) - 1 if upto is None else upto
        x, idx = points, first_graph
        features: list[Tensor] = []
        used: list[Tensor] = []
        for layer, conv in enumerate(self.convs[: last + 1]):
            if graphs is not None:
                idx = graphs[layer]
            elif idx is None or (layer > 0 and cfg.builds_graph(layer)):
                idx = knn(x, cfg.k, cfg.knn_backend)
            x = conv(x, idx)
            features.append(x)
            used.append(idx)
        return features, used

    def forward_features(
        self, points: Tensor, graphs: list[Tensor] | None = None, first_graph: Tensor | None = None
    ) -> DGCNNOutput:
        """All outputs; ``graphs`` (one ``[B, N, k]`` per layer) replaces the kNN graphs the layers would build
        (used to compare with an exported model on the very graphs it picked); ``first_graph`` replaces only
        layer 0's (a distillation teacher's xyz graph, cut to this model's k)."""
        features, graphs = self.forward_layers(points, graphs=graphs, first_graph=first_graph)
        cfg = self.config
        x = features[-1]
        if self.embed is not None:
            b, n, _ = x.shape
            cat = torch.cat(features, dim=-1).reshape(b * n, -1)  # [B·N, ΣC]
            emb = self.embed(cat).view(b, n, -1)  # [B, N, E]
            pooled = [emb.amax(1)] + ([emb.mean(1)] if cfg.pooling == "max+avg" else [])
        else:
            # Pool every layer, then concatenate: equal to pooling the concatenation, without building it.
            pooled = [f.amax(1) for f in features]
            if cfg.pooling == "max+avg":
                pooled += [f.mean(1) for f in features]
        embedding = torch.cat(pooled, dim=-1)
        return DGCNNOutput(self.head(embedding), features, graphs, embedding)

    def set_k(self, k: int) -> None:
        """Build every kNN graph with ``k`` neighbours from now on (a test-time k, :func:`scaled_k`); no weight
        depends on k."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.config = replace(self.config, k=int(k))


def scaled_k(k: int, train_points: int, eval_points: int) -> int:
    """The k that spans about the same neighbourhood at ``eval_points`` as ``k`` did at ``train_points``: a
    kNN ball holds k of N points uniformly spread on the surface, so k scales with N. Trained at 512 and tested
    at 1024 with the same k, the budget models lost ~7 OA points; with k scaled they did not."""
    return max(1, round(k * eval_points / train_points))
