"""Raw cloud -> model input: the one unit-sphere normalisation and the one resampling to ``N`` points.

Every path that feeds a model uses these two, in this order, normalise then resample: the data loaders normalise
each cloud (mesh tree, HDF5, folder tree, synthetic; the shared npz was stored normalised), then ``pointkd eval``,
training's evaluation, ``pointkd compile``'s calibration set and accuracy check and the benchmarks resample the
split to the model's ``N`` (:func:`pointkd.data.transforms.fixed_subset`, this module's :func:`resample` on each
cloud); the server's parse workers validate a request's cloud and call :func:`prepare_cloud`, the same two steps.
So a raw cloud becomes the same tensor, bit for bit, on the server and in evaluation.

* :func:`normalize_unit_sphere`: centre on the centroid, scale so the farthest point is at distance 1 (float64
  maths, float32 out). A degenerate cloud (every point equal) has no extent to scale: it becomes all zeros (its
  centred self), never NaN. (The server refuses such a cloud before this, as a 422.)
* :func:`resample`: exactly ``[N, 3]`` float32. ``P == N``: the cloud as is. ``P > N``: a seeded random subset of
  the cloud's distinct points, in their original order (duplicates are dropped first so a grid-snapped cloud keeps
  its coverage); when fewer than ``N`` are distinct, all of them, repeated in order. ``0 < P < N``: every point
  repeated in order (``i % P``). ``P == 0``: nothing to resample from, an :class:`EmptyCloud`. The subset depends
  only on ``(P, N, seed)`` and which rows are duplicates, never on the values, so same-size clouds of a batch keep
  the same rows. Why a random subset: the models were trained on random subsets of their clouds, and
  farthest-point sampling measured no better on the test split (student -1.04 OA points against the mean of three
  random subsets, teacher -0.04; ``benchmarks/studies/resample_choice/resample_choice.md``).

An optional outlier filter (:mod:`pointkd.data.outliers`, off by default) runs before both steps in
:func:`prepare_cloud`, so evaluation and the server filter the same way.

NaN and Inf are not handled here: the readers and the server's validation refuse them before this point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .outliers import OutlierFilter


class EmptyCloud(ValueError):
    """A cloud with no points: there is nothing to normalise or resample."""


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """``[..., P, 3]`` clouds centred on their centroids and scaled to max norm 1, float32; a cloud whose points
    all coincide becomes all zeros."""
    if points.shape[-2] == 0:
        raise EmptyCloud("cannot normalise a cloud of 0 points")
    centred = points.astype(np.float64) - points.mean(axis=-2, keepdims=True, dtype=np.float64)
    radius = np.sqrt((centred * centred).sum(axis=-1).max(axis=-1))[..., None, None]
    # Equal points can leave a rounding residue in ``centred`` (a float64 mean): test equality, not the radius alone.
    extent = (radius > 0) & ~(points == points[..., :1, :]).all(axis=(-2, -1))[..., None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(extent, centred / radius, 0.0)
    return scaled.astype(np.float32)


def resample(points: np.ndarray, num_points: int, seed: int = 0) -> np.ndarray:
    """Exactly ``[num_points, 3]`` float32 rows of ``points`` ``[P, 3]`` (see the module docstring)."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected a cloud of shape [P, 3], got {list(points.shape)}")
    if num_points < 1:
        raise ValueError(f"num_points must be at least 1, got {num_points}")
    p = points.shape[0]
    if p == 0:
        raise EmptyCloud("cannot resample a cloud of 0 points")
    points = np.ascontiguousarray(points, dtype=np.float32)
    if p == num_points:
        return points
    if p > num_points:
        distinct = distinct_rows(points)
        if distinct.size >= num_points:
            keep = np.random.default_rng(seed).choice(distinct.size, num_points, replace=False)
            return points[distinct[np.sort(keep)]]
        points = points[distinct]
    return points[np.arange(num_points) % points.shape[0]]


def distinct_rows(points: np.ndarray) -> np.ndarray:
    """The indices of the first occurrence of each distinct row of ``points`` ``[P, 3]`` float32, in order."""
    if all_rows_differ(points):
        return np.arange(points.shape[0])
    _, first = np.unique(points, axis=0, return_index=True)
    if first.size == points.shape[0]:
        return np.arange(points.shape[0])
    return np.sort(first)


_ROW_HASH = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)


def all_rows_differ(points: np.ndarray) -> bool:
    """True only if no two rows of ``points`` ``[P, 3]`` float32 are equal (as floats: ``-0.0 == 0.0``).

    A fast path for :func:`distinct_rows` (``np.unique(axis=0)`` sorts the rows as records, the slow part of
    preparing a request's cloud). Equal rows have equal 64-bit hashes of their bits, so when every
    hash differs every row does; a repeated hash (a duplicate or, rarely, a collision) answers False and the
    caller falls back to the exact ``np.unique``."""
    bits = np.ascontiguousarray(points + np.float32(0.0), dtype=np.float32).view(np.uint32)  # -0.0 + 0.0 is 0.0
    keys = np.sort((bits.astype(np.uint64) * _ROW_HASH).sum(axis=1, dtype=np.uint64))  # wraps modulo 2**64
    return bool((keys[1:] != keys[:-1]).all())


def prepare_cloud(
    points: np.ndarray, num_points: int, seed: int = 0, outliers: OutlierFilter | None = None
) -> np.ndarray:
    """A raw ``[P, 3]`` cloud as the model takes it: with ``outliers`` (:mod:`pointkd.data.outliers`) its outliers
    removed first, then normalised on the whole cloud, then resampled to ``[num_points, 3]`` float32."""
    if outliers is not None:
        points = outliers(points)
    return resample(normalize_unit_sphere(points), num_points, seed)
