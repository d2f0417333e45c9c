"""The seven ModelNet-C corruptions (Ren, Pan, Liu, "Benchmarking and Analyzing Point Cloud Classification under
Corruptions", ICML 2022), regenerated from the test split with the published parameters, 5 levels each.

This is a **regeneration**, not the official ``modelnet_c`` files: the parameters (below) are those of the paper's
public generation code, but the random draws are this module's own (numpy's PCG64, seeded per cloud), and the base
clouds are this project's z-up 1024-point test split, not the y-up ``modelnet40_ply_hdf5_2048`` files the official
set was cut from. Accuracy on it is comparable with the published figures in kind, not digit for digit (the
ModelNet-C authors say the same of their own generation script).

Every function takes one normalised cloud ``points`` ``[P, 3]`` (the split's clouds have ``P = 1024``), a
``level`` ``0..4`` and a ``numpy.random.Generator``, and returns a new float32 cloud ``[P', 3]``:

=================  ==============================================================  ====================
corruption         what happens at level ``l`` (``l = 0..4``)                      ``P'`` (``P = 1024``)
=================  ==============================================================  ====================
``scale``          ``x * (sx, sy, sz)``, ``s* ~ U(1/s, s)``, ``s = 1.6 + 0.1 l``,    1024
                   then re-centred and re-scaled to the unit sphere
``jitter``         ``x + sigma z``, ``z ~ N(0, I)``, ``sigma = 0.01 (l + 1)``        1024
``rotate``         ``x @ Rz(c) Ry(b) Rx(a)``, ``a, b, c ~ U(-t, t)``,                1024
                   ``t = (pi / 6)(l + 1) / 5`` (6 to 30 degrees)
``dropout_global`` keep a random ``floor(P (1 - r))``, ``r = 0.25 + 0.125 l``        768, 640, 512, 384, 256
``dropout_local``  ``100 (l + 1)`` points dropped in ``C ~ U{1..7}`` clusters: each   924, 824, ..., 524
                   cluster's size ~ Multinomial(equal odds), and it removes the
                   points nearest a random remaining point (itself included)
``add_global``     ``10 (l + 1)`` points uniform in the unit ball                    1034, 1044, ..., 1074
``add_local``      ``100 (l + 1)`` points in ``C ~ U{1..7}`` Gaussian clusters       1124, 1224, ..., 1524
                   around distinct random points of the cloud, ``sigma ~ U(0.075,
                   0.125)`` each; a point ``q`` outside the unit ball becomes
                   ``q / |q|^2`` (inside it), as the published code does
=================  ==============================================================  ====================

Determinism: :func:`corrupt_cloud` seeds one generator per ``(seed, corruption, cloud index)``, **the same at every
level** (common random numbers), so a cloud's corruption does not depend on which other clouds are evaluated (a
subset of the split gets exactly the clouds the whole split would) and the levels differ by their severity, not
their draws: ``dropout_global`` keeps a prefix of one permutation (each level's points are a subset of the level
before), ``add_global`` adds a prefix of one draw of 50 points (each level's points contain the level before),
``jitter`` and ``rotate`` scale one draw of noise and angles. The official files draw each level independently.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .resample import normalize_unit_sphere

LEVELS = 5
SCALE_LIMITS = (1.6, 1.7, 1.8, 1.9, 2.0)
DROP_RATES = (0.25, 0.375, 0.5, 0.625, 0.75)
MAX_CLUSTERS = 7


def _check(points: np.ndarray, level: int) -> np.ndarray:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected a cloud of shape [P, 3], got {list(points.shape)}")
    if not 0 <= level < LEVELS:
        raise ValueError(f"level must be 0..{LEVELS - 1}, got {level}")
    return points.astype(np.float64)


def corrupt_scale(points: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """``[P, 3]`` -> ``[P, 3]``: anisotropic scale ``U(1/s, s)`` per axis, ``s = 1.6 + 0.1 level``, then
    re-normalised (centroid at 0, max norm 1)."""
    x = _check(points, level)
    s = SCALE_LIMITS[level]
    return normalize_unit_sphere(x * rng.uniform(1.0 / s, s, size=3))


def corrupt_jitter(points: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """``[P, 3]`` -> ``[P, 3]``: every point moved by Gaussian noise ``N(0, sigma^2 I)``, ``sigma = 0.01 (level + 1)``
    (unclipped)."""
    x = _check(points, level)
    return (x + 0.01 * (level + 1) * rng.standard_normal(x.shape)).astype(np.float32)


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """``Rz(c) @ Ry(b) @ Rx(a)`` ``[3, 3]`` for ``angles = (a, b, c)`` radians about x, y, z."""
    (ca, cb, cc), (sa, sb, sc) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def max_rotation(level: int) -> float:
    """The largest angle per axis at ``level``: ``(pi / 6)(level + 1) / 5`` radians."""
    return math.pi / 6 * (level + 1) / LEVELS


def corrupt_rotate(points: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """``[P, 3]`` -> ``[P, 3]``: ``x @ R``, ``R = Rz Ry Rx`` with each angle ``U(-t, t)``, ``t = max_rotation(level)``
    (norms are kept)."""
    x = _check(points, level)
    angles = rng.uniform(-1.0, 1.0, size=3) * max_rotation(level)
    return (x @ rotation_matrix(angles)).astype(np.float32)


def corrupt_dropout_global(points: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """``[P, 3]`` -> ``[floor(P (1 - r)), 3]``: a uniformly random subset, drop rate ``r = 0.25 + 0.125 level``,
    in the permutation's order."""
    x = _check(points, level)
    keep = int(x.shape[0] * (1.0 - DROP_RATES[level]))
    return x[rng.permutation(x.shape[0])[:keep]].astype(np.float32)


