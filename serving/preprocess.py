"""Request clouds -> model input, exactly as the training data was prepared.

The training clouds (ModelNet40) are centred at their centroid and scaled into the unit sphere on the whole cloud,
then a fixed number of points is taken. A request cloud gets the same: validate, centre, scale, then resample to the
model's ``N``: farthest-point sampling when it has more points (open3d's, deterministic: it starts from the first
point), each point repeated in order when it has fewer. A cloud with more than ``N`` points but fewer than ``N``
distinct ones (snapped to a grid, say) gets all its distinct points from FPS, repeated in order to ``N``. The
result is always exactly ``[N, 3]`` finite float32, or a :class:`BadCloud`. The frame is the caller's: the model was
trained z-up, with the manifest's axis order.
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
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        raise BadCloud(f"{int((~finite).sum())} of {p} points hold NaN or Inf (or a number that overflows float64)")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(points, dtype=np.float32)
    fits = np.isfinite(out).all(axis=1)
    if not fits.all():
        raise BadCloud(f"{int((~fits).sum())} of {p} points overflow float32 (|value| > 3.4e38)")
    return out


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre at the centroid and scale so the farthest point is at distance 1 (float64 maths, float32 out)."""
    centred = points.astype(np.float64) - points.mean(axis=0, dtype=np.float64)
    radius = np.sqrt((centred * centred).sum(axis=1).max())  # float32 inputs: |centred| < 7e38, squares fit float64
    if not radius > 0:
        raise BadCloud("all points coincide: the cloud has no extent")
    out = (centred / radius).astype(np.float32)
    if not np.isfinite(out).all():  # cannot happen for finite float32 input; checked so nothing else gets NaN
        raise BadCloud("the cloud cannot be scaled into the unit sphere")
    return out


def farthest_point_sample(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows of ``points`` by farthest-point sampling (open3d's C++ implementation)."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    return np.asarray(cloud.farthest_point_down_sample(n).points, dtype=np.float32)


def resample(points: np.ndarray, n: int) -> np.ndarray:
    """Exactly ``n`` points: FPS when there are more, every point repeated in order when fewer (or when FPS ran
    out of distinct points: it stops there)."""
    p = points.shape[0]
    if p > n:
        points = farthest_point_sample(points, n)
        p = points.shape[0]
    if p == n:
        return points
    if p == 0:
        raise BadCloud("the cloud has no points left to resample")
    return points[np.arange(n) % p]


def prepare(points: np.ndarray, num_points: int, min_points: int, max_points: int) -> np.ndarray:
    """Validated, normalised, resampled ``[num_points, 3]`` finite float32."""
    out = resample(normalize(validate(points, min_points, max_points)), num_points)
    check_model_input(out, (num_points, 3), "the prepared cloud")
    return out


def check_model_input(cloud: object, shape: tuple[int, ...], what: str = "a model input") -> None:
    """A :class:`BadCloud` unless ``cloud`` is exactly what the model takes: a finite float32 array of ``shape``.
    Checked on every prepared cloud and again by the micro-batcher on every row it is given."""
    if not isinstance(cloud, np.ndarray) or cloud.shape != tuple(shape) or cloud.dtype != np.float32:
        got = f"{getattr(cloud, 'dtype', type(cloud).__name__)} {list(getattr(cloud, 'shape', ()))}"
        raise BadCloud(f"{what} is {got}, the model takes float32 {list(shape)}")
    if not np.isfinite(cloud).all():
        raise BadCloud(f"{what} holds NaN or Inf")
