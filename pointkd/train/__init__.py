from .evaluate import evaluate, per_class_table, plot_confusion, predict
from .metrics import ClassificationReport, confusion_matrix
from .trainer import TrainingDiverged, TrainResult, train

__all__ = [
    "ClassificationReport",
    "TrainResult",
    "TrainingDiverged",
    "confusion_matrix",
    "evaluate",
    "per_class_table",
    "plot_confusion",
    "predict",
    "train",
]
