"""``manifest.json``: what a compiled artifact is, read by the server and the benchmarks instead of guessing.

Keys: ``format`` (this schema), ``artifact_format`` (a compiled format of :mod:`pointkd.runtime.formats`),
``model_file``, ``files`` (name -> sha256), ``model`` (registry name, config, parameters), ``classes``, ``input``
(tensor name, shape, dtype, points, axis order, up axis, normalisation), ``output``, ``source_checkpoint`` (path,
sha256), ``accuracy`` (test split after compile, next to the torch reference), ``parity``, ``calibration`` (int8
only), ``runtime`` (torch-cuda only: the device checked on, the CUDA-graph replay check), ``custom_op`` (formats
with a custom operator: its library, a file of the artifact, and the library's sha256, checked before it is loaded),
``versions``, ``opset`` (ONNX formats), ``created``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..documents import read_document
from ..hashing import sha256_file as sha256_of
from .errors import ManifestError

MANIFEST = "manifest.json"
FORMAT = "pointkd-artifact/1"
NORMALIZATION = "unit_sphere: subtract the centroid, divide by the largest distance to it"
REQUIRED = ("artifact_format", "model_file", "files", "classes", "input", "output", "source_checkpoint", "accuracy")


def input_contract(num_points: int, input_name: str = "points") -> dict[str, Any]:
    return {
        "name": input_name,
        "shape": ["batch", num_points, 3],
        "dtype": "float32",
        "num_points": num_points,
        "axis_order": "xyz",
        "up_axis": "z",
        "normalization": NORMALIZATION,
    }


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Fill in ``files`` (sha256 of every other file in ``folder``) and write ``folder/manifest.json``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {"format": FORMAT, **manifest, "files": {p.name: sha256_of(p) for p in files}}
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ManifestError(f"manifest lacks {missing}")
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(folder: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Load ``folder/manifest.json``; with ``verify``, check every listed file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{folder} is not a pointkd artifact: no {MANIFEST} (make one with `pointkd compile`)")
    manifest = read_document(path, FORMAT, "a pointkd artifact manifest", ManifestError)
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ManifestError(f"{path} lacks {missing}")
    if verify:
        for name, digest in manifest["files"].items():
            file = folder / name
            if not file.is_file():
                raise ManifestError(f"{folder}: {name} is listed in the manifest but missing")
            if sha256_of(file) != digest:
                raise ManifestError(f"{folder}: {name} does not match its sha256 in the manifest (modified?)")
    return manifest


def custom_op_library(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path | None:
    """The custom-op library an artifact's model needs (``manifest["custom_op"]["library"]``, a file of ``folder``),
    after checking its sha256 against the manifest's; None when the model needs none. Raises :class:`ManifestError`
    when the library is missing, outside the folder or not the one compiled with (a library is code: never load
    another)."""
    record = manifest.get("custom_op")
    if not record:
        return None
    folder = Path(folder)
    name = str(record.get("library", ""))
    path = folder / name
    if not name or Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
        raise ManifestError(f"{folder}: the custom-op library {name!r} named in the manifest is not in the artifact")
    if sha256_of(path) != record.get("sha256"):
        raise ManifestError(f"{folder}: {name} does not match its sha256 in the manifest (modified?)")
    return path
