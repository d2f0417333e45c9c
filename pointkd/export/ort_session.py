"""ONNX Runtime sessions for exported models, and batched inference over many clouds."""

from __future__ import annotations

import os
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


def run_logits(session, clouds: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits ``[M, num_classes]`` of ``clouds`` ``[M, N, 3]`` (float32), ``batch_size`` clouds per run."""
    name = session.get_inputs()[0].name
    clouds = np.ascontiguousarray(clouds, dtype=np.float32)
    out = [session.run(None, {name: clouds[i : i + batch_size]})[0] for i in range(0, len(clouds), batch_size)]
    return np.concatenate(out)
