"""Running compiled models: the format table (:mod:`.formats`), the manifest (:mod:`.manifest`), one runner per
format (:mod:`.runner`: ONNX Runtime :mod:`.ort`, the fused-kNN session :mod:`.knn_op`, TensorRT :mod:`.tensorrt`,
torch-cuda and checkpoints :mod:`.torch_runner`) and their typed errors (:mod:`.errors`).

The server and the bench worker import this package only: it needs neither the trainer nor the exporters. This
module imports only the table and the errors (no numpy), so the CLI can read the table before its heavy imports.
"""

from .errors import (
    AccuracyDropError,
    CudaUnavailable,
    ExportError,
    KnnOpUnavailable,
    ManifestError,
    ParityError,
    RuntimeUnavailable,
    TensorRTUnavailable,
    UnknownFormat,
)
from .formats import ARTIFACT_FORMATS, FORMAT_NAMES, FORMATS, Format, get_format, runs_of, runtime_of

__all__ = [
    "ARTIFACT_FORMATS",
    "FORMATS",
    "FORMAT_NAMES",
    "AccuracyDropError",
    "CudaUnavailable",
    "ExportError",
    "Format",
    "KnnOpUnavailable",
    "ManifestError",
    "ParityError",
    "RuntimeUnavailable",
    "TensorRTUnavailable",
    "UnknownFormat",
    "get_format",
    "runs_of",
    "runtime_of",
]
