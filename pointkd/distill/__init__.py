"""Distillation losses (LSP and the KD / FitNet / AT baselines) and the training objectives built on them."""

from .at import ATLoss, attention_map
from .fitnet import FitNetLoss
from .kd import KDLoss, kd_loss
from .kernels import KERNELS, Kernel
from .layer_map import default_layer_map, validate_layer_map
from .lsp import LSPLoss, lsp_loss_dense, lsp_loss_padded, lsp_loss_sparse, random_centres, union_candidates
from .objective import METHODS, Distill, StepLoss, Supervised

__all__ = [
    "KERNELS",
    "METHODS",
    "ATLoss",
    "Distill",
    "FitNetLoss",
    "KDLoss",
    "Kernel",
    "LSPLoss",
    "StepLoss",
    "Supervised",
    "attention_map",
    "default_layer_map",
    "kd_loss",
    "lsp_loss_dense",
    "lsp_loss_padded",
    "lsp_loss_sparse",
    "random_centres",
    "union_candidates",
    "validate_layer_map",
]
