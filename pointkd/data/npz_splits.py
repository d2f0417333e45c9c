"""The packed ``.npz`` form of :class:`~pointkd.data.splits.PointCloudSplits` (the shared real copy's layout, see
its README): read by :func:`load_npz`, written atomically by :func:`write_npz` (the mesh tree's sampled cache)."""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from .splits import DataError, PointCloudSplits

REQUIRED_KEYS = ("train_x", "train_y", "test_x", "test_y", "classes")


def load_npz(path: Path) -> PointCloudSplits:
    """The splits of a packed npz; a :class:`DataError` for a missing array, a bad shape, NaN/Inf or a broken file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; has {sorted(z.files)}")
            arrays = {k: z[k] for k in z.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from e
    for split in ("train", "test"):
        x = arrays[f"{split}_x"]
        if x.ndim != 3 or x.shape[-1] != 3:
            raise DataError(f"{path}: {split}_x must be [M, P, 3], got {x.shape}")
        if not np.isfinite(x).all():
            raise DataError(f"{path}: {split}_x holds NaN or Inf")
    return PointCloudSplits(
        train_x=torch.from_numpy(np.ascontiguousarray(arrays["train_x"], dtype=np.float32)),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(np.ascontiguousarray(arrays["test_x"], dtype=np.float32)),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        classes=[str(c) for c in arrays["classes"]],
        train_names=[str(n) for n in arrays.get("train_names", [])],
        test_names=[str(n) for n in arrays.get("test_names", [])],
        source=str(path),
    )


def write_npz(path: Path, splits: PointCloudSplits) -> None:
    """``splits`` to ``path`` atomically (a temporary file, then a rename); a warning, not an error, when it cannot
    be written (a cache is optional)."""
    arrays = {
        "train_x": splits.train_x.numpy(),
        "train_y": splits.train_y.numpy(),
        "test_x": splits.test_x.numpy(),
        "test_y": splits.test_y.numpy(),
        "classes": np.array(splits.classes),
        "train_names": np.array(splits.train_names),
        "test_names": np.array(splits.test_names),
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not write cache {path}: {e}", stacklevel=3)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
