"""The one normalisation and the one resampler (pointkd.data.resample): hostile shapes, degenerate clouds, and the
server and evaluation preparing the same raw cloud into the same tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pointkd.data import EmptyCloud, fixed_subset, normalize_unit_sphere, prepare_cloud, resample
from pointkd.data.resample import all_rows_differ, distinct_rows
from serving.preprocess import BadCloud, prepare

N = 64
RNG = np.random.default_rng(0)
SHAPES = {
    "1 point": RNG.standard_normal((1, 3)),
    "2 points": RNG.standard_normal((2, 3)),
    "N - 1": RNG.standard_normal((N - 1, 3)),
    "N exact": RNG.standard_normal((N, 3)),
    "N + 1": RNG.standard_normal((N + 1, 3)),
    "many more than N": RNG.standard_normal((50 * N, 3)),
    "10 distinct, 100 each": np.repeat(RNG.standard_normal((10, 3)), 100, axis=0),
    "N distinct, 3 each": np.repeat(RNG.standard_normal((N, 3)), 3, axis=0),
    "all equal": np.full((200, 3), 0.1),
    "float64 input": RNG.standard_normal((300, 3)).astype(np.float64),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_resample_always_gives_n_float32_rows_of_the_cloud(name):
    points = SHAPES[name].astype(np.float32)
    out = resample(points, N)
    assert out.shape == (N, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    assert {tuple(r) for r in out} <= {tuple(r) for r in points}
    assert np.array_equal(out, resample(points, N))  # deterministic


def test_resample_keeps_every_distinct_point_when_there_are_fewer_than_n():
    points = SHAPES["10 distinct, 100 each"].astype(np.float32)
    assert len(np.unique(resample(points, N), axis=0)) == 10
    small = SHAPES["N - 1"].astype(np.float32)
    assert np.array_equal(resample(small, N)[: N - 1], small)  # every point, in order, then repeats


def test_resample_subsets_distinct_points_when_there_are_enough():
    out = resample(SHAPES["N distinct, 3 each"].astype(np.float32), N)
    assert len(np.unique(out, axis=0)) == N


def test_resample_returns_the_cloud_as_is_at_n_and_depends_on_the_seed_otherwise():
    points = SHAPES["N exact"].astype(np.float32)
    assert np.array_equal(resample(points, N), points)
    many = SHAPES["many more than N"].astype(np.float32)
    assert not np.array_equal(resample(many, N, seed=0), resample(many, N, seed=1))


@pytest.mark.parametrize("bad", [np.zeros((0, 3), np.float32), np.zeros((5, 2), np.float32), np.zeros(3)])
def test_resample_refuses_what_is_not_a_cloud(bad):
    with pytest.raises(ValueError):
        resample(bad, N)
    with pytest.raises(EmptyCloud):
        resample(np.zeros((0, 3), np.float32), N)


@pytest.mark.parametrize("value", [0.0, 0.1, 7.0, -3.3e38, 1e-45])
def test_normalising_a_degenerate_cloud_gives_zeros(value):
    for dtype in (np.float32, np.float64):
        out = normalize_unit_sphere(np.full((33, 3), value, dtype))
        assert out.dtype == np.float32 and np.array_equal(out, np.zeros((33, 3), np.float32))


def test_normalise_centres_and_scales_each_cloud_of_a_batch():
    clouds = RNG.standard_normal((4, 100, 3)).astype(np.float32) * 5 + 3
    clouds[2] = 1.5  # a degenerate cloud in the batch does not affect the others
    out = normalize_unit_sphere(clouds)
    for i in (0, 1, 3):
        np.testing.assert_allclose(np.linalg.norm(out[i], axis=-1).max(), 1.0, atol=1e-6)
        np.testing.assert_allclose(out[i].mean(0), 0.0, atol=1e-6)
        np.testing.assert_array_equal(out[i], normalize_unit_sphere(clouds[i]))
    assert np.array_equal(out[2], np.zeros((100, 3), np.float32))


@pytest.mark.parametrize("name", ["N - 1", "N exact", "N + 1", "many more than N", "N distinct, 3 each"])
def test_serve_and_eval_prepare_a_raw_cloud_into_the_same_tensor(name):
    """Evaluation: the loader normalises, ``predict`` reduces to N with ``fixed_subset``; the server: its parse
    job's ``prepare``. Bit for bit the same."""
    raw = (SHAPES[name] * 40 + [3, -7, 100]).astype(np.float32)
    evaluated = fixed_subset(torch.from_numpy(normalize_unit_sphere(raw))[None], N)[0].numpy()
    served = prepare(raw, N, 1, 10**6)
    assert served.shape == (N, 3) and served.dtype == np.float32
    assert np.array_equal(served, evaluated)
    assert np.array_equal(served, prepare_cloud(raw, N))


def test_fixed_subset_is_the_resampler_on_each_cloud_of_a_batch():
    clouds = RNG.standard_normal((3, 200, 3)).astype(np.float32)
    out = fixed_subset(torch.from_numpy(clouds), N).numpy()
    assert out.shape == (3, N, 3)
    for c, o in zip(clouds, out, strict=True):
        assert np.array_equal(o, resample(c, N))
    assert fixed_subset(torch.from_numpy(clouds), 500).shape == (3, 500, 3)  # fewer points than N: repeats


def test_the_server_refuses_nan_and_degenerate_clouds_before_resampling():
    with pytest.raises(BadCloud, match="NaN"):
        prepare(np.array([[0, 0, np.nan], [1, 1, 1]], np.float32), N, 1, 10**6)
    with pytest.raises(BadCloud, match="no extent"):
        prepare(np.full((10, 3), 0.1, np.float32), N, 1, 10**6)


def _first_occurrences(points: np.ndarray) -> np.ndarray:
    _, first = np.unique(points, axis=0, return_index=True)
    return np.sort(first)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_distinct_rows_fast_path_equals_numpy_unique(name):
    points = np.asarray(SHAPES[name], dtype=np.float32)
    assert np.array_equal(distinct_rows(points), _first_occurrences(points))


def test_distinct_rows_on_tie_heavy_clouds_and_signed_zeros():
    rng = np.random.default_rng(1)
    for _ in range(50):
        cloud = rng.standard_normal((300, 3)).astype(np.float32)
        cloud[rng.integers(0, 300, 40)] = cloud[rng.integers(0, 300, 40)]  # copied rows
        for points in (cloud, np.round(cloud * 2) / 2):  # and a grid-snapped cloud
            assert np.array_equal(distinct_rows(points), _first_occurrences(points))
    zeros = np.array([[0.0, 1, 2], [-0.0, 1, 2], [0.0, -0.0, 2], [0.0, 0.0, 2]], dtype=np.float32)
    assert not all_rows_differ(zeros)  # -0.0 equals 0.0, as np.unique compares them
    assert np.array_equal(distinct_rows(zeros), _first_occurrences(zeros)) and len(distinct_rows(zeros)) == 2
    assert all_rows_differ(rng.standard_normal((1024, 3)).astype(np.float32))
