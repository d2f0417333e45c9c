"""A small built-in data set of procedural shapes, for demos and tests on machines without ModelNet40.

Eight classes of surfaces (sphere, cube, cylinder, cone, torus, pyramid, plane, capsule), each sample drawn
with random anisotropic proportions and a random rotation about the z (up) axis, then centred and scaled to
the unit sphere like ModelNet40. Deterministic in ``seed``.
"""

from __future__ import annotations

import numpy as np
import torch

from .resample import normalize_unit_sphere
from .splits import PointCloudSplits

SYNTHETIC_CLASSES = ("capsule", "cone", "cube", "cylinder", "plane", "pyramid", "sphere", "torus")


def _sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cube(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.uniform(-1, 1, size=(n, 3))
    axis = rng.integers(0, 3, size=n)
    p[np.arange(n), axis] = rng.choice([-1.0, 1.0], size=n)
    return p


def _cylinder(rng: np.random.Generator, n: int) -> np.ndarray:
    t = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(t), np.sin(t), rng.uniform(-1, 1, n)], axis=1)


def _cone(rng: np.random.Generator, n: int) -> np.ndarray:
    h = 1 - np.sqrt(rng.uniform(0, 1, n))  # area-uniform along the slant
    t = rng.uniform(0, 2 * np.pi, n)
    return np.stack([(1 - h) * np.cos(t), (1 - h) * np.sin(t), 2 * h - 1], axis=1)


def _torus(rng: np.random.Generator, n: int) -> np.ndarray:
    u, v = rng.uniform(0, 2 * np.pi, (2, n))
    r = 0.35
    return np.stack([(1 + r * np.cos(v)) * np.cos(u), (1 + r * np.cos(v)) * np.sin(u), r * np.sin(v)], axis=1)


def _pyramid(rng: np.random.Generator, n: int) -> np.ndarray:
    a, b = rng.uniform(0, 1, (2, n))
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    face = rng.integers(0, 4, n)
    base = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=float)
    p0 = np.c_[base[face], -np.ones(n)]
    p1 = np.c_[base[(face + 1) % 4], -np.ones(n)]
    apex = np.array([0.0, 0.0, 1.0])
    return p0 + a[:, None] * (p1 - p0) + b[:, None] * (apex - p0)


def _plane(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.c_[rng.uniform(-1, 1, (n, 2)), rng.normal(0, 0.01, n)]


def _capsule(rng: np.random.Generator, n: int) -> np.ndarray:
    p = _cylinder(rng, n)
    caps = rng.uniform(size=n) < 0.5
    s = _sphere(rng, int(caps.sum()))
    s[:, 2] = np.abs(s[:, 2]) * np.sign(rng.uniform(-1, 1, len(s)))
    p[caps] = s + np.c_[np.zeros((len(s), 2)), np.sign(s[:, 2])]
    return p


_SHAPES = {
    "capsule": _capsule,
    "cone": _cone,
    "cube": _cube,
    "cylinder": _cylinder,
    "plane": _plane,
    "pyramid": _pyramid,
    "sphere": _sphere,
    "torus": _torus,
}


def sample_shape(name: str, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """One random instance of the shape ``name``: ``[num_points, 3]`` float32, centred, unit sphere."""
    p = _SHAPES[name](rng, num_points) * rng.uniform(0.6, 1.4, size=3)
    t = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    return normalize_unit_sphere((p @ rot.T).astype(np.float32))


def make_synthetic(
    num_points: int = 1024, seed: int = 0, train_per_class: int = 48, test_per_class: int = 16
) -> PointCloudSplits:
    rng = np.random.default_rng(seed)
    out = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        xs, ys, names = [], [], []
        for label, cls in enumerate(SYNTHETIC_CLASSES):
            for i in range(per_class):
                xs.append(sample_shape(cls, num_points, rng))
                ys.append(label)
                names.append(f"{cls}_{split}_{i:04d}")
        out[split] = (torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64), names)
    return PointCloudSplits(
        train_x=out["train"][0],
        train_y=out["train"][1],
        test_x=out["test"][0],
        test_y=out["test"][1],
        classes=list(SYNTHETIC_CLASSES),
        train_names=out["train"][2],
        test_names=out["test"][2],
        source=f"synthetic(seed={seed})",
    )
