"""Distillation losses (LSP and the KD / FitNet / AT / HKD / layer-attention baselines), their registry and presets,
and the training objectives built on them."""

from . import terms  # noqa: F401  (registers the losses)
from .at import ATLoss, attention_map
from .fitnet import FitNetLoss
from .kd import KDLoss, kd_loss
from .kernels import KERNELS, Kernel
from .layer_map import default_layer_map, validate_layer_map
from .lsp import LSPLoss, lsp_loss_dense, lsp_loss_padded, lsp_loss_sparse, random_centres, union_candidates
from .objective import Distill, StepLoss, Supervised
from .presets import preset_terms
from .registry import LOSSES, PRESETS, Term, build_loss, check_spec, register_loss, register_preset

__all__ = [
    "KERNELS",
    "LOSSES",
    "PRESETS",
    "ATLoss",
    "Distill",
    "FitNetLoss",
    "KDLoss",
    "Kernel",
    "LSPLoss",
    "StepLoss",
    "Supervised",
    "Term",
    "attention_map",
    "build_loss",
    "check_spec",
    "default_layer_map",
    "kd_loss",
    "lsp_loss_dense",
    "lsp_loss_padded",
    "lsp_loss_sparse",
    "preset_terms",
    "random_centres",
    "register_loss",
    "register_preset",
    "union_candidates",
    "validate_layer_map",
]
