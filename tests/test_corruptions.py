"""The ModelNet-C regeneration (pointkd.data.corruptions): each corruption's point count, bounds, determinism and
growth with the level, on clouds shaped like the test split's (1024 points in the unit sphere)."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest

from pointkd.data import normalize_unit_sphere
from pointkd.data.corruptions import (
    CORRUPTION_NAMES,
    LEVELS,
    corrupt_cloud,
    corrupt_split,
    max_rotation,
    rotation_matrix,
)

P = 1024
EXPECTED_POINTS = {
    "scale": [P] * 5,
    "jitter": [P] * 5,
    "rotate": [P] * 5,
    "dropout_global": [768, 640, 512, 384, 256],
    "dropout_local": [924, 824, 724, 624, 524],
    "add_global": [1034, 1044, 1054, 1064, 1074],
    "add_local": [1124, 1224, 1324, 1424, 1524],
}


def _surface_cloud(seed: int) -> np.ndarray:
    """1024 distinct points on an ellipsoid's surface, normalised as the split's clouds are."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((P, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return normalize_unit_sphere(d * np.array([1.0, 0.6, 0.3]))


CLOUDS = np.stack([_surface_cloud(s) for s in range(6)])


def _rows(x: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.tolist()}


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_every_level_has_the_published_point_count_and_is_float32(name):
    for level in range(LEVELS):
        out = corrupt_cloud(CLOUDS[0], name, level, index=0)
        assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 3
        assert out.shape[0] == EXPECTED_POINTS[name][level], (name, level)
        assert np.isfinite(out).all()


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_corruptions_are_deterministic_per_seed_and_cloud_and_independent_of_the_subset(name):
    a = corrupt_cloud(CLOUDS[2], name, 3, index=2, seed=7)
    assert np.array_equal(a, corrupt_cloud(CLOUDS[2], name, 3, index=2, seed=7))
    assert not np.array_equal(a, corrupt_cloud(CLOUDS[2], name, 3, index=2, seed=8))
    whole = corrupt_split(CLOUDS, name, 3, seed=7)
    subset = corrupt_split(CLOUDS[[4, 2]], name, 3, indices=np.array([4, 2]), seed=7)
    assert np.array_equal(whole[2], subset[1]) and np.array_equal(whole[4], subset[0])


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_every_corrupted_cloud_stays_near_the_unit_ball(name):
    for level in range(LEVELS):
        norms = np.linalg.norm(corrupt_cloud(CLOUDS[1], name, level, index=1), axis=1)
        # jitter alone can push points out: by at most a few sigma (0.05 at level 4)
        assert norms.max() <= (1.0 + 6 * 0.01 * (level + 1) if name == "jitter" else 1.0 + 1e-5), (name, level)


def test_scale_stretches_each_axis_within_its_limit_and_renormalises():
    for level, s in enumerate((1.6, 1.7, 1.8, 1.9, 2.0)):
        for i, cloud in enumerate(CLOUDS):
            out = corrupt_cloud(cloud, "scale", level, index=i).astype(np.float64)
            assert np.abs(out.mean(axis=0)).max() < 1e-5
            assert abs(np.linalg.norm(out, axis=1).max() - 1.0) < 1e-5
            # the scale is linear: recover its per-axis factors from the centred input (up to one overall factor)
            ratio = np.abs(out).sum(axis=0) / np.abs(cloud - cloud.mean(axis=0)).sum(axis=0)
            assert ratio.max() / ratio.min() <= s * s + 1e-4


def test_jitter_moves_points_by_the_levels_sigma_and_more_at_each_level():
    stds = []
    for level in range(LEVELS):
        delta = corrupt_cloud(CLOUDS[0], "jitter", level, index=0) - CLOUDS[0]
        stds.append(delta.std())
        assert abs(delta.std() - 0.01 * (level + 1)) < 0.1 * 0.01 * (level + 1)
    assert all(b > a for a, b in pairwise(stds))


