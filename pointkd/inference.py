"""The Python API: ``pointkd.load(path)`` -> a :class:`Model` whose ``predict`` takes files or arrays.

```python
import pointkd

model = pointkd.load("runs/artifacts/dgcnn_student-onnx-fused")  # an artifact folder, or a .pt checkpoint
p = model.predict("chair.ply")  # a path, an (N, 3) array, or a list of either -> a list
p.label, p.probability, p.top(5)  # 'chair', 0.97, [('chair', 0.97), ('stool', 0.01), ...]
```

A cloud goes through exactly what the HTTP server does with it: a file is read by the server's upload job
(:func:`serving.jobs.prepare_upload`, the bounded readers of :mod:`pointkd.data.cloud_io`), an array is validated
and prepared by :func:`serving.preprocess.prepare` (:func:`pointkd.data.resample.prepare_cloud`: unit sphere, then
the model's ``N`` points), and the probabilities are the softmax of :func:`serving.predictor.softmax`. So
``pointkd predict``, this API and ``POST /predict`` give the same probabilities for the same file.

An artifact folder is opened by the server's :class:`serving.predictor.Predictor` (sha256s checked); an ONNX artifact
needs numpy and ONNX Runtime only, never torch. A ``.pt`` checkpoint runs in PyTorch on the CPU.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from serving.jobs import prepare_upload
from serving.parsing import UPLOAD_SUFFIXES
from serving.preprocess import BadCloud, prepare

MAX_POINTS = 1 << 40  # no server limit on a local cloud beyond what memory allows
CloudLike = str | os.PathLike | np.ndarray

__all__ = ["UPLOAD_SUFFIXES", "BadCloud", "Model", "Prediction", "find_clouds", "load"]


@dataclass(frozen=True)
class Prediction:
    """One cloud's answer: ``probabilities`` ``[C]`` (float64, summing to 1) in the order of ``classes``."""

    classes: tuple[str, ...]
    probabilities: np.ndarray
    source: str | None = None  # the file it came from, or None for an array
    points: int = 0  # points the cloud had before resampling

    @property
    def index(self) -> int:
        """The index of the most probable class."""
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        """The most probable class."""
        return self.classes[self.index]

    @property
    def probability(self) -> float:
        """The probability of :attr:`label`."""
        return float(self.probabilities[self.index])

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable classes with their probabilities, most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[: max(0, k)]
        return [(self.classes[int(i)], float(self.probabilities[i])) for i in order]

    def as_dict(self) -> dict[str, float]:
        """Every class's probability by name."""
        return {c: float(p) for c, p in zip(self.classes, self.probabilities, strict=True)}

    def __repr__(self) -> str:
        where = f"{self.source!r}, " if self.source is not None else ""
        return f"Prediction({where}label={self.label!r}, probability={self.probability:.4f})"


class _CheckpointPredictor:
    """A training checkpoint as the server's :class:`~serving.predictor.Predictor` looks: ``predict(batch [B, N, 3])
    -> probabilities [B, C]``, ``classes``, ``num_points``, ``min_points`` (its kNN k), ``name``, ``format``."""

    def __init__(self, path: Path, threads: int = 0):
        from pointkd.checkpoint import load_checkpoint
        from pointkd.runtime.formats import get_format
        from pointkd.runtime.torch_runner import CheckpointRunner

        ckpt = load_checkpoint(path)
        self.run = CheckpointRunner(path, threads)
        self.format = get_format("torch")
        self.classes: list[str] = list(ckpt["classes"])
        self.num_points = int(ckpt["num_points"])
        self.min_points = int((ckpt.get("model_config") or {}).get("k", 1))
        self.name = str(ckpt.get("model_name") or path.stem)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        from serving.predictor import softmax

        return softmax(self.run(np.ascontiguousarray(batch, dtype=np.float32)))


