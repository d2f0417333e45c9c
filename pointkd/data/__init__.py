from .modelnet40 import load_modelnet40, resolve_data_path
from .resample import EmptyCloud, normalize_unit_sphere, prepare_cloud, resample
from .splits import DataError, PointCloudSplits
from .transforms import TrainAugment, fixed_subset, random_subset, rotate_z

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
