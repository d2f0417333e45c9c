"""Open ONNX Runtime sessions on models with the fused kNN operator (``pointkd.KnnTopK``)."""

from __future__ import annotations

import os
from pathlib import Path

from .build import build_knn_op, check_onnxruntime


def register_knn_op(options, library: str | os.PathLike | None = None) -> Path:
    """Register the operator's library (``library``, else :func:`build_knn_op`'s, built on first use) with the
    ``onnxruntime.SessionOptions`` ``options``; returns the library's path. The operator runs on the session's
    intra-op thread pool (``options.intra_op_num_threads``). Raises
    :class:`~pointkd.export.knn_op.KnnOpUnavailable` where it cannot be built or ONNX Runtime is too old."""
    check_onnxruntime()
    path = Path(library) if library is not None else build_knn_op()
    options.register_custom_ops_library(str(path))
    return path


def make_fused_session(
    path: str | os.PathLike, threads: int = 0, spin: bool = True, library: str | os.PathLike | None = None
):
    """:func:`~pointkd.export.ort_session.make_session` (CPU, all graph optimisations, ``threads`` intra-op threads,
    sequential) for a model that uses ``pointkd.KnnTopK``, with the operator's library registered."""
    import onnxruntime as ort

    from ..ort_session import session_options

    opts = session_options(threads, spin)
    register_knn_op(opts, library)
    return ort.InferenceSession(str(Path(path)), opts, providers=["CPUExecutionProvider"])
