"""``manifest.json``: what a compiled artifact is, read by the server and the benchmarks instead of guessing.

Keys: ``format`` (this schema), ``artifact_format`` (onnx | onnx-int8 | torch-cuda | trt-fp16 | trt-int8),
``model_file``, ``files`` (name -> sha256), ``model`` (registry name, config, parameters), ``classes``, ``input``
(tensor name, shape, dtype, points, axis order, up axis, normalisation), ``output``, ``source_checkpoint`` (path,
sha256), ``accuracy`` (test split after compile, next to the torch reference), ``parity``, ``calibration`` (int8
only), ``runtime`` (torch-cuda only: the device checked on, the CUDA-graph replay check), ``versions``, ``opset``
(ONNX formats), ``created``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..data.modelnet40 import sha256_file as sha256_of

MANIFEST = "manifest.json"
FORMAT = "pointkd-artifact/1"
NORMALIZATION = "unit_sphere: subtract the centroid, divide by the largest distance to it"
REQUIRED = ("artifact_format", "model_file", "files", "classes", "input", "output", "source_checkpoint", "accuracy")


class ManifestError(ValueError):
    """An artifact folder has no valid manifest, or its files do not match it."""


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
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path} is not valid JSON: {err}") from err
    if manifest.get("format") != FORMAT:
        raise ManifestError(f"{path}: unknown manifest format {manifest.get('format')!r}, expected {FORMAT!r}")
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
