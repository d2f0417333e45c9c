from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointkd.data import TrainAugment, fixed_subset, normalize_unit_sphere, random_subset, resample, rotate_z


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
