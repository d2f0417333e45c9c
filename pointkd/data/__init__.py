"""ModelNet40 sources, the cloud readers and the one normalisation + resampling path.

The loaders and transforms are imported on first use (PEP 562), so that reading and preparing a cloud
(:mod:`pointkd.data.cloud_io`, :mod:`pointkd.data.resample`) does not import torch: ``pointkd.load`` on an ONNX
artifact and the server's parse workers need numpy only. The loaders and transforms that build tensors import torch
when they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# numpy only, imported now (``resample`` the function must shadow ``resample`` the submodule, as it always has)
from .resample import EmptyCloud, normalize_unit_sphere, prepare_cloud, resample
from .splits import DataError, PointCloudSplits

if TYPE_CHECKING:
    from .modelnet40 import load_modelnet40, resolve_data_path
    from .transforms import TrainAugment, fixed_subset, random_subset, rotate_z

_WHERE = {  # torch: imported on first use
    "load_modelnet40": "modelnet40",
    "resolve_data_path": "modelnet40",
    "TrainAugment": "transforms",
    "fixed_subset": "transforms",
    "random_subset": "transforms",
    "rotate_z": "transforms",
}

__all__ = [
    "DataError",
    "EmptyCloud",
    "PointCloudSplits",
    "TrainAugment",
    "fixed_subset",
    "load_modelnet40",
    "normalize_unit_sphere",
    "prepare_cloud",
    "random_subset",
    "resample",
    "resolve_data_path",
    "rotate_z",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'pointkd.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
