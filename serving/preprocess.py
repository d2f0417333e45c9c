"""Request clouds -> model input, exactly as the training data was prepared.

The training clouds (ModelNet40) are centred at their centroid and scaled into the unit sphere on the whole cloud,
then a fixed number of points is taken. A request cloud gets the same: validate, centre, scale, then resample to the
model's ``N``: farthest-point sampling when it has more points (open3d's, deterministic: it starts from the first
point), each point repeated in order when it has fewer. The frame is the caller's: the model was trained z-up, with
the manifest's axis order.
"""

from __future__ import annotations

import numpy as np


class BadCloud(ValueError):
    """A request cloud the model cannot take; the message says why (it goes back to the caller)."""


def validate(points: np.ndarray, min_points: int, max_points: int) -> np.ndarray:
    """``points`` as a C-contiguous float32 ``[P, 3]``, or :class:`BadCloud`."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise BadCloud(f"expected points of shape [P, 3], got {list(points.shape)}")
    p = points.shape[0]
    if p < min_points:
        raise BadCloud(f"the cloud has {p} point(s); this model needs at least {min_points} (its kNN k)")
    if p > max_points:
        raise BadCloud(f"the cloud has {p} points; this server takes at most {max_points}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(points, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        raise BadCloud(f"{int((~finite).sum())} of {p} points hold NaN or Inf")
    return out


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre at the centroid and scale so the farthest point is at distance 1 (float64 maths, float32 out)."""
    centred = points.astype(np.float64) - points.mean(axis=0, dtype=np.float64)
    radius = np.sqrt((centred * centred).sum(axis=1).max())
    if not radius > 0:
        raise BadCloud("all points coincide: the cloud has no extent")
    return (centred / radius).astype(np.float32)


def farthest_point_sample(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows of ``points`` by farthest-point sampling (open3d's C++ implementation)."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    return np.asarray(cloud.farthest_point_down_sample(n).points, dtype=np.float32)


def resample(points: np.ndarray, n: int) -> np.ndarray:
    """Exactly ``n`` points: FPS when there are more, every point repeated in order when fewer."""
    p = points.shape[0]
    if p == n:
        return points
    if p > n:
        return farthest_point_sample(points, n)
    return points[np.arange(n) % p]


def prepare(points: np.ndarray, num_points: int, min_points: int, max_points: int) -> np.ndarray:
    """Validated, normalised, resampled ``[num_points, 3]`` float32."""
    return resample(normalize(validate(points, min_points, max_points)), num_points)
