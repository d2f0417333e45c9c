"""Export and compile: the inference rewrite, ONNX, int8, TensorRT, and the artifact manifest."""

from .compile import FORMATS, CompileOptions, compile_cached, compile_checkpoint
from .deploy_model import DeployDGCNN, knn_topk, seeded_topk
from .manifest import ManifestError, read_manifest, write_manifest
from .onnx_export import ExportError, export_onnx, naive_model, reference_model
from .ort_session import make_session, run_logits
from .quantize import knn_score_nodes, quantize_int8, sensitivity
from .tensorrt_backend import EngineSpec, TensorRTUnavailable, build_engine, tensorrt_status

__all__ = [
    "FORMATS",
    "CompileOptions",
    "DeployDGCNN",
    "EngineSpec",
    "ExportError",
    "ManifestError",
    "TensorRTUnavailable",
    "build_engine",
    "compile_cached",
    "compile_checkpoint",
    "export_onnx",
    "knn_score_nodes",
    "knn_topk",
    "make_session",
    "naive_model",
    "quantize_int8",
    "read_manifest",
    "reference_model",
    "run_logits",
    "seeded_topk",
    "sensitivity",
    "tensorrt_status",
    "write_manifest",
]
