"""Named model configs and ``create_model(name, **overrides)`` (the timm pattern).

Teacher: the LSP paper's Table 3 DGCNN (EdgeConv 64,64,128,256; embedding 1024; MLP 512,256; k=20; 1.81 M
parameters). Student: EdgeConv 32,32,64,128, each layer max-pooled, one FC 256, k=10 (~0.1 M parameters).
The ladder below follows the paper's Table 6 variants (more channels / more layers / more MLPs) for
latency-budget selection. ``dgcnn_student_fast`` is the latency-aware student: its last EdgeConv reuses the third
layer's kNN graph, so it builds three N x N distance matrices and top-k selections instead of four (the widest, 64-d
one is the one dropped): those dominate the paper student's CPU latency. ``dgcnn_student_fast2`` builds two graphs
(xyz, then layer 2's input) and ``dgcnn_student_static`` only the xyz one: faster, less accurate
(benchmarks/results/latency.md, distill_compare_e1/).
"""

from __future__ import annotations

import dataclasses

from .dgcnn import DGCNN, DGCNNConfig

_STUDENT = dict(emb_dim=0, mlp=(256,), pooling="max", k=10, widths=(32, 32, 64, 128))

_REGISTRY: dict[str, DGCNNConfig] = {}


def register_model(name: str, config: DGCNNConfig) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = config


register_model(
    "dgcnn_teacher",
    DGCNNConfig(description="LSP Table 3 teacher: DGCNN 64,64,128,256 / 1024 / 512,256, k=20"),
)
register_model("dgcnn_student", DGCNNConfig(**_STUDENT, description="LSP student: EdgeConv 32,32,64,128, FC 256, k=10"))
register_model(
    "dgcnn_student_wide",
    DGCNNConfig(**{**_STUDENT, "widths": (64, 64, 128, 256)}, description="student with 2x channels"),
)
register_model(
    "dgcnn_student_deep",
    DGCNNConfig(**{**_STUDENT, "widths": (32, 32, 64, 64, 128)}, description="student with a 5th EdgeConv"),
)
register_model(
    "dgcnn_student_fast",
    DGCNNConfig(
        **{**_STUDENT, "knn_layers": (0, 1, 2)},
        description="latency-aware student: the paper student whose last layer reuses layer 2's kNN graph",
    ),
)
register_model(
    "dgcnn_student_fast2",
    DGCNNConfig(
        **{**_STUDENT, "knn_layers": (0, 2)},
        description="the paper student with 2 kNN graphs (xyz for layers 0-1, layer 2's input for 2-3)",
    ),
)
register_model(
    "dgcnn_student_static",
    DGCNNConfig(
        **{**_STUDENT, "knn_layers": (0,)},
        description="the paper student on one static xyz kNN graph (fastest; loses accuracy)",
    ),
)
register_model(
    "dgcnn_student_mlp",
    DGCNNConfig(**{**_STUDENT, "mlp": (512, 256)}, description="student with a 2-layer MLP head"),
)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_config(name: str, **overrides) -> DGCNNConfig:
    """The registered config ``name`` with ``overrides`` applied (unknown fields raise)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    fields = {f.name for f in dataclasses.fields(DGCNNConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)} for {name!r}; valid: {sorted(fields)}")
    return dataclasses.replace(_REGISTRY[name], **overrides)


def create_model(name: str, **overrides) -> DGCNN:
    """Build the registered model ``name``, e.g. ``create_model("dgcnn_student", k=16, widths=(32, 64))``."""
    return DGCNN(model_config(name, **overrides))


def model_from_config(config: dict) -> DGCNN:
    """Rebuild a model from ``DGCNNConfig.to_dict()`` output (as stored in checkpoints)."""
    fields = {f.name for f in dataclasses.fields(DGCNNConfig)}
    return DGCNN(DGCNNConfig(**{k: v for k, v in config.items() if k in fields}))
