"""Batched point-cloud transforms, as in DGCNN training, deterministic in a ``torch.Generator``.

All take and return ``[B, P, 3]`` float tensors (z-up). Training augmentation (:class:`TrainAugment`):
random subset of ``N`` points (which also shuffles their order), anisotropic scale ``U(2/3, 3/2)`` per axis,
translation ``U(-0.2, 0.2)`` per axis; optional Gaussian jitter (clipped) and rotation about the up (z) axis.
Evaluation prepares clouds with :mod:`pointkd.data.resample` (:func:`fixed_subset` is its batched tensor form).

Optional corruption-style augmentations (issue #31; each off by default, and off draws nothing from the generator,
so a config without them trains bit for bit as before), in the kinds of :mod:`pointkd.data.corruptions`, each
drawn per cloud:

* ``stretch`` ``s > 1`` (:func:`stretch`): ``x * (sx, sy, sz)``, ``s* ~ U(1/s, s)``, then the cloud re-centred and
  re-scaled to the unit sphere (ModelNet-C ``scale``; ``s = 2`` is its top level). The DGCNN scale ``U(2/3, 3/2)``
  below still follows it.
* ``outliers`` ``m > 0`` (:func:`replace_with_outliers`): ``k ~ U{0..m}`` of the ``N`` points replaced by points
  uniform in the unit ball (ModelNet-C ``add_global`` adds 10 to 50 such points to 1,024).
* ``drop_global`` ``r > 0`` and ``drop_local`` ``t > 0`` (:func:`drop_points`): ``floor(N u)`` random points,
  ``u ~ U(0, r)``, then ``U{0..t}`` more in ``C ~ U{1..7}`` clusters (a random remaining point and its nearest
  remaining points, as ModelNet-C ``dropout_local``), removed, and the ``N' `` kept points repeated in order
  (``i % N'``) back to ``N``: what :func:`pointkd.data.resample.resample` does to a short upload, so the model
  trains on the duplicates it is served.

``corrupt_fraction`` ``f < 1`` applies those four to a random share of each batch only (each cloud chosen with
probability ``f``; the others keep the clean-cloud augmentation), so a fine-tune sees clean clouds too. At ``f = 1``
no choice is drawn.

Order: subset, rotation, stretch, outliers, drops, the DGCNN scale and shift, jitter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from .resample import resample

__all__ = [
    "TrainAugment",
    "drop_points",
    "fixed_subset",
    "random_subset",
    "replace_with_outliers",
    "rotate_z",
    "stretch",
]
MAX_CLUSTERS = 7  # drop_local's most clusters per cloud, as ModelNet-C's dropout_local


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


def unit_sphere(x: Tensor) -> Tensor:
    """Each cloud of ``x`` ``[B, P, 3]`` centred on its centroid and scaled to max norm 1 (the tensor form of
    :func:`pointkd.data.resample.normalize_unit_sphere`, for clouds with extent)."""
    centred = x - x.mean(dim=1, keepdim=True)
    return centred / centred.norm(dim=-1).amax(dim=1).clamp_min(1e-12)[:, None, None]


def stretch(x: Tensor, limit: float, generator: torch.Generator | None = None) -> Tensor:
    """``[B, P, 3]``: each cloud scaled by ``(sx, sy, sz)``, each ``~ U(1/limit, limit)``, then re-normalised by
    :func:`unit_sphere` (ModelNet-C ``scale``). ``limit >= 1``."""
    if limit < 1:
        raise ValueError(f"stretch limit must be >= 1, got {limit}")
    factors = torch.empty(x.shape[0], 1, 3).uniform_(1.0 / limit, limit, generator=generator)
    return unit_sphere(x * factors)


def unit_ball(count: int, generator: torch.Generator | None = None) -> Tensor:
    """``[count, 3]`` points uniform in the unit ball (radius ``u^(1/3)`` along a uniform direction)."""
    direction = torch.randn(count, 3, generator=generator)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return direction * torch.rand(count, 1, generator=generator).pow(1.0 / 3.0)


def replace_with_outliers(x: Tensor, most: int, generator: torch.Generator | None = None) -> Tensor:
    """``[B, P, 3]``: in each cloud, ``k ~ U{0..most}`` points replaced by points uniform in the unit ball, at
    ``k`` random distinct positions (the rest unchanged). ``0 <= most <= P``."""
    b, p, _ = x.shape
    if not 0 <= most <= p:
        raise ValueError(f"outliers must be in 0..{p}, got {most}")
    counts = torch.randint(0, most + 1, (b,), generator=generator)
    ranks = torch.rand(b, p, generator=generator).argsort(dim=1).argsort(dim=1)  # a random rank per position
    replaced = ranks < counts[:, None]  # [B, P]: the k lowest-ranked positions
    noise = unit_ball(b * p, generator).view(b, p, 3)
    return torch.where(replaced[..., None], noise, x)


def drop_points(x: Tensor, global_rate: float, local_most: int, generator: torch.Generator | None = None) -> Tensor:
    """``[B, P, 3]``: from each cloud ``floor(P u)`` random points dropped (``u ~ U(0, global_rate)``), then
    ``t ~ U{0..local_most}`` more in ``C ~ U{1..7}`` clusters (sizes: each of the ``t`` picks a cluster uniformly;
    a cluster removes a random remaining point and its nearest remaining points), and the ``P'`` kept points, in
    their order, repeated (``i % P'``) back to ``P``. At least one point is kept: ``global_rate < 1`` and
    ``local_most < P - floor(P global_rate)``."""
    p = x.shape[1]
    if not 0 <= global_rate < 1:
        raise ValueError(f"drop_global must be in [0, 1), got {global_rate}")
    if not 0 <= local_most < p - math.floor(p * global_rate):
        raise ValueError(f"drop_local must be in 0..{p - math.floor(p * global_rate) - 1}, got {local_most}")
    out = []
    for cloud in x:
        alive = torch.rand(p, generator=generator).argsort()  # a random order; the first ones are kept
        if global_rate > 0:
            u = float(torch.rand((), generator=generator)) * global_rate
            alive = alive[: p - math.floor(p * u)]
        if local_most > 0:
            total = int(torch.randint(0, local_most + 1, (), generator=generator))
            clusters = int(torch.randint(1, MAX_CLUSTERS + 1, (), generator=generator))
            sizes = torch.bincount(torch.randint(0, clusters, (total,), generator=generator), minlength=clusters)
            for size in sizes.tolist():
                centre = cloud[alive[int(torch.randint(0, alive.numel(), (), generator=generator))]]
                near = ((cloud[alive] - centre) ** 2).sum(-1).argsort(stable=True)
                alive = alive[near[size:].sort().values]
        out.append(cloud[alive[torch.arange(p) % alive.numel()]])
    return torch.stack(out)


@dataclass(frozen=True)
class TrainAugment:
    """The training augmentation (module docstring); ``stretch``, ``outliers``, ``drop_global`` and ``drop_local``
    are the corruption-style ones, off at their defaults (``1.0``, ``0``, ``0.0``, ``0``)."""

    num_points: int = 1024
    scale_low: float = 2.0 / 3.0
    scale_high: float = 1.5
    translate: float = 0.2
    jitter_sigma: float = 0.0
    jitter_clip: float = 0.05
    rotate_up: bool = False
    stretch: float = 1.0
    outliers: int = 0
    drop_global: float = 0.0
    drop_local: int = 0
    corrupt_fraction: float = 1.0

    @property
    def corrupts(self) -> bool:
        return self.stretch > 1 or self.outliers > 0 or self.drop_global > 0 or self.drop_local > 0

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The corruption-style augmentations alone, on every cloud of ``x [B, N, 3]``."""
        if self.stretch > 1:
            x = stretch(x, self.stretch, generator)
        if self.outliers > 0:
            x = replace_with_outliers(x, self.outliers, generator)
        if self.drop_global > 0 or self.drop_local > 0:
            x = drop_points(x, self.drop_global, self.drop_local, generator)
        return x

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[B, P, 3]`` -> ``[B, num_points, 3]``, every random draw from ``generator``."""
        b = x.shape[0]
        x = random_subset(x, self.num_points, generator)
        if self.rotate_up:
            x = rotate_z(x, torch.rand(b, generator=generator) * (2 * math.pi))
        if self.corrupts and self.corrupt_fraction >= 1:
            x = self.corrupt(x, generator)
        elif self.corrupts:
            chosen = torch.rand(b, generator=generator) < self.corrupt_fraction
            if chosen.any():
                x = x.clone()
                x[chosen] = self.corrupt(x[chosen], generator)
        scale = torch.empty(b, 1, 3).uniform_(self.scale_low, self.scale_high, generator=generator)
        shift = torch.empty(b, 1, 3).uniform_(-self.translate, self.translate, generator=generator)
        x = x * scale + shift
        if self.jitter_sigma > 0:
            noise = torch.randn(x.shape, generator=generator) * self.jitter_sigma
            x = x + noise.clamp(-self.jitter_clip, self.jitter_clip)
        return x

    def to_dict(self) -> dict:
        return asdict(self)
