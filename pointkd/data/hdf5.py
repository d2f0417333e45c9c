"""``modelnet40_ply_hdf5_2048``: ``ply_data_{train,test}N.h5`` (``data`` [n, 2048, 3] float32 y-up, ``label``
[n, 1] uint8), ``shape_names.txt`` (one class per line) and optional ``ply_data_{split}_N_id2file.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from .resample import normalize_unit_sphere, resample
from .splits import DataError, PointCloudSplits, name_seed, y_up_to_z_up

_H5_NAME = re.compile(r"^ply_data_(train|test)_?(\d+)\.h5$")


def find_hdf5_dir(root: Path) -> Path:
    """The folder holding ``ply_data_*.h5``: ``root`` itself, its folder if it is a file, or one subfolder."""
    root = Path(root)
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if any(root.glob("ply_data_*.h5")):
        return root
    subs = sorted({p.parent for p in root.glob("*/ply_data_*.h5")})
    if len(subs) == 1:
        return subs[0]
    if subs:
        preferred = [p for p in subs if p.name == "modelnet40_ply_hdf5_2048"]
        if len(preferred) == 1:
            return preferred[0]
        raise DataError(f"{root}: several hdf5 folders inside ({', '.join(p.name for p in subs)}); pass one")
    raise DataError(f"{root}: no ply_data_{{train,test}}*.h5 files found")


def split_files(folder: Path, split: str) -> list[tuple[int, Path]]:
    """``(index, file)`` for ``ply_data_{split}N.h5`` in numeric order of N."""
    found = []
    for f in folder.glob(f"ply_data_{split}*.h5"):
        m = _H5_NAME.match(f.name)
        if m and m.group(1) == split:
            found.append((int(m.group(2)), f))
    return sorted(found)


def read_shape_names(folder: Path) -> list[str]:
    path = folder / "shape_names.txt"
    if not path.is_file():
        raise DataError(f"{folder}: shape_names.txt is missing (one class name per line)")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not names:
        raise DataError(f"{path}: no class names")
    return names


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("data", "label") if k not in f]
            if missing:
                raise DataError(f"{path}: missing datasets {missing}; has {sorted(f.keys())}")
            data, label = np.asarray(f["data"][...]), np.asarray(f["label"][...])
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable hdf5 file ({type(e).__name__}: {e})") from e
    if data.ndim != 3 or data.shape[-1] < 3:
        raise DataError(f"{path}: 'data' must be [n, P, 3], got {data.shape}")
    label = label.reshape(-1) if label.ndim == 2 and label.shape[1] == 1 else label
    if label.ndim != 1 or label.shape[0] != data.shape[0]:
        raise DataError(f"{path}: 'label' {label.shape} does not fit 'data' {data.shape}; want [n] or [n, 1]")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: 'data' holds NaN or Inf")
    return data[..., :3].astype(np.float32, copy=False), label.astype(np.int64)


def _read_names(folder: Path, split: str, index: int, count: int) -> list[str] | None:
    path = folder / f"ply_data_{split}_{index}_id2file.json"
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable json ({e})") from e
    if not isinstance(entries, list) or len(entries) != count:
        got = len(entries) if isinstance(entries, list) else type(entries).__name__
        raise DataError(f"{path}: expected a list of {count} file names, got {got}")
    return [Path(str(e)).stem for e in entries]


def load_hdf5(root: Path, num_points: int = 1024, z_up: bool = True, seed: int = 0) -> PointCloudSplits:
    """Both splits from the h5 files, each cloud resampled to ``num_points`` (seeded by its name) when that
    differs from the stored count, rotated y-up to z-up when ``z_up``, and scaled to the unit sphere. Names
    come from the ``id2file`` json when present, else ``{split}_{index:05d}``."""
    folder = find_hdf5_dir(Path(root))
    classes = read_shape_names(folder)
    xs: dict[str, torch.Tensor] = {}
    ys: dict[str, torch.Tensor] = {}
    ns: dict[str, list[str]] = {}
    for split in ("train", "test"):
        files = split_files(folder, split)
        if not files:
            raise DataError(f"{folder}: no ply_data_{split}*.h5 files")
        clouds, labels, names = [], [], []
        for index, path in files:
            data, label = _read_h5(path)
            if label.size and (label.min() < 0 or label.max() >= len(classes)):
                raise DataError(
                    f"{path}: labels {int(label.min())}..{int(label.max())} outside the "
                    f"{len(classes)} classes of shape_names.txt"
                )
            file_names = _read_names(folder, split, index, len(data))
            if file_names is None:
                file_names = [f"{split}_{len(names) + i:05d}" for i in range(len(data))]
            if data.shape[1] != num_points:
                data = np.stack(
                    [resample(c, num_points, name_seed(n, seed)) for c, n in zip(data, file_names, strict=True)]
                )
            clouds.append(data)
            labels.append(label)
            names.extend(file_names)
        x = np.concatenate(clouds)
        if z_up:
            x = y_up_to_z_up(x)
        xs[split] = torch.from_numpy(np.ascontiguousarray(normalize_unit_sphere(x), dtype=np.float32))
        ys[split] = torch.from_numpy(np.concatenate(labels))
        ns[split] = names
    return PointCloudSplits(
        train_x=xs["train"],
        train_y=ys["train"],
        test_x=xs["test"],
        test_y=ys["test"],
        classes=classes,
        train_names=ns["train"],
        test_names=ns["test"],
        source=str(folder),
    )
