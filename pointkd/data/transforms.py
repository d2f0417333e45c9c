"""Batched point-cloud transforms, as in DGCNN training, deterministic in a ``torch.Generator``.

All take and return ``[B, P, 3]`` float tensors (z-up). Training augmentation (:class:`TrainAugment`):
random subset of ``N`` points (which also shuffles their order), anisotropic scale ``U(2/3, 3/2)`` per axis,
translation ``U(-0.2, 0.2)`` per axis; optional Gaussian jitter (clipped) and rotation about the up (z) axis.
Evaluation prepares clouds with :mod:`pointkd.data.resample` (:func:`fixed_subset` is its batched tensor form).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from .resample import resample

__all__ = ["TrainAugment", "fixed_subset", "random_subset", "rotate_z"]


def random_subset(x: Tensor, num_points: int, generator: torch.Generator | None = None) -> Tensor:
    """A random subset of ``num_points`` distinct points per cloud, in random order."""
    b, p, _ = x.shape
    if num_points > p:
        raise ValueError(f"cannot take {num_points} points from clouds of {p}")
    order = torch.rand(b, p, generator=generator).argsort(dim=1)[:, :num_points]
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, 3))


def fixed_subset(x: Tensor, num_points: int, seed: int = 0) -> Tensor:
    """The same ``num_points`` points of every ``P``-point cloud on every call (evaluation): each cloud of ``x``
    resampled by :func:`pointkd.data.resample.resample` (a seeded subset, or repeats when ``N > P``); ``x`` itself
    when ``N == P``."""
    if num_points == x.shape[1]:
        return x
    clouds = x.detach().cpu().numpy()
    out = np.stack([resample(c, num_points, seed) for c in clouds]) if len(clouds) else np.empty((0, num_points, 3))
    return torch.from_numpy(out.astype(np.float32, copy=False)).to(x.device)


def rotate_z(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate each cloud ``x[b]`` by ``angles[b]`` radians about the z axis."""
    c, s = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).view(-1, 3, 3)
    return x @ rot.transpose(1, 2)


@dataclass(frozen=True)
class TrainAugment:
    num_points: int = 1024
    scale_low: float = 2.0 / 3.0
    scale_high: float = 1.5
    translate: float = 0.2
    jitter_sigma: float = 0.0
    jitter_clip: float = 0.05
    rotate_up: bool = False

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b = x.shape[0]
        x = random_subset(x, self.num_points, generator)
        if self.rotate_up:
            x = rotate_z(x, torch.rand(b, generator=generator) * (2 * math.pi))
        scale = torch.empty(b, 1, 3).uniform_(self.scale_low, self.scale_high, generator=generator)
        shift = torch.empty(b, 1, 3).uniform_(-self.translate, self.translate, generator=generator)
        x = x * scale + shift
        if self.jitter_sigma > 0:
            noise = torch.randn(x.shape, generator=generator) * self.jitter_sigma
            x = x + noise.clamp(-self.jitter_clip, self.jitter_clip)
        return x

    def to_dict(self) -> dict:
        return asdict(self)
