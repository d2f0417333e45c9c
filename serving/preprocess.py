"""Request clouds -> model input, exactly as ``pointkd eval`` prepares a test cloud.

A request cloud is validated here (shape, the model's minimum and the server's maximum point count, finite float32,
some extent), then prepared by :func:`pointkd.data.resample.prepare_cloud`, the function evaluation, compile's
calibration and accuracy check and the data loaders use: centred and scaled into the unit sphere on the whole
cloud (after an optional outlier filter, ``pointkd serve --outlier-filter``), then resampled to the model's ``N``
(a seeded random subset of its distinct points when it has more, every point repeated in order when it has
fewer). The result is always exactly ``[N, 3]`` finite float32, or a
:class:`BadCloud`. The frame is the caller's: the model was trained z-up, with the manifest's axis order.
"""

from __future__ import annotations

import numpy as np

from pointkd.data.outliers import outlier_filter
from pointkd.data.resample import prepare_cloud


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


def prepare(
    points: np.ndarray, num_points: int, min_points: int, max_points: int, outliers: str = "none"
) -> np.ndarray:
    """Validated, normalised, resampled ``[num_points, 3]`` finite float32 (:func:`pointkd.data.resample.prepare_cloud`,
    as ``pointkd eval`` prepares a test cloud), its outliers removed first with ``outliers`` (``none``, ``sor``:
    :mod:`pointkd.data.outliers`)."""
    cloud = validate(points, min_points, max_points)
    if not cloud.shape[0]:
        raise BadCloud("the cloud has no points")
    if (cloud == cloud[0]).all():
        raise BadCloud("all points coincide: the cloud has no extent")
    out = prepare_cloud(cloud, num_points, outliers=outlier_filter(outliers))
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
