from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointkd.data import TrainAugment, fixed_subset, normalize_unit_sphere, random_subset, resample, rotate_z
from pointkd.data.transforms import drop_points, replace_with_outliers, stretch, unit_ball, unit_sphere


def test_random_subset_takes_distinct_points_of_each_cloud():
    x = torch.arange(2 * 50 * 3, dtype=torch.float32).view(2, 50, 3)
    sub = random_subset(x, 20, torch.Generator().manual_seed(0))
    assert sub.shape == (2, 20, 3)
    for b in range(2):
        rows = {tuple(r) for r in sub[b].tolist()}
        assert len(rows) == 20 and rows <= {tuple(r) for r in x[b].tolist()}
    with pytest.raises(ValueError):
        random_subset(x, 51)


def test_augment_is_deterministic_in_the_generator_and_in_range():
    x = torch.from_numpy(normalize_unit_sphere(np.random.default_rng(0).standard_normal((4, 100, 3))))
    aug = TrainAugment(num_points=64)
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (4, 64, 3)
    # scale in [2/3, 3/2] and shift in [-0.2, 0.2] keep every coordinate within 1.5 + 0.2
    assert a.abs().max() <= 1.5 + 0.2 + 1e-6


def test_augment_is_the_documented_affine_map():
    x = torch.randn(1, 10, 3)
    aug = TrainAugment(num_points=10)
    out = aug(x, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    order = torch.rand(1, 10, generator=g).argsort(1)
    scale = torch.empty(1, 1, 3).uniform_(2 / 3, 1.5, generator=g)
    shift = torch.empty(1, 1, 3).uniform_(-0.2, 0.2, generator=g)
    torch.testing.assert_close(out, x[:, order[0]] * scale + shift)


def test_rotate_z_keeps_heights_and_norms():
    x = torch.randn(3, 20, 3)
    r = rotate_z(x, torch.tensor([0.3, math.pi, -1.0]))
    torch.testing.assert_close(r[..., 2], x[..., 2])
    torch.testing.assert_close(r.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rotate_z(x[:1], torch.tensor([math.pi / 2]))[0, :, 0], -x[0, :, 1])


def test_jitter_is_clipped():
    x = torch.zeros(1, 500, 3)
    aug = TrainAugment(num_points=500, scale_low=1, scale_high=1, translate=0, jitter_sigma=1.0, jitter_clip=0.05)
    assert aug(x, torch.Generator().manual_seed(0)).abs().max() <= 0.05 + 1e-7


def test_fixed_subset_is_stable():
    x = torch.randn(2, 100, 3)
    assert torch.equal(fixed_subset(x, 30), fixed_subset(x, 30))
    assert fixed_subset(x, 100) is x


def test_normalize_unit_sphere_centres_and_scales_each_cloud():
    pts = np.random.default_rng(0).normal(size=(5, 40, 3)).astype(np.float32) * 3 + 2
    a = normalize_unit_sphere(pts)
    assert a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1).max(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a.mean(1), 0.0, atol=1e-6)


def test_resample_subsets_and_repeats():
    pts = np.arange(30, dtype=np.float32).reshape(10, 3)
    sub = resample(pts, 4, seed=1)
    assert sub.shape == (4, 3) and len({tuple(r) for r in sub}) == 4
    up = resample(pts, 25, seed=1)
    assert up.shape == (25, 3) and {tuple(r) for r in up} == {tuple(r) for r in pts}
    np.testing.assert_array_equal(resample(pts, 4, seed=1), sub)


# Corruption-style augmentations (issue #31)


def _clouds(b: int = 3, p: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(normalize_unit_sphere(np.random.default_rng(seed).standard_normal((b, p, 3))))


def test_corruption_augments_off_are_the_old_augment_and_draw_nothing():
    x = torch.randn(2, 40, 3)
    off = TrainAugment(num_points=30, stretch=1.0, outliers=0, drop_global=0.0, drop_local=0)
    g, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = off(x, g)
    order = torch.rand(2, 40, generator=ref).argsort(1)[:, :30]
    scale = torch.empty(2, 1, 3).uniform_(2 / 3, 1.5, generator=ref)
    shift = torch.empty(2, 1, 3).uniform_(-0.2, 0.2, generator=ref)
    assert torch.equal(out, x.gather(1, order[..., None].expand(-1, -1, 3)) * scale + shift)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=ref))  # no extra draws