def _cluster_sizes(total: int, rng: np.random.Generator) -> np.ndarray:
    """``C ~ U{1..7}`` cluster sizes summing to ``total``: each of the ``total`` points picks a cluster uniformly."""
    clusters = int(rng.integers(1, MAX_CLUSTERS + 1))
    return np.bincount(rng.integers(0, clusters, size=total), minlength=clusters)


def corrupt_dropout_local(points: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """``[P, 3]`` -> ``[P - 100 (level + 1), 3]``: for each of ``C ~ U{1..7}`` clusters (sizes as
    :func:`_cluster_sizes`), a uniformly random remaining point and its ``K - 1`` nearest remaining points are
    dropped (``K`` the cluster's size)."""
    x = _check(points, level)
    total = 100 * (level + 1)
    if total >= x.shape[0]:
        raise ValueError(f"dropout_local level {level} drops {total} points of a {x.shape[0]}-point cloud")
    alive = np.arange(x.shape[0])
    for size in _cluster_sizes(total, rng):
        centre = x[alive[rng.integers(alive.size)]]
        dist = ((x[alive] - centre) ** 2).sum(axis=1)
        alive = np.sort(alive[np.argsort(dist, kind="stable")[size:]])
    return x[alive].astype(np.float32)


def sample_unit_ball(count: int, rng: np.random.Generator) -> np.ndarray:
    """``[count, 3]`` points uniform in the unit ball: radius ``u^(1/3)``, ``cos(theta) ~ U(-1, 1)``,
    ``phi ~ U(0, 2 pi)``."""
    radius = np.cbrt(rng.uniform(0.0, 1.0, count))
    cos_t = rng.uniform(-1.0, 1.0, count)
    sin_t = np.sqrt(1.0 - cos_t**2)
    phi = rng.uniform(0.0, 2 * math.pi, count)
    return radius[:, None] * np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def corrupt_add_global(points: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """``[P, 3]`` -> ``[P + 10 (level + 1), 3]``: the cloud, then points uniform in the unit ball (the first
    ``10 (level + 1)`` of one draw of 50)."""
    x = _check(points, level)
    added = sample_unit_ball(10 * LEVELS, rng)[: 10 * (level + 1)]
    return np.concatenate([x, added]).astype(np.float32)


def corrupt_add_local(points: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """``[P, 3]`` -> ``[P + 100 (level + 1), 3]``: the cloud, then ``C ~ U{1..7}`` Gaussian clusters (sizes as
    :func:`_cluster_sizes`) centred on distinct random points of the cloud, ``sigma ~ U(0.075, 0.125)`` each; an
    added point ``q`` with ``|q| > 1`` is replaced by ``q / |q|^2`` (norm ``1 / |q|``, inside the unit ball)."""
    x = _check(points, level)
    sizes = _cluster_sizes(100 * (level + 1), rng)
    centres = x[rng.choice(x.shape[0], size=sizes.size, replace=False)]
    sigmas = rng.uniform(0.075, 0.125, size=sizes.size)
    added = np.concatenate(
        [c + s * rng.standard_normal((n, 3)) for c, s, n in zip(centres, sigmas, sizes, strict=True)]
    )
    sq = (added**2).sum(axis=1, keepdims=True)
    added = np.where(sq > 1.0, added / np.maximum(sq, 1.0), added)
    return np.concatenate([x, added]).astype(np.float32)


Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

CORRUPTIONS: dict[str, Corruption] = {
    "scale": corrupt_scale,
    "jitter": corrupt_jitter,
    "rotate": corrupt_rotate,
    "dropout_global": corrupt_dropout_global,
    "dropout_local": corrupt_dropout_local,
    "add_global": corrupt_add_global,
    "add_local": corrupt_add_local,
}
CORRUPTION_NAMES: tuple[str, ...] = tuple(CORRUPTIONS)


def corrupt_cloud(points: np.ndarray, name: str, level: int, index: int, seed: int = 0) -> np.ndarray:
    """Cloud number ``index`` of the split ``[P, 3]`` under corruption ``name`` at ``level``: float32 ``[P', 3]``,
    the same for the same ``(seed, name, index)`` at every call (its generator does not depend on ``level``)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTION_NAMES)}")
    rng = np.random.default_rng([seed, CORRUPTION_NAMES.index(name), index])
    return CORRUPTIONS[name](points, level, rng)


def corrupt_split(
    clouds: np.ndarray, name: str, level: int, indices: np.ndarray | None = None, seed: int = 0
) -> list[np.ndarray]:
    """Clouds ``[M, P, 3]`` under ``name`` at ``level``: a list of ``M`` float32 ``[P', 3]``; ``indices`` ``[M]``
    are the clouds' numbers in the split (default ``0..M-1``), which pick their generators."""
    ids = np.arange(len(clouds)) if indices is None else np.asarray(indices)
    return [corrupt_cloud(np.asarray(c), name, level, int(i), seed) for c, i in zip(clouds, ids, strict=True)]