def test_rotate_is_a_rotation_within_the_levels_angle_and_grows_with_the_level():
    r = rotation_matrix(np.array([0.3, -0.2, 0.1]))
    assert np.allclose(r @ r.T, np.eye(3)) and math.isclose(np.linalg.det(r), 1.0)
    assert math.isclose(max_rotation(4), math.pi / 6)
    angles = []
    for level in range(LEVELS):
        out = corrupt_cloud(CLOUDS[0], "rotate", level, index=0).astype(np.float64)
        assert np.allclose(np.linalg.norm(out, axis=1), np.linalg.norm(CLOUDS[0], axis=1), atol=1e-5)
        rot, *_ = np.linalg.lstsq(CLOUDS[0].astype(np.float64), out, rcond=None)  # out = x @ rot
        angle = math.acos(min(1.0, (np.trace(rot) - 1) / 2))  # the rotation's total angle
        assert angle <= math.sqrt(3) * max_rotation(level) + 1e-6
        angles.append(angle)
    assert all(b > a for a, b in pairwise(angles))  # one draw of angles, scaled per level


def test_dropout_global_keeps_points_of_the_cloud_each_level_a_subset_of_the_last():
    previous = _rows(CLOUDS[3])
    for level in range(LEVELS):
        rows = _rows(corrupt_cloud(CLOUDS[3], "dropout_global", level, index=3))
        assert rows < previous
        previous = rows


def test_dropout_local_removes_compact_holes():
    for level in range(LEVELS):
        out = corrupt_cloud(CLOUDS[0], "dropout_local", level, index=0)
        assert _rows(out) <= _rows(CLOUDS[0])
        dropped = np.array(sorted(_rows(CLOUDS[0]) - _rows(out)))
        assert len(dropped) == 100 * (level + 1)
        # at most 7 holes: the dropped points sit far closer to each other than random points of the cloud do
        gaps = np.sort(np.linalg.norm(dropped[:, None] - dropped[None], axis=-1), axis=1)[:, 1]
        rand = np.sort(np.linalg.norm(CLOUDS[0][:200, None] - CLOUDS[0][None], axis=-1), axis=1)[:, 1]
        assert np.median(gaps) <= 1.5 * np.median(rand)


def test_add_global_appends_uniform_points_in_the_ball_each_level_a_superset_of_the_last():
    previous: np.ndarray | None = None
    for level in range(LEVELS):
        out = corrupt_cloud(CLOUDS[0], "add_global", level, index=0)
        assert np.array_equal(out[:P], CLOUDS[0])
        added = out[P:]
        assert len(added) == 10 * (level + 1) and np.linalg.norm(added, axis=1).max() <= 1.0 + 1e-6
        if previous is not None:
            assert np.array_equal(added[: len(previous)], previous)
        previous = added
    many = np.concatenate([corrupt_cloud(c, "add_global", 4, index=i)[P:] for i, c in enumerate(CLOUDS)])
    # uniform in the ball: P(|q| < 0.5) = 1/8; with 300 points that is 37.5 +- 5.7
    assert 15 <= (np.linalg.norm(many, axis=1) < 0.5).sum() <= 60


def test_add_local_appends_clusters_around_points_of_the_cloud():
    for level in range(LEVELS):
        out = corrupt_cloud(CLOUDS[0], "add_local", level, index=0)
        assert np.array_equal(out[:P], CLOUDS[0])
        added = out[P:].astype(np.float64)
        assert np.linalg.norm(added, axis=1).max() <= 1.0 + 1e-6
        # every added point lies near the surface it was scattered from (sigma <= 0.125; the few folded back
        # from outside the ball may land farther)
        nearest = np.linalg.norm(added[:, None] - CLOUDS[0][None], axis=-1).min(axis=1)
        assert np.quantile(nearest, 0.9) < 0.5


def test_unknown_names_and_levels_are_refused():
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_cloud(CLOUDS[0], "fog", 0, index=0)
    with pytest.raises(ValueError, match="level"):
        corrupt_cloud(CLOUDS[0], "jitter", 5, index=0)