def test_stretch_is_a_bounded_per_axis_scale_then_the_unit_sphere():
    x = _clouds()
    out = stretch(x, 2.0, torch.Generator().manual_seed(3))
    ref = torch.Generator().manual_seed(3)
    factors = torch.empty(3, 1, 3).uniform_(0.5, 2.0, generator=ref)
    assert factors.min() >= 0.5 and factors.max() <= 2.0
    scaled = x * factors
    scaled = scaled - scaled.mean(1, keepdim=True)
    torch.testing.assert_close(out, scaled / scaled.norm(dim=-1).amax(1)[:, None, None])
    torch.testing.assert_close(out.norm(dim=-1).amax(1), torch.ones(3))
    torch.testing.assert_close(out.mean(1), torch.zeros(3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(stretch(x, 1.0), unit_sphere(x))  # s = 1: only the re-normalisation
    with pytest.raises(ValueError):
        stretch(x, 0.5)


def test_outliers_replace_at_most_m_points_with_points_in_the_unit_ball():
    x = _clouds(b=64, p=50) * 0 + 5.0  # every original point far outside the ball
    out = replace_with_outliers(x, 7, torch.Generator().manual_seed(1))
    changed = (out != x).any(-1)  # [B, P]
    counts = changed.sum(1)
    assert out.shape == x.shape and counts.max() <= 7 and counts.min() == 0 and len(set(counts.tolist())) > 4
    assert out[changed].norm(dim=-1).max() <= 1.0 + 1e-6
    assert torch.equal(out, replace_with_outliers(x, 7, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, replace_with_outliers(x, 7, torch.Generator().manual_seed(2)))
    assert torch.equal(replace_with_outliers(x, 0, torch.Generator().manual_seed(1)), x)
    with pytest.raises(ValueError):
        replace_with_outliers(x, 51)


def test_unit_ball_is_uniform_in_volume():
    pts = unit_ball(20000, torch.Generator().manual_seed(0))
    r = pts.norm(dim=-1)
    assert r.max() <= 1.0 + 1e-6
    assert abs(float((r <= 0.5).float().mean()) - 0.125) < 0.01  # volume fraction of the half-radius ball
    torch.testing.assert_close(pts.mean(0), torch.zeros(3), atol=0.02, rtol=0)


def _distinct(cloud: torch.Tensor) -> int:
    return len({tuple(r) for r in cloud.tolist()})


def test_drop_global_keeps_a_random_subset_and_repeats_it_back_to_p():
    x = _clouds(b=16, p=40)
    out = drop_points(x, 0.5, 0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    kept = []
    for b in range(16):
        n = _distinct(out[b])
        kept.append(n)
        assert 40 - math.floor(40 * 0.5) <= n <= 40
        assert {tuple(r) for r in out[b].tolist()} <= {tuple(r) for r in x[b].tolist()}
        torch.testing.assert_close(out[b], out[b, torch.arange(40) % n])  # the kept points, repeated in order
    assert len(set(kept)) > 3
    assert torch.equal(out, drop_points(x, 0.5, 0, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError):
        drop_points(x, 1.0, 0)
    with pytest.raises(ValueError):
        drop_points(x, 0.5, 20)  # would leave no point


def test_drop_local_removes_the_points_nearest_a_removed_centre(monkeypatch):
    import pointkd.data.transforms as transforms

    monkeypatch.setattr(transforms, "MAX_CLUSTERS", 1)  # one cluster: the removed set is one neighbourhood
    x = _clouds(b=8, p=60)
    out = drop_points(x, 0.0, 25, torch.Generator().manual_seed(4))
    sizes = []
    for b in range(8):
        rows = [tuple(r) for r in x[b].tolist()]
        kept = {tuple(r) for r in out[b].tolist()}
        removed = torch.tensor([i for i, r in enumerate(rows) if r not in kept], dtype=torch.long)
        sizes.append(removed.numel())
        assert removed.numel() <= 25
        if removed.numel() == 0:
            continue
        d = torch.cdist(x[b, removed], x[b])  # [R, P]
        alive = torch.ones(60, dtype=torch.bool)
        alive[removed] = False
        # some removed point has every other removed point at least as near as every kept point
        assert any(bool(d[i, removed].max() <= d[i, alive].min()) for i in range(removed.numel()))
    assert max(sizes) > 5
    monkeypatch.undo()
    many = drop_points(x, 0.0, 25, torch.Generator().manual_seed(4))
    assert torch.equal(many, drop_points(x, 0.0, 25, torch.Generator().manual_seed(4)))
    assert all(60 - 25 <= _distinct(c) <= 60 for c in many)


def test_augment_with_every_corruption_is_deterministic_and_bounded():
    x = _clouds(b=4, p=200)
    aug = TrainAugment(num_points=128, stretch=2.0, outliers=10, drop_global=0.5, drop_local=30)
    a = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(8)))
    assert a.shape == (4, 128, 3)
    assert a.abs().max() <= 1.5 + 0.2 + 1e-6  # unit-sphere clouds, then the DGCNN scale and shift
    assert any(_distinct(c) < 128 for c in a)  # dropped points come back as repeats


def test_config_keys_reach_the_augment_and_are_checked():
    from pointkd.config import ConfigError, RunConfig
    from pointkd.train.trainer import train_augment

    assert train_augment(RunConfig()) == TrainAugment()
    cfg = RunConfig.from_dict({"data": {"stretch": 2.0, "outliers": 20, "drop_global": 0.5, "drop_local": 200}})
    assert train_augment(cfg) == TrainAugment(stretch=2.0, outliers=20, drop_global=0.5, drop_local=200)
    for bad in ({"stretch": 0.9}, {"outliers": -1}, {"drop_global": 1.0}, {"drop_global": 0.5, "drop_local": 512}):
        with pytest.raises(ConfigError):
            RunConfig.from_dict({"data": bad})


def _outlier_counts(fraction: float, seed: int = 0) -> torch.Tensor:
    """Per cloud, how many points of a tiny cloud (radius <= 0.01) the augment moved far out: its outliers."""
    x = torch.randn(400, 64, 3) * 0.002
    aug = TrainAugment(
        num_points=64, scale_low=1.0, scale_high=1.0, translate=0.0, outliers=20, corrupt_fraction=fraction
    )
    return (aug(x, torch.Generator().manual_seed(seed)).norm(dim=-1) > 0.05).sum(1)


def test_corrupt_fraction_corrupts_about_that_share_of_the_batch_and_leaves_the_rest_clean():
    whole, half = _outlier_counts(1.0), _outlier_counts(0.5)
    assert (whole > 0).float().mean() > 0.9  # k ~ U{0..20}: a cloud keeps no outlier 1 time in 21
    assert 0.38 < (half > 0).float().mean() < 0.58
    assert half.max() <= 20 and whole.float().mean() > 2 * half.float().mean() * 0.8
    assert torch.equal(half, _outlier_counts(0.5))  # seeded
    x = torch.randn(3, 40, 3)
    clean = TrainAugment(num_points=30)
    rare = TrainAugment(num_points=30, outliers=5, corrupt_fraction=1e-9)
    g, ref = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    out = rare(x, g)  # no cloud chosen: the clean augment, after one draw of the choice
    order = torch.rand(3, 40, generator=ref).argsort(1)[:, :30]
    torch.rand(3, generator=ref)
    scale = torch.empty(3, 1, 3).uniform_(2 / 3, 1.5, generator=ref)
    shift = torch.empty(3, 1, 3).uniform_(-0.2, 0.2, generator=ref)
    assert torch.equal(out, x.gather(1, order[..., None].expand(-1, -1, 3)) * scale + shift)
    assert clean.corrupt_fraction == 1.0 and not clean.corrupts


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.1"])
def test_corrupt_fraction_outside_zero_one_is_a_config_error(bad: str):
    from pointkd.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="corrupt_fraction"):
        load_config("distill_tail1024", [f"data.corrupt_fraction={bad}"]).validate()
