"""Runtimes for compiled models (ONNX Runtime sessions, TensorRT engines) and batched inference over many clouds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def make_session(path: str | os.PathLike, threads: int = 0, profile_prefix: str | None = None, spin: bool = True):
    """A CPU ``InferenceSession`` with all graph optimisations, ``threads`` intra-op threads (0 = ORT's default).
    ``spin=False`` stops idle pool threads from busy-waiting (they then take the CPU a server's event loop needs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(Path(path)), opts, providers=["CPUExecutionProvider"])


def open_runner(
    model_file: str | os.PathLike,
    engine: bool = False,
    input_name: str = "points",
    output_name: str = "logits",
    threads: int = 0,
    spin: bool = True,
) -> Callable[[np.ndarray], np.ndarray]:
    """``run(batch [B, N, 3] float32) -> logits [B, C]`` for a compiled model file: a TensorRT engine when
    ``engine`` (raises ``TensorRTUnavailable`` where it cannot run; the tensor names are the engine's), else an ONNX
    Runtime session (``threads``, ``spin`` as in :func:`make_session`; its own input name)."""
    if engine:
        from .tensorrt_backend import TensorRTRunner

        return TensorRTRunner(model_file, input_name, output_name)
    session = make_session(model_file, threads=threads, spin=spin)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def run_in_batches(run: Callable[[np.ndarray], np.ndarray], clouds: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits ``[M, num_classes]`` of ``clouds`` ``[M, N, 3]`` (as float32), ``batch_size`` clouds per ``run``."""
    clouds = np.ascontiguousarray(clouds, dtype=np.float32)
    return np.concatenate([run(clouds[i : i + batch_size]) for i in range(0, len(clouds), batch_size)])


def run_logits(session, clouds: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """:func:`run_in_batches` through an ONNX Runtime ``session``."""
    name = session.get_inputs()[0].name
    return run_in_batches(lambda batch: session.run(None, {name: batch})[0], clouds, batch_size)
