"""ONNX Runtime sessions (CPU or CUDA) for the ONNX formats, and batched inference over many clouds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RuntimeUnavailable

ORT_DEVICES = ("cpu", "cuda")


def ort_cuda_status() -> str | None:
    """``None`` when ONNX Runtime can run on CUDA here, else the reason it cannot."""
    try:
        import onnxruntime as ort
    except Exception as err:
        return f"onnxruntime is not importable ({type(err).__name__}: {err})"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider here (it needs the onnxruntime-gpu build "
            "and a CUDA device)"
        )
    return None


def session_options(threads: int = 0, spin: bool = True) -> Any:
    """The ``SessionOptions`` every pointkd session uses: all graph optimisations, ``threads`` intra-op threads
    (0 = ORT's default), one inter-op thread, sequential, quiet; ``spin=False`` as in :func:`make_session`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def make_session(
    path: str | os.PathLike,
    threads: int = 0,
    profile_prefix: str | None = None,
    spin: bool = True,
    device: str = "cpu",
) -> Any:
    """An ``InferenceSession`` with all graph optimisations, ``threads`` intra-op threads (0 = ORT's default).
    ``spin=False`` stops idle pool threads from busy-waiting (they then take the CPU a server's event loop needs).
    ``device="cuda"`` puts the graph on the CUDA execution provider (raises :class:`RuntimeUnavailable` where
    there is none); nodes it has no kernel for fall back to the CPU."""
    import onnxruntime as ort

    if device not in ORT_DEVICES:
        raise ValueError(f"device must be one of {ORT_DEVICES}, got {device!r}")
    if device == "cuda" and (reason := ort_cuda_status()) is not None:
        raise RuntimeUnavailable(reason)
    opts = session_options(threads, spin)
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(Path(path)), opts, providers=providers)


def run_in_batches(run: Callable[[np.ndarray], np.ndarray], clouds: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits ``[M, num_classes]`` of ``clouds`` ``[M, N, 3]`` (as float32), ``batch_size`` clouds per ``run``."""
    clouds = np.ascontiguousarray(clouds, dtype=np.float32)
    return np.concatenate([run(clouds[i : i + batch_size]) for i in range(0, len(clouds), batch_size)])


def run_logits(session: Any, clouds: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """:func:`run_in_batches` through an ONNX Runtime ``session``."""
    name = session.get_inputs()[0].name
    return run_in_batches(lambda batch: session.run(None, {name: batch})[0], clouds, batch_size)
