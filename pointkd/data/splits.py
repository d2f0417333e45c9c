"""The in-memory form every ModelNet40 source loads into, and the per-object seed and frame helpers all loaders share
(normalisation and resampling: :mod:`pointkd.data.resample`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


class DataError(ValueError):
    """A data file or folder is missing, corrupt or not in the expected format."""


@dataclass
class PointCloudSplits:
    """Train/test point clouds ``[M, P, 3]`` float32 (z-up, centred, unit sphere) with int64 labels."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]
    train_names: list[str] = field(default_factory=list)
    test_names: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dim() != 3 or x.shape[-1] != 3:
                raise DataError(f"{split} clouds must be [M, P, 3], got {tuple(x.shape)}")
            if y.shape != (x.shape[0],):
                raise DataError(f"{split} labels must be [{x.shape[0]}], got {tuple(y.shape)}")
            if x.shape[0] and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise DataError(f"{split} labels outside 0..{len(self.classes) - 1}")
            names = getattr(self, f"{split}_names")
            if names and len(names) != x.shape[0]:
                raise DataError(f"{split} has {len(names)} names for {x.shape[0]} clouds")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_points(self) -> int:
        return int(self.train_x.shape[1])

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def class_counts(self, split: str) -> dict[str, int]:
        _, y = self.split(split)
        counts = Counter(y.tolist())
        return {c: counts.get(i, 0) for i, c in enumerate(self.classes)}


def name_seed(name: str, seed: int = 0) -> int:
    """A stable per-object seed, so a cloud's resampling does not depend on load order."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Rotate y-up clouds (``modelnet40_ply_hdf5_2048``) into the z-up frame: ``(x, y, z) -> (x, -z, y)``.

    A proper rotation (+90° about x), so shapes are not mirrored."""
    out = np.empty_like(points)
    out[..., 0] = points[..., 0]
    out[..., 1] = -points[..., 2]
    out[..., 2] = points[..., 1]
    return out
