"""Open any format's runner: ``run(batch [B, N, 3] float32) -> logits [B, C]``.

Each format of :mod:`pointkd.runtime.formats` names its loader here: how to open it and how to tell, cheaply,
whether it can run on this machine. :func:`open_artifact` opens a compiled artifact folder from its manifest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KnnOpUnavailable, UnknownFormat
from .formats import Format, get_format, runs_of
from .manifest import custom_op_library, read_manifest

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RunOptions:
    """How to open a runner: tensor names (a TensorRT engine's), CPU threads and spinning (ONNX Runtime, torch on
    the CPU), the custom-op library (formats with one)."""

    input_name: str = "points"
    output_name: str = "logits"
    threads: int = 0
    spin: bool = True
    library: str | os.PathLike | None = None


@dataclass(frozen=True)
class Loader:
    """``open(model_file, fmt, opts) -> runner``; ``status() -> None`` when it can run here, else why not."""

    open: Callable[[Path, Format, RunOptions], Runner]
    status: Callable[[], str | None]


def _open_checkpoint(path: Path, fmt: Format, opts: RunOptions) -> Runner:
    from .torch_runner import CheckpointRunner

    return CheckpointRunner(path, opts.threads)


def _session_runner(session: Any) -> Runner:
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _open_ort(path: Path, fmt: Format, opts: RunOptions) -> Runner:
    from .ort import make_session

    return _session_runner(make_session(path, threads=opts.threads, spin=opts.spin))


def _open_fused(path: Path, fmt: Format, opts: RunOptions) -> Runner:
    from .knn_op import make_fused_session

    if opts.library is None:
        raise KnnOpUnavailable(f"{fmt.name}: {path.name} needs its custom-op library ({fmt.custom_op})")
    return _session_runner(make_fused_session(path, opts.library, threads=opts.threads, spin=opts.spin))


def _open_torch_cuda(path: Path, fmt: Format, opts: RunOptions) -> Runner:
    from .torch_runner import TorchRunner

    return TorchRunner(path, "cuda", graphs=fmt.cuda_graphs)


def _open_tensorrt(path: Path, fmt: Format, opts: RunOptions) -> Runner:
    from .tensorrt import TensorRTRunner

    return TensorRTRunner(path, opts.input_name, opts.output_name)


def _always() -> str | None:
    return None


def _fused_status() -> str | None:
    from .knn_op import check_onnxruntime

    try:
        check_onnxruntime()
    except KnnOpUnavailable as err:
        return f"fused kNN: {err}"
    return None


def _cuda_status() -> str | None:
    from .torch_runner import cuda_status

    reason = cuda_status("cuda")
    return None if reason is None else f"torch-cuda: {reason}"


def _tensorrt_status() -> str | None:
    from .tensorrt import tensorrt_status

    if tensorrt_status() is not None:
        return "TensorRT: the tensorrt package is not installed here"
    import torch

    return None if torch.cuda.is_available() else "TensorRT: no CUDA device"


LOADERS: dict[str, Loader] = {
    "checkpoint": Loader(_open_checkpoint, _always),
    "ort": Loader(_open_ort, _always),
    "ort-fused": Loader(_open_fused, _fused_status),
    "torch-cuda": Loader(_open_torch_cuda, _cuda_status),
    "tensorrt": Loader(_open_tensorrt, _tensorrt_status),
}


def unavailable(name: str) -> str | None:
    """Why format ``name`` cannot run on this machine, in a few words, or None."""
    return LOADERS[get_format(name).loader].status()


def open_runner(model_file: str | os.PathLike, fmt: str, opts: RunOptions | None = None) -> Runner:
    """The runner of ``model_file`` in format ``fmt`` (a checkpoint for ``torch``). Raises a
    :class:`~pointkd.runtime.errors.RuntimeUnavailable` where its runtime cannot run here."""
    row = get_format(fmt)
    return LOADERS[row.loader].open(Path(model_file), row, opts or RunOptions())


@dataclass
class Artifact:
    """A compiled artifact folder, opened: its manifest, the format it runs as, its runner."""

    folder: Path
    manifest: dict[str, Any]
    format: Format
    run: Runner


def open_artifact(
    folder: str | os.PathLike,
    fmt: str | None = None,
    threads: int = 0,
    spin: bool = True,
    verify: bool = True,
    manifest: dict[str, Any] | None = None,
) -> Artifact:
    """Open the artifact in ``folder`` as ``fmt``, one of the formats that run its artifact format (default: that
    format itself). Its manifest is read (sha256s checked with ``verify``) unless given as ``manifest``; a custom-op
    library's sha256 is always checked."""
    folder = Path(folder)
    m = manifest if manifest is not None else read_manifest(folder, verify=verify)
    choices = tuple(f.name for f in runs_of(m["artifact_format"]))
    if not choices:
        raise UnknownFormat(f"{folder}: unknown artifact format {m['artifact_format']!r}")
    row = get_format(fmt or m["artifact_format"], among=choices)
    opts = RunOptions(m["input"]["name"], m["output"]["name"], threads, spin, custom_op_library(folder, m))
    return Artifact(folder, m, row, open_runner(folder / m["model_file"], row.name, opts))
