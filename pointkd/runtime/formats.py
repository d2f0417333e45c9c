"""The format table: every way pointkd runs a model, one frozen :class:`Format` each.

Compile, bench, the CLI, the bench report and the server read this table instead of matching format strings.
Adding a format means a row here and, if no existing runner opens it, one loader in :mod:`pointkd.runtime.runner`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownFormat

RUNTIMES = ("onnxruntime", "tensorrt", "torch")


@dataclass(frozen=True)
class Format:
    """One format. ``artifact`` is the compile format whose artifact folder it runs (itself for a compiled format,
    another for a second way of running one, None for a checkpoint run as is)."""

    name: str
    runtime: str  # one of RUNTIMES
    loader: str  # the key of the runner that opens it in pointkd.runtime.runner.LOADERS
    suffix: str  # the model file's suffix
    precision: str  # fp32 | fp16 | int8
    needs_gpu: bool
    artifact: str | None
    model_file: str | None = None  # the file compile writes (compiled formats only)
    quantization: str | None = None  # int8 flavour: "ort" (asymmetric Q/DQ) | "tensorrt" (symmetric Q/DQ)
    custom_op: str | None = None  # the custom-op library (file name) the model needs, copied into the artifact
    cuda_graphs: bool = False
    platform: str = ""  # what the server reports (Triton's platform names)
    marker: str = "x"  # the bench plot's marker
    description: str = ""  # what it is, with its article ("a TensorRT engine")

    @property
    def compiled(self) -> bool:
        """Whether ``pointkd compile --format NAME`` makes it."""
        return self.artifact == self.name

    @property
    def needs_calibration(self) -> bool:
        return self.quantization is not None

    @property
    def onnx(self) -> bool:
        """Whether compile goes through the ONNX export (every format but the torch ones)."""
        return self.runtime != "torch"


FORMATS: tuple[Format, ...] = (
    Format(
        "torch", "torch", "checkpoint", ".pt", "fp32", False, None,
        platform="pytorch_libtorch", marker="o", description="a training checkpoint run by PyTorch on the CPU",
    ),
    Format(
        "onnx", "onnxruntime", "ort", ".onnx", "fp32", False, "onnx", "model.onnx",
        platform="onnxruntime_onnx", marker="s", description="an ONNX fp32 model",
    ),
    Format(
        "onnx-int8", "onnxruntime", "ort", ".onnx", "int8", False, "onnx-int8", "model.int8.onnx", quantization="ort",
        platform="onnxruntime_onnx", marker="D", description="an ONNX int8 model",
    ),
    Format(
        "onnx-fused", "onnxruntime", "ort-fused", ".onnx", "fp32", False, "onnx-fused", "model.fused.onnx",
        custom_op="libpointkd_knn.so", platform="onnxruntime_onnx", marker="d",
        description="an ONNX fp32 model with the fused kNN custom operator",
    ),
    Format(
        "torch-cuda", "torch", "torch-cuda", ".pt", "fp32", True, "torch-cuda", "model.pt",
        platform="pytorch_libtorch", marker="P", description="a torch-cuda model",
    ),
    Format(
        "torch-cuda-graphs", "torch", "torch-cuda", ".pt", "fp32", True, "torch-cuda", cuda_graphs=True,
        platform="pytorch_libtorch", marker="*", description="a torch-cuda model replayed through CUDA graphs",
    ),
    Format(
        "trt-fp16", "tensorrt", "tensorrt", ".engine", "fp16", True, "trt-fp16", "model.fp16.engine",
        platform="tensorrt_plan", marker="^", description="a TensorRT engine",
    ),
    Format(
        "trt-int8", "tensorrt", "tensorrt", ".engine", "int8", True, "trt-int8", "model.int8.engine",
        quantization="tensorrt", platform="tensorrt_plan", marker="v", description="a TensorRT engine",
    ),
)  # fmt: skip

BY_NAME = {f.name: f for f in FORMATS}
FORMAT_NAMES: tuple[str, ...] = tuple(BY_NAME)  # every format pointkd runs (the bench's choices)
ARTIFACT_FORMATS: tuple[str, ...] = tuple(f.name for f in FORMATS if f.compiled)  # what compile makes


def get_format(name: str, among: tuple[str, ...] = FORMAT_NAMES) -> Format:
    """The row of ``name``; :class:`UnknownFormat` (listing ``among``) when it is not one of ``among``."""
    if name not in among:
        raise UnknownFormat(f"unknown format {name!r}; choose from {', '.join(among)}")
    return BY_NAME[name]


def runtime_of(name: str) -> str:
    """The runtime that runs format ``name``: ``"onnxruntime"``, ``"tensorrt"`` or ``"torch"``."""
    return get_format(name).runtime


def runs_of(artifact_format: str) -> tuple[Format, ...]:
    """The formats that run an artifact of ``artifact_format``: itself, then the other ways of running it."""
    return tuple(f for f in FORMATS if f.artifact == artifact_format)
