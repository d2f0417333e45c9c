from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    slim_checkpoint,
)
from .evaluate import evaluate, per_class_table, plot_confusion, predict
from .metrics import ClassificationReport, confusion_matrix
from .trainer import TrainingDiverged, TrainResult, train

__all__ = [
    "CheckpointError",
    "ClassificationReport",
    "TrainResult",
    "TrainingDiverged",
    "confusion_matrix",
    "evaluate",
    "load_checkpoint",
    "model_from_checkpoint",
    "per_class_table",
    "plot_confusion",
    "predict",
    "save_checkpoint",
    "slim_checkpoint",
    "train",
]
