"""The optional outlier filter (pointkd.data.outliers) and its place in prepare_cloud, shared by eval and serve."""

from __future__ import annotations

import numpy as np
import pytest

from pointkd.data import normalize_unit_sphere, prepare_cloud
from pointkd.data.corruptions import corrupt_cloud
from pointkd.data.outliers import OutlierFilter, outlier_filter
from serving.jobs import prepare_upload
from serving.preprocess import prepare

SOR = OutlierFilter()


def _surface(points: int = 1024, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((points, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return normalize_unit_sphere(d * np.array([1.0, 0.5, 0.25]))


def _dense_reference(points: np.ndarray, k: int, r: float) -> np.ndarray:
    """The rule of the module docstring, spelled out with one dense distance matrix."""
    x = points.astype(np.float64)
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    mean_k = np.sort(dist, axis=1)[:, :k].mean(axis=1)  # k nearest, the point itself (0) included
    return np.nonzero(mean_k <= mean_k.mean() + r * mean_k.std(ddof=1))[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_sor_keeps_exactly_the_points_its_definition_keeps(seed):
    cloud = corrupt_cloud(_surface(400, seed), "add_global", 4, index=seed)
    kept = SOR.keep(cloud)
    ref = _dense_reference(cloud, SOR.neighbours, SOR.std_ratio)
    # float rounding may flip a point sitting on the threshold, nothing more
    assert len(set(kept.tolist()) ^ set(ref.tolist())) <= 1


def test_sor_removes_most_scattered_outliers_and_few_surface_points():
    surface = _surface()
    removed_outliers = removed_surface = 0
    for i in range(5):
        cloud = corrupt_cloud(surface, "add_global", 4, index=i)  # 50 points uniform in the unit ball
        kept = SOR.keep(cloud)
        removed_surface += 1024 - int((kept < 1024).sum())
        removed_outliers += 50 - int((kept >= 1024).sum())
    assert removed_outliers >= 0.6 * 250
    assert removed_surface <= 0.02 * 5 * 1024


def test_sor_is_invariant_to_scale_and_position_and_keeps_order_and_dtype():
    cloud = corrupt_cloud(_surface(), "add_global", 2, index=0)
    kept = SOR.keep(cloud)
    assert np.array_equal(kept, SOR.keep(cloud * 37.5 + np.float32(4.0)))
    assert np.array_equal(kept, np.sort(kept))
    out = SOR(cloud)
    assert out.dtype == np.float32 and np.array_equal(out, cloud[kept])


def test_sor_leaves_tiny_and_degenerate_clouds_alone():
    tiny = np.random.default_rng(0).standard_normal((SOR.neighbours, 3)).astype(np.float32)
    assert np.array_equal(SOR(tiny), tiny)
    same = np.ones((100, 3), np.float32)
    assert np.array_equal(SOR(same), same)
    with pytest.raises(ValueError):
        SOR.keep(np.zeros((30, 2), np.float32))


def test_filter_names():
    assert outlier_filter("none") is None and outlier_filter("sor") == SOR
    with pytest.raises(ValueError, match="choose from none, sor"):
        outlier_filter("median")


def test_prepare_cloud_filters_before_normalising_and_is_unchanged_without_a_filter():
    cloud = corrupt_cloud(_surface(), "add_global", 4, index=3) * np.float32(5.0)
    assert np.array_equal(prepare_cloud(cloud, 512, outliers=SOR), prepare_cloud(SOR(cloud), 512))
    assert np.array_equal(prepare_cloud(cloud, 512, outliers=None), prepare_cloud(cloud, 512))


def test_the_server_prepares_with_the_same_filter_as_evaluation():
    cloud = corrupt_cloud(_surface(), "add_global", 4, index=1)
    want = prepare_cloud(cloud, 1024, outliers=SOR)
    assert np.array_equal(prepare(cloud, 1024, 20, 10_000, "sor"), want)
    assert np.array_equal(prepare(cloud, 1024, 20, 10_000), prepare_cloud(cloud, 1024))
    meta = {"num_points": 1024, "min_points": 20, "max_points": 10_000, "ctype": "application/octet-stream"}
    _, got = prepare_upload({**meta, "outliers": "sor"}, cloud.tobytes())
    assert np.array_equal(got, want)
