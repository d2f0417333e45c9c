"""Export and compile: the inference rewrite, ONNX, int8, TensorRT, torch-cuda, and the artifact manifest."""

from .compile import FORMATS, CompileOptions, compile_cached, compile_checkpoint
from .deploy_model import DeployDGCNN, knn_topk, seeded_topk
from .manifest import ManifestError, read_manifest, write_manifest
from .onnx_export import ExportError, export_onnx, naive_model, reference_model
from .ort_session import RuntimeUnavailable, make_session, open_runner, ort_cuda_status, run_logits
from .quantize import knn_score_nodes, quantize_int8, sensitivity
from .tensorrt_backend import EngineSpec, TensorRTUnavailable, build_engine, tensorrt_status
from .torch_backend import CudaUnavailable, TorchRunner, cuda_status, load_torch_model, save_torch_model

__all__ = [
    "FORMATS",
    "CompileOptions",
    "CudaUnavailable",
    "DeployDGCNN",
    "EngineSpec",
    "ExportError",
    "ManifestError",
    "RuntimeUnavailable",
    "TensorRTUnavailable",
    "TorchRunner",
    "build_engine",
    "compile_cached",
    "compile_checkpoint",
    "cuda_status",
    "export_onnx",
    "knn_score_nodes",
    "knn_topk",
    "load_torch_model",
    "make_session",
    "naive_model",
    "open_runner",
    "ort_cuda_status",
    "quantize_int8",
    "read_manifest",
    "reference_model",
    "run_logits",
    "save_torch_model",
    "seeded_topk",
    "sensitivity",
    "tensorrt_status",
    "write_manifest",
]
