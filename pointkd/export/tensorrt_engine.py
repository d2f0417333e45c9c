"""TensorRT engines (GPU) from the exported ONNX: fp16, and int8 from the explicit Q/DQ graph (run by
:class:`pointkd.runtime.tensorrt.TensorRTRunner`).

Import-guarded: ``tensorrt`` is imported only inside :func:`build_engine`, so pointkd installs and runs without it
(PyPI serves only placeholder wheels that download from NVIDIA's index; install it from NVIDIA's index or use an
NVIDIA TensorRT container). int8 uses *explicit* quantization: the ONNX carries Q/DQ nodes made by
:func:`pointkd.export.quantize.quantize_int8` with ``flavour="tensorrt"`` (symmetric, zero point 0), the direction
TensorRT took after deprecating its implicit-calibration API; the kNN scores and TopK stay float (TopK's K is a
constant initializer in our export, which TensorRT requires).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..runtime.errors import TensorRTUnavailable
from ..runtime.tensorrt import tensorrt_status


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built for: precision, the batch range of its optimisation profile, the cloud size."""

    precision: str  # "fp16" | "int8"
    num_points: int
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 32
    workspace_mib: int = 1024
    input_name: str = "points"

    def __post_init__(self) -> None:
        if self.precision not in ("fp16", "int8"):
            raise ValueError(f"precision must be fp16 or int8, got {self.precision!r}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {self}")

    def profile_shapes(self) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
        """(min, opt, max) input shapes of the optimisation profile for the dynamic batch axis."""
        return tuple((b, self.num_points, 3) for b in (self.min_batch, self.opt_batch, self.max_batch))  # type: ignore[return-value]

    def builder_flags(self) -> list[str]:
        """Names of the ``tensorrt.BuilderFlag`` members to set. int8 keeps fp16 on for the float (kNN) layers."""
        return ["FP16"] if self.precision == "fp16" else ["INT8", "FP16"]


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, spec: EngineSpec) -> Path:
    """Parse ``onnx_path`` and serialise a TensorRT engine for ``spec`` to ``engine_path``."""
    reason = tensorrt_status()
    if reason is not None:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    for flag in spec.builder_flags():
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    profile.set_shape(spec.input_name, *spec.profile_shapes())
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build a {spec.precision} engine from {onnx_path}")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    return engine_path