class Model:
    """A loaded classifier (from :func:`load`). ``classes``, ``num_points`` (the ``N`` a cloud is resampled to),
    ``min_points`` (the fewest points a cloud may have: the kNN k), ``name``, ``format`` (the format table's name:
    ``onnx``, ``onnx-fused``, ``torch``, ...) and ``path`` describe it."""

    def __init__(self, predictor: Any, path: Path):
        self._predictor = predictor
        self.path = path
        self.classes: tuple[str, ...] = tuple(predictor.classes)
        self.num_points: int = int(predictor.num_points)
        self.min_points: int = int(predictor.min_points)
        self.name: str = str(predictor.name)
        self.format: str = predictor.format.name

    def __repr__(self) -> str:
        return f"Model({self.name!r}, format={self.format!r}, classes={len(self.classes)}, N={self.num_points})"

    @overload
    def predict(self, x: CloudLike, batch_size: int = 32) -> Prediction: ...

    @overload
    def predict(self, x: Sequence[CloudLike], batch_size: int = 32) -> list[Prediction]: ...

    def predict(self, x: CloudLike | Sequence[CloudLike], batch_size: int = 32) -> Prediction | list[Prediction]:
        """Classify ``x``: a path to a cloud file (``.ply .pcd .xyz .pts .txt .off .npy``), an ``(P, 3)`` array of
        any size (resampled to :attr:`num_points`), or a list of either (then a list comes back, in order, run
        ``batch_size`` clouds at a time). Raises :class:`BadCloud` (a ``ValueError``) for a cloud the model cannot
        take, with the reason, and ``FileNotFoundError`` for a path that is not a file."""
        if isinstance(x, str | os.PathLike | np.ndarray):
            cloud, n = self.prepare(x)
            return self.predict_prepared(cloud[None], [_source_of(x)], [n])[0]
        items = list(x)
        prepared = [self.prepare(item) for item in items]
        out: list[Prediction] = []
        for i in range(0, len(items), max(1, batch_size)):
            chunk = prepared[i : i + batch_size]
            sources = [_source_of(item) for item in items[i : i + batch_size]]
            out += self.predict_prepared(np.stack([c for c, _ in chunk]), sources, [n for _, n in chunk])
        return out

    def prepare(self, x: CloudLike) -> tuple[np.ndarray, int]:
        """``x`` (a path or a ``(P, 3)`` array) as the model takes it, ``[num_points, 3]`` float32, and its ``P``:
        the server's preparation, step for step."""
        meta = {"num_points": self.num_points, "min_points": self.min_points, "max_points": MAX_POINTS}
        if isinstance(x, np.ndarray):
            points = np.asarray(x)
            if points.ndim != 2:
                raise BadCloud(f"expected points of shape [P, 3], got {list(points.shape)}")
            return prepare(points, self.num_points, self.min_points, MAX_POINTS), int(points.shape[0])
        path = Path(x)
        if path.suffix.lower() not in UPLOAD_SUFFIXES:
            raise BadCloud(f"{path.name}: not a cloud file pointkd reads ({' '.join(UPLOAD_SUFFIXES)})")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        info, cloud = prepare_upload({**meta, "filename": path.name}, path.read_bytes())
        return cloud, int(info["received"])

    def predict_prepared(
        self, batch: np.ndarray, sources: Sequence[str | None] | None = None, points: Sequence[int] | None = None
    ) -> list[Prediction]:
        """Predictions for clouds already prepared by :meth:`prepare`, ``batch`` ``[B, num_points, 3]``."""
        probs = self.probabilities(batch)
        sources = list(sources) if sources is not None else [None] * len(probs)
        points = list(points) if points is not None else [batch.shape[1]] * len(probs)
        return [Prediction(self.classes, row, s, n) for row, s, n in zip(probs, sources, points, strict=True)]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """``[B, C]`` class probabilities (float64) of prepared clouds ``[B, num_points, 3]``."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 3 or batch.shape[1:] != (self.num_points, 3):
            raise BadCloud(f"a prepared batch is [B, {self.num_points}, 3], got {list(batch.shape)}")
        return self._predictor.predict(batch)


def load(path: str | os.PathLike, threads: int = 0) -> Model:
    """The model at ``path``: a compiled artifact folder (``pointkd compile``; its ``manifest.json`` and sha256s
    are checked) or a ``.pt`` training checkpoint. ``threads``: CPU threads for the runtime (0: its default, one per
    core). An ONNX artifact is run by ONNX Runtime and does not import torch."""
    path = Path(path)
    if path.is_dir():
        from serving.predictor import Predictor

        return Model(Predictor(path, threads=threads, spin=False), path)
    if path.is_file():
        return Model(_CheckpointPredictor(path, threads), path)
    raise FileNotFoundError(f"{path}: no such artifact folder or checkpoint")


def find_clouds(sources: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The cloud files named by ``sources`` (files; folders, searched recursively for the suffixes pointkd reads;
    glob patterns, ``**`` included), in order without repeats, and ``(source, reason)`` for each that names none.
    A file named explicitly is kept whatever its suffix (reading it says what is wrong); folders and patterns give
    only files with a suffix pointkd reads."""
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(p)

    def add_folder(folder: Path) -> int:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in UPLOAD_SUFFIXES and p.is_file())
        for p in files:
            add(p)
        return len(files)

    for source in sources:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            if not add_folder(path):
                missing.append((text, f"no {'/'.join(UPLOAD_SUFFIXES)} files in this folder"))
        elif path.is_file():
            add(path)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            before = len(found)
            for m in map(Path, matches):
                if m.is_dir():
                    add_folder(m)
                elif m.is_file() and m.suffix.lower() in UPLOAD_SUFFIXES:
                    add(m)
            if len(found) == before:
                missing.append((text, "the pattern matches no cloud file"))
        else:
            missing.append((text, "no such file or folder"))
    return found, missing


def _source_of(x: CloudLike) -> str | None:
    return None if isinstance(x, np.ndarray) else str(x)
