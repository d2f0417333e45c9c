"""A compiled artifact loaded for serving: the manifest decides the classes, the input contract and the runtime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pointkd.export.manifest import read_manifest


class Predictor:
    """``predict(batch [B, N, 3]) -> probabilities [B, C]`` for the artifact in ``folder`` (sha256s verified),
    served as ``name`` (default: the manifest's model name)."""

    def __init__(self, folder: str | os.PathLike, threads: int = 0, spin: bool = True, name: str | None = None):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder, verify=True)
        m = self.manifest
        self.classes: list[str] = list(m["classes"])
        self.num_points = int(m["input"]["num_points"])
        self.min_points = int((m.get("model") or {}).get("config", {}).get("k", 1))
        self.name = name or (m.get("model") or {}).get("name") or self.folder.name
        self.version = m["files"][m["model_file"]][:12]
        model_file = self.folder / m["model_file"]
        self.input_name = m["input"]["name"]
        engine = m["artifact_format"].startswith("trt-")
        from pointkd.export.ort_session import open_runner
        from pointkd.export.tensorrt_backend import TensorRTUnavailable

        try:
            self.run = open_runner(model_file, engine, self.input_name, m["output"]["name"], threads, spin)
        except TensorRTUnavailable as err:
            raise ValueError(f"{self.folder} holds a TensorRT engine, which cannot run here: {err}") from err
        self.platform = "tensorrt_plan" if engine else "onnxruntime_onnx"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        logits = self.run(np.ascontiguousarray(batch, dtype=np.float32))
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)
