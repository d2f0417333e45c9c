"""A compiled artifact loaded for serving: the manifest decides the classes, the input contract and, through the
format table (:mod:`pointkd.runtime.formats`), the runtime and the platform reported."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pointkd.runtime.errors import RuntimeUnavailable
from pointkd.runtime.formats import get_format
from pointkd.runtime.manifest import read_manifest
from pointkd.runtime.runner import open_artifact


class Predictor:
    """``predict(batch [B, N, 3]) -> probabilities [B, C]`` for the artifact in ``folder`` (sha256s verified),
    served as ``name`` (default: the manifest's model name)."""

    def __init__(self, folder: str | os.PathLike, threads: int = 0, spin: bool = True, name: str | None = None):
        self.folder = Path(folder)
        self.manifest = m = read_manifest(self.folder, verify=True)
        held = get_format(m["artifact_format"])
        try:
            artifact = open_artifact(self.folder, threads=threads, spin=spin, manifest=m)
        except RuntimeUnavailable as err:
            raise ValueError(f"{self.folder} holds {held.description}, which cannot run here: {err}") from err
        self.format = artifact.format
        self.run = artifact.run
        self.platform = artifact.format.platform
        self.classes: list[str] = list(m["classes"])
        self.num_points = int(m["input"]["num_points"])
        self.min_points = int((m.get("model") or {}).get("config", {}).get("k", 1))
        self.name = name or (m.get("model") or {}).get("name") or self.folder.name
        self.version = m["files"][m["model_file"]][:12]
        self.input_name = m["input"]["name"]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.run(np.ascontiguousarray(batch, dtype=np.float32)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities ``[B, C]`` float64 of ``logits`` ``[B, C]`` (the one softmax of the server, ``pointkd
    predict`` and the Python API)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)
