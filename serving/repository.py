"""Which artifacts a server serves: one artifact folder, or a model repository (a folder of artifact folders).

As Triton's model repository: each sub-folder holding a ``manifest.json`` is one model, named by the sub-folder;
its version is its artifact's (the model file's sha256 prefix). A single artifact folder is named by its manifest.
"""

from __future__ import annotations

import os
from pathlib import Path


def model_folders(path: str | os.PathLike) -> list[tuple[str | None, Path]]:
    """``[(name, folder)]``: ``[(None, path)]`` for an artifact folder (the manifest names it), else one entry per
    sub-folder with a manifest, sorted by name; ValueError if there is none."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        return [(None, path)]
    if not path.is_dir():
        raise ValueError(f"{path}: no such folder")
    found = [(sub.name, sub) for sub in sorted(path.iterdir()) if (sub / "manifest.json").is_file()]
    if not found:
        raise ValueError(
            f"{path}: neither an artifact folder (manifest.json) nor a model repository (sub-folders with one)"
        )
    return found
