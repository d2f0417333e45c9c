"""One entry point for ModelNet40 from any of its distributions: :func:`load_modelnet40`.

Sources, detected from the path:

* a ``.npz`` with ``train_x/train_y/test_x/test_y/classes`` (+ ``*_names``): the shared real copy (default);
* ``modelnet40_ply_hdf5_2048/`` (``ply_data_{train,test}*.h5``; y-up, rotated to z-up);
* the official mesh tree ``ModelNet40/<class>/{train,test}/*.off`` (points sampled with open3d, cached once);
* a folder tree ``<class>/{train,test}/*.{npy,ply,pcd,txt,xyz}`` of point clouds;
* ``"synthetic"``: a small procedural set (see :mod:`pointkd.data.synthetic`) for demos and tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from .npz_splits import load_npz
from .splits import DataError, PointCloudSplits

NPZ_NAME = "modelnet40_1024.npz"
SHARED_NPZ_SHA256 = "e341bd64f27f20beb907daf8b9830c5a1c35fb745873e7efb0285a1bacbd4019"
ENV_VAR = "POINTKD_DATA"


def default_data_candidates() -> list[Path]:
    """Where the shared real copy is looked for: beside the checkout, then beside the working directory."""
    rel = Path("shared") / "data" / "modelnet40_1024" / NPZ_NAME
    repo = Path(__file__).resolve().parents[2]
    return [repo.parent / rel, Path.cwd().parent / rel, Path.cwd() / rel]


def resolve_data_path(source: str | os.PathLike | None = None) -> Path | str:
    """``source`` if given, else ``$POINTKD_DATA``, else the shared copy beside the checkout."""
    if source is None or str(source) == "":
        source = os.environ.get(ENV_VAR) or None
    if source is not None:
        if str(source) == "synthetic":
            return "synthetic"
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"data path {path} does not exist")
        return path
    for cand in default_data_candidates():
        if cand.is_file():
            return cand
    tried = "\n  ".join(str(c) for c in default_data_candidates())
    raise DataError(
        f"no ModelNet40 data found; pass --data PATH or set {ENV_VAR}. Looked for:\n  {tried}\n"
        "(or use --data synthetic for the small built-in set)"
    )


def detect_format(path: Path) -> str:
    if path.is_file():
        if path.suffix == ".npz":
            return "npz"
        if path.suffix in (".h5", ".hdf5"):
            return "hdf5"
        raise DataError(f"{path}: unsupported data file (expected .npz, or a folder)")
    if any(path.glob("ply_data_*.h5")) or any(path.glob("*/ply_data_*.h5")):
        return "hdf5"
    if any(path.glob("*/*/*.off")) or any(path.glob("*/*/*/*.off")):
        return "off"
    return "folder"


def load_modelnet40(
    source: str | os.PathLike | None = None,
    *,
    num_points: int = 1024,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    fmt: str = "auto",
) -> PointCloudSplits:
    """Load ModelNet40 splits (z-up, centred, unit sphere) from ``source`` (see module docstring).

    ``num_points`` applies to the mesh tree (points sampled per mesh) and the folder/hdf5 formats (resampled
    per cloud); the npz is returned as stored (slice or subsample later in the transforms)."""
    path = resolve_data_path(source)
    if path == "synthetic":
        from .synthetic import make_synthetic

        return make_synthetic(num_points=num_points, seed=seed)
    assert isinstance(path, Path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "npz":
        return load_npz(path)
    if fmt == "hdf5":
        from .hdf5 import load_hdf5

        return load_hdf5(path, num_points=num_points, seed=seed)
    if fmt == "off":
        from .off_tree import load_off_tree

        return load_off_tree(path, num_points=num_points, seed=seed, cache_dir=cache_dir)
    if fmt == "folder":
        from .folder_tree import load_folder_tree

        return load_folder_tree(path, num_points=num_points, seed=seed)
    raise ValueError(f"unknown data format {fmt!r}")
