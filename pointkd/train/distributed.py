"""Training past one process: ``torchrun --nproc_per_node=N -m pointkd train|distill ...``.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; :func:`init_distributed` then
joins the process group (gloo on CPU, nccl on CUDA) and every rank trains a :class:`TrainStep` (the model and the
objective's trainable heads together) wrapped in ``DistributedDataParallel``, so gradients, FitNet regressors and
HKD / attention heads included, are averaged across ranks at each step. Each rank reads its own part of every
epoch through a ``DistributedSampler`` (``train.batch_size`` is the global batch: ``batch_size / N`` clouds per
rank); only rank 0 evaluates, writes checkpoints and logs. ``train.sync_bn`` converts BatchNorm to
``SyncBatchNorm`` (PyTorch implements it for CUDA only); without it each rank normalises over its own part of the
batch, as plain DDP does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistContext:
    """The process group torchrun asked for (none when ``WORLD_SIZE`` is unset or 1), and this rank's device:
    ``cuda:<LOCAL_RANK>`` when ``device`` is ``auto`` or ``cuda`` and CUDA is available, else the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda, but torch sees no CUDA device")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world, local, dev)


def shutdown_distributed() -> None:
    """Leave the process group, if this process (a torchrun rank) joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        torch.distributed.barrier()


def local_batch_size(global_batch: int, ctx: DistContext) -> int:
    if global_batch % ctx.world_size:
        raise ConfigError(
            f"train.batch_size {global_batch} (the global batch) must divide evenly over {ctx.world_size} ranks"
        )
    return global_batch // ctx.world_size


class TrainStep(nn.Module):
    """The model and the objective as one module, ``forward(points, labels) -> (loss, logits)``, so that
    ``DistributedDataParallel`` sees (and averages) every trainable parameter of a step, the objective's heads
    included. The objective's per-term values of the last call are in :attr:`terms`."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective
        self.terms: dict[str, float] = {}

    def forward(self, points: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        out = self.objective(self.model, points, labels)
        self.terms = out.terms
        return out.loss, out.logits


def wrap_for_training(step: TrainStep, ctx: DistContext, sync_bn: bool = False) -> nn.Module:
    """``step`` as is for one process, else in DistributedDataParallel (after SyncBatchNorm conversion)."""
    if sync_bn and ctx.device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA devices: PyTorch's SyncBatchNorm does not run on the CPU")
    if not ctx.distributed:
        return step
    if sync_bn:
        step.model = nn.SyncBatchNorm.convert_sync_batchnorm(step.model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step, device_ids=device_ids)
