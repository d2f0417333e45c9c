"""The official ModelNet40 mesh tree ``root/<class>/{train,test}/<class>_NNNN.off``, sampled to points once
and cached as an npz (same layout as the shared copy)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from .folder_tree import SPLITS, read_class_tree, scan_class_tree
from .npz_splits import load_npz, write_npz
from .splits import DataError, PointCloudSplits

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path("~/.cache/pointkd").expanduser()


def find_off_root(root: Path) -> Path:
    """``root`` itself if it holds ``<class>/{train,test}/*.off``, else ``root/ModelNet40`` or the one
    subfolder that does."""
    root = Path(root)

    def holds_tree(p: Path) -> bool:
        return any(p.glob("*/train/*.off")) or any(p.glob("*/test/*.off"))

    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if holds_tree(root):
        return root
    if holds_tree(root / "ModelNet40"):
        return root / "ModelNet40"
    subs = [p for p in sorted(root.iterdir()) if p.is_dir() and holds_tree(p)]
    if len(subs) == 1:
        return subs[0]
    if subs:
        raise DataError(f"{root}: several mesh trees inside ({', '.join(p.name for p in subs)}); pass one")
    raise DataError(f"{root}: no .off meshes found (expected <root>/<class>/{{train,test}}/<class>_NNNN.off)")


def cache_key(root: Path, files: list[Path], num_points: int, seed: int) -> str:
    """A hash of the resolved root, every mesh's relative path, size and mtime, and the sampling settings."""
    entries = []
    for f in sorted(files):
        st = f.stat()
        entries.append([f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    blob = json.dumps([CACHE_VERSION, str(root.resolve()), entries, num_points, seed])
    return hashlib.sha256(blob.encode()).hexdigest()


def load_off_tree(
    root: Path,
    num_points: int = 1024,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> PointCloudSplits:
    """Sample ``num_points`` points uniformly by area from every mesh (seeded per object by its file stem),
    scale each to the unit sphere, and cache the splits as ``cache_dir/modelnet40_off_*.npz`` (default
    ``~/.cache/pointkd``); a later call with the same files and settings loads the cache."""
    root = find_off_root(Path(root))
    classes, files = scan_class_tree(root, (".off",))
    all_files = [f for s in SPLITS for f, _ in files[s]]
    key = cache_key(root, all_files, num_points, seed)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache = cache_dir / f"modelnet40_off_{num_points}pts_seed{seed}_{key[:16]}.npz"
    if cache.is_file():
        try:
            splits = load_npz(cache)
        except DataError as e:
            warnings.warn(f"ignoring unreadable cache {cache}: {e}", stacklevel=2)
        else:
            splits.source = str(root)
            return splits

    splits = read_class_tree(root, classes, files, num_points, seed, progress, ("sampling meshes", "mesh"), False)
    write_npz(cache, splits)
    return splits
