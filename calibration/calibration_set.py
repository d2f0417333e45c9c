"""A calibration set: ``size`` training clouds, stratified per class, reproducible from a seed, saved as ids.

Only training-split clouds are ever used (calibrating on the test split would leak it into the int8 model's
accuracy). The set is saved as ``calibration.json`` next to the artifact: the training-split indices, their labels,
the seed and the sha256 of the data file, so anyone can rebuild exactly the same tensors from the same data.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pointkd.data import PointCloudSplits, fixed_subset
from pointkd.documents import read_document
from pointkd.hashing import sha256_file

FORMAT = "pointkd-calibration/1"


@dataclass
class CalibrationSet:
    ids: list[int]  # indices into the training split
    labels: list[int]
    seed: int
    source: str
    source_sha256: str | None
    clouds: np.ndarray  # [size, N, 3] float32, the model's input points (not saved)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        meta = {k: v for k, v in asdict(self).items() if k != "clouds"}
        meta["num_points"] = int(self.clouds.shape[1])
        path.write_text(json.dumps({"format": FORMAT, "split": "train", **meta}, indent=1))
        return path


def stratified_ids(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` distinct indices into ``labels``, as equal per class as the class sizes allow (sorted).

    Every class gets ``size // C`` (or all its members if it has fewer); the remainder goes to random classes that
    still have unused members."""
    labels = np.asarray(labels)
    if not 1 <= size <= len(labels):
        raise ValueError(f"calibration size must be in 1..{len(labels)} (the training clouds), got {size}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)).tolist() for c in classes}
    chosen: list[int] = []
    share = size // len(classes)
    for c in classes:
        chosen += pools[c][:share]
        pools[c] = pools[c][share:]
    while len(chosen) < size:
        open_classes = [c for c in classes if pools[c]]
        c = open_classes[rng.integers(len(open_classes))]
        chosen.append(pools[c].pop())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def build_calibration_set(
    data: PointCloudSplits, size: int = 1024, num_points: int = 1024, seed: int = 0
) -> CalibrationSet:
    """The calibration set of ``data``'s training split, with each cloud reduced to its fixed ``num_points`` subset."""
    ids = stratified_ids(data.train_y.numpy(), size, seed)
    clouds = fixed_subset(data.train_x[torch.from_numpy(ids)], num_points).numpy().astype(np.float32)
    source = Path(data.source)
    digest = sha256_file(source) if source.is_file() else None
    return CalibrationSet(ids.tolist(), data.train_y[ids].tolist(), seed, data.source, digest, clouds)


def load_calibration_ids(path: str | os.PathLike) -> dict:
    """Read a saved calibration set's metadata (ids, labels, seed, source)."""
    return read_document(path, FORMAT, "a pointkd calibration set")
