"""ModelNet40 as a folder tree of point clouds: ``root/<class>/{train,test}/*.{npy,ply,pcd,txt,xyz,pts}``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..process import progress_interval, show_bars
from .cloud_io import CLOUD_SUFFIXES, read_cloud
from .resample import normalize_unit_sphere, resample
from .splits import DataError, PointCloudSplits, name_seed

SPLITS = ("train", "test")


def scan_class_tree(root: Path, suffixes: tuple[str, ...]) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Sorted class names and, per split, ``(file, label)`` pairs sorted by class then file name, for
    ``root/<class>/{train,test}/*<suffix>``. Raises :class:`DataError` for a tree with no such files or a
    class with one split missing."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    found: dict[str, dict[str, list[Path]]] = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
        per_split = {
            s: sorted(f for f in (class_dir / s).glob("*") if f.suffix.lower() in suffixes and f.is_file())
            for s in SPLITS
        }
        if any(per_split.values()):
            found[class_dir.name] = per_split
    if not found:
        raise DataError(
            f"{root}: no {'/'.join(suffixes)} files found under <class>/train/ or <class>/test/ "
            f"(expected root/<class>/{{train,test}}/<name>{suffixes[0]})"
        )
    for name, per_split in found.items():
        missing = [s for s in SPLITS if not per_split[s]]
        if missing:
            raise DataError(f"{root}: class {name!r} has no {'/'.join(suffixes)} files in {missing[0]}/")
    classes = sorted(found)
    files = {s: [(f, i) for i, c in enumerate(classes) for f in found[c][s]] for s in SPLITS}
    return classes, files


def stack_splits(
    classes: list[str], clouds: dict[str, list[tuple[np.ndarray, int, str]]], source: str
) -> PointCloudSplits:
    """A :class:`PointCloudSplits` from per-split ``(points [P, 3], label, name)`` lists."""
    arrays = {}
    for s in SPLITS:
        arrays[f"{s}_x"] = torch.from_numpy(np.stack([c[0] for c in clouds[s]]).astype(np.float32))
        arrays[f"{s}_y"] = torch.tensor([c[1] for c in clouds[s]], dtype=torch.int64)
    return PointCloudSplits(
        **arrays,
        classes=classes,
        train_names=[c[2] for c in clouds["train"]],
        test_names=[c[2] for c in clouds["test"]],
        source=source,
    )


def load_folder_tree(root: Path, num_points: int = 1024, seed: int = 0, progress: bool = True) -> PointCloudSplits:
    """Clouds from ``root/<class>/{train,test}/*`` read with :func:`read_cloud`, each resampled to
    ``num_points`` (seeded by its file stem) and scaled to the unit sphere; classes are the sorted class
    folder names."""
    root = Path(root)
    classes, files = scan_class_tree(root, CLOUD_SUFFIXES)
    return read_class_tree(root, classes, files, num_points, seed, progress, (f"reading {root.name}", "cloud"), True)


def read_class_tree(
    root: Path,
    classes: list[str],
    files: dict[str, list[tuple[Path, int]]],
    num_points: int,
    seed: int,
    progress: bool,
    bar_words: tuple[str, str],
    resampled: bool,
) -> PointCloudSplits:
    """Every file of ``files`` (per split, from :func:`scan_class_tree`) read with :func:`read_cloud` (a mesh is
    sampled at ``num_points``), resampled to ``num_points`` when ``resampled`` (both seeded by the file stem), scaled
    to the unit sphere, and stacked; ``bar_words``: the progress bar's description and unit."""
    clouds: dict[str, list[tuple[np.ndarray, int, str]]] = {s: [] for s in SPLITS}
    total = sum(len(v) for v in files.values())
    desc, unit = bar_words
    with tqdm(
        total=total, desc=desc, unit=unit, disable=not show_bars(progress), mininterval=progress_interval()
    ) as bar:
        for s in SPLITS:
            for path, label in files[s]:
                points = read_cloud(path, num_points_for_mesh=num_points, seed=name_seed(path.stem, seed))
                if resampled:
                    points = resample(points, num_points, name_seed(path.stem, seed))
                clouds[s].append((normalize_unit_sphere(points), label, path.stem))
                bar.update()
    return stack_splits(classes, clouds, str(root))
