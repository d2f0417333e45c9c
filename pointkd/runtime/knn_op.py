"""Open ONNX Runtime sessions on models with the fused kNN operator (``pointkd.KnnTopK``): the library is built by
:func:`pointkd.export.knn_op.build_knn_op` (compile copies it into the artifact); here it is only loaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import KnnOpUnavailable

ORT_API_VERSION = 29  # the C API version the operator is built against
MIN_ORT = (1, 29)  # ONNX Runtime 1.x serves C API version x


def check_onnxruntime() -> None:
    """Raise :class:`KnnOpUnavailable` unless the installed ONNX Runtime serves C API version 29."""
    try:
        import onnxruntime as ort
    except Exception as err:
        raise KnnOpUnavailable(f"onnxruntime is not importable ({type(err).__name__}: {err})") from err
    parts = ort.__version__.split(".")
    version = (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0))
    if version < MIN_ORT:
        raise KnnOpUnavailable(
            f"the fused kNN operator is built against ONNX Runtime's C API {ORT_API_VERSION}, which needs onnxruntime "
            f">= {MIN_ORT[0]}.{MIN_ORT[1]}; installed: {ort.__version__}"
        )


def register_knn_op(options: Any, library: str | os.PathLike) -> Path:
    """Register the operator's ``library`` with the ``onnxruntime.SessionOptions`` ``options``; returns its path.
    The operator runs on the session's intra-op thread pool (``options.intra_op_num_threads``). Raises
    :class:`KnnOpUnavailable` where the library is missing or ONNX Runtime is too old."""
    check_onnxruntime()
    path = Path(library)
    if not path.is_file():
        raise KnnOpUnavailable(f"the fused kNN operator's library {path} does not exist")
    options.register_custom_ops_library(str(path))
    return path


def make_fused_session(path: str | os.PathLike, library: str | os.PathLike, threads: int = 0, spin: bool = True) -> Any:
    """:func:`~pointkd.runtime.ort.make_session` (CPU, all graph optimisations, ``threads`` intra-op threads,
    sequential) for a model that uses ``pointkd.KnnTopK``, with the operator's ``library`` registered."""
    import onnxruntime as ort

    from .ort import session_options

    opts = session_options(threads, spin)
    register_knn_op(opts, library)
    return ort.InferenceSession(str(Path(path)), opts, providers=["CPUExecutionProvider"])
