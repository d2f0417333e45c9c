from .modelnet40 import load_modelnet40, resolve_data_path
from .splits import DataError, PointCloudSplits, normalize_unit_sphere, resample_points
from .transforms import TrainAugment, fixed_subset, random_subset, rotate_z

__all__ = [
    "DataError",
    "PointCloudSplits",
    "TrainAugment",
    "fixed_subset",
    "load_modelnet40",
    "normalize_unit_sphere",
    "random_subset",
    "resample_points",
    "resolve_data_path",
    "rotate_z",
]
