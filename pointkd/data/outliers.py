"""An optional outlier filter for raw clouds, applied by :func:`pointkd.data.resample.prepare_cloud` before the
normalisation (so a stray point far away cannot shrink the object), on the path that ``pointkd eval``, the
benchmarks and ``pointkd serve`` share.

``sor`` is statistical outlier removal (Rusu et al., 2008): for every point ``i`` of ``points`` ``[P, 3]``,
``d_i`` = the mean distance to its ``k`` nearest points of the cloud (itself included, at distance 0, as open3d
counts them); a point is kept when ``d_i <= mean(d) + r * std(d)``, mean and standard deviation over the cloud.
The rule is invariant to the cloud's scale and position and has no randomness, so the kept points depend on the
cloud alone; their order is kept.

It runs open3d's ``remove_statistical_outlier`` (a KD-tree, ``O(P log P)``, C++): a kNN filter of our own (one
dense ``[P, P]`` distance matrix and a partial sort in numpy) gave exactly the same kept points but scales as
``P^2`` in time and memory, which a server taking up to a million points per upload cannot afford, and it was not
faster at the model's sizes (~50 ms each for 1,524 points on the loaded 2-core machine, same run).

Defaults ``k = 20``, ``r = 2`` (open3d's tutorial values); ``benchmarks/robustness.py`` measures what the filter
costs on clean clouds and buys under the ModelNet-C corruptions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutlierFilter:
    """Statistical outlier removal with ``neighbours`` (``k``, the point itself included) and ``std_ratio``
    (``r``); see the module docstring."""

    neighbours: int = 20
    std_ratio: float = 2.0

    def keep(self, points: np.ndarray) -> np.ndarray:
        """The sorted indices ``[P']`` of the points of ``points`` ``[P, 3]`` that are kept; every index when the
        cloud has no more than ``neighbours`` points (too few to judge) or when the rule would drop half of it or
        more (that is no outlier removal: open3d drops every point of a cloud whose points all coincide)."""
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"expected a cloud of shape [P, 3], got {list(points.shape)}")
        if points.shape[0] <= self.neighbours:
            return np.arange(points.shape[0])
        import open3d as o3d  # here: the loaders and the server import resample without needing open3d loaded

        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
        _, kept = cloud.remove_statistical_outlier(self.neighbours, self.std_ratio)
        kept = np.sort(np.asarray(kept, dtype=np.int64))
        return kept if 2 * kept.size > points.shape[0] else np.arange(points.shape[0])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The kept points of ``points`` ``[P, 3]``: ``[P', 3]``, same dtype, in order."""
        return points[self.keep(points)]


OUTLIER_FILTERS: dict[str, OutlierFilter | None] = {"none": None, "sor": OutlierFilter()}


def outlier_filter(name: str) -> OutlierFilter | None:
    """The filter named ``name`` (``none`` or ``sor``); a ValueError naming the choices otherwise."""
    if name not in OUTLIER_FILTERS:
        raise ValueError(f"unknown outlier filter {name!r}; choose from {', '.join(OUTLIER_FILTERS)}")
    return OUTLIER_FILTERS[name]
