"""Supervised training of a DGCNN on ModelNet40 (the DGCNN recipe, configurable), resumable exactly.

Determinism: the epoch's sample order comes from a generator seeded by ``(seed, epoch)`` and each batch's
augmentation and dropout from ``(seed, epoch, batch)``, so a run resumed from any checkpoint (end of epoch or
mid-epoch) replays the same batches as an uninterrupted run. The learning rate follows a per-step cosine from
``lr`` to ``lr_min``, a function of the global step alone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn
from tqdm import tqdm

from .. import __version__
from ..checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ..config import ConfigError, RunConfig
from ..data import PointCloudSplits, TrainAugment, load_modelnet40
from ..models import DGCNN, create_model
from ..models.precision import cpu_has_native_bf16
from ..process import progress_interval, show_bars
from .class_weights import class_weights
from .distributed import (
    DistContext,
    TrainStep,
    barrier,
    init_distributed,
    local_batch_size,
    wrap_for_training,
)
from .evaluate import evaluate
from .run_clock import RunClock
from .swa import WeightAverage

LAST, BEST = "last.pt", "best.pt"


def step_seed(seed: int, epoch: int, batch: int) -> int:
    return ((seed * 1_000_003 + epoch) * 100_003 + batch) % (2**62)


def cosine_lr(step: int, total: int, lr: float, lr_min: float) -> float:
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def steps_per_epoch(num_train: int, cfg: RunConfig) -> int:
    steps = num_train // cfg.train.batch_size  # drop_last, as in DGCNN: BatchNorm needs full batches
    if cfg.train.max_batches_per_epoch:
        steps = min(steps, cfg.train.max_batches_per_epoch)
    if steps < 1:
        raise ValueError(f"{num_train} training clouds give no full batch of {cfg.train.batch_size}")
    return steps


def rank_order(n_train: int, cfg: RunConfig, ctx: DistContext, epoch: int) -> Tensor:
    """This rank's sample order for ``epoch`` when distributed (``DistributedSampler``: shuffled by
    ``(seed, epoch)``, disjoint across ranks, equal lengths)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n_train), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def rank_step_seed(seed: int, epoch: int, batch: int, ctx: DistContext) -> int:
    """Augmentation / dropout seed of a batch on this rank (rank 0 and single-process runs: :func:`step_seed`)."""
    return (step_seed(seed, epoch, batch) + 7919 * ctx.rank) % (2**62)


def _all_reduce_sums(values: list[float], ctx: DistContext) -> list[float]:
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


class TrainingDiverged(FloatingPointError):
    """A step produced a non-finite loss or gradient; it was not applied."""


@dataclass
class TrainResult:
    out_dir: Path
    best_oa: float
    final: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    model: DGCNN | None = None  # the trained model (every rank's replica when distributed)


def train_augment(cfg: RunConfig) -> TrainAugment:
    """The run's training augmentation from its ``data`` section (the corruption-style terms off by default)."""
    d = cfg.data
    return TrainAugment(
        num_points=d.num_points,
        jitter_sigma=d.jitter_sigma,
        rotate_up=d.rotate_up,
        stretch=d.stretch,
        outliers=d.outliers,
        drop_global=d.drop_global,
        drop_local=d.drop_local,
        corrupt_fraction=d.corrupt_fraction,
    )


def build_model(cfg: RunConfig, num_classes: int) -> DGCNN:
    return create_model(cfg.model.name, **{"num_classes": num_classes, **cfg.model.overrides})


def build_objective(cfg: RunConfig, model: DGCNN, classes: list[str], train_labels: Tensor | None = None) -> nn.Module:
    """Cross-entropy, or distillation from ``cfg.distill.teacher`` when the config has a distill section; the
    cross-entropy weighs classes by ``train.class_weights`` over ``train_labels`` (needed unless that is none)."""
    from ..distill import Distill, Supervised

    d, rule = cfg.distill, cfg.train.class_weights
    if rule != "none" and train_labels is None:
        raise ValueError(f"train.class_weights {rule!r} needs the training labels")
    weight = None if train_labels is None else class_weights(train_labels, len(classes), rule)
    if d is None or not d.needs_teacher:
        return Supervised(cfg.train.label_smoothing, weight, cfg.train.precision)
    if not d.teacher:
        what = f"distill.method {d.preset!r}" if d.terms is None else "distill.terms"
        raise ConfigError(f"{what} needs a teacher checkpoint (--teacher)")
    ckpt = load_checkpoint(d.teacher)
    if list(ckpt["classes"]) != list(classes):
        raise ValueError(f"teacher {d.teacher} was trained on other classes than this data set's")
    return Distill(model_from_checkpoint(ckpt), model, d, cfg.train.label_smoothing, weight, cfg.train.precision)


@dataclass
class _Run:
    """One training run's set-up and its progress (``epoch``, ``batch``: the next step to take)."""

    cfg: RunConfig
    ctx: DistContext
    out_dir: Path
    data: PointCloudSplits
    model: DGCNN
    objective: nn.Module
    train_step: TrainStep
    step_module: nn.Module  # train_step itself, or DDP around it
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    augment: TrainAugment
    n_steps: int  # steps per epoch
    per_rank: int  # clouds per step on this rank
    progress: bool
    log: Callable[[str], None]
    clock: RunClock = field(default_factory=RunClock)  # this sitting's time, stops (SIGSTOP) excluded
    epoch: int = 0
    batch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_oa: float = -1.0
    swa: WeightAverage | None = None  # train.swa_epochs: the running mean of the last epochs' weights

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST

    @property
    def total_steps(self) -> int:
        return self.n_steps * self.cfg.train.epochs

    @property
    def n_train(self) -> int:
        return self.data.train_x.shape[0]


@dataclass
class _EpochSums:
    """Sums over one epoch's clouds on this rank (each term weighted by its batch size)."""

    loss: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0


def train(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    data: PointCloudSplits | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir`` (``last.pt``, ``best.pt``, ``metrics.jsonl``, ``config.yaml``).

    Under torchrun (``WORLD_SIZE > 1``) every rank runs this; see :mod:`.distributed`."""
    ctx = init_distributed(cfg.train.device)
    if not ctx.is_main:
        progress, log = False, lambda *_: None
    run = _set_up(cfg, Path(out_dir), data, resume, ctx, progress, log)
    final: dict[str, Any] = run.history[-1] if run.history else {}
    try:
        while run.epoch < cfg.train.epochs:
            final = _end_epoch(run, _train_epoch(run))
    finally:
        run.clock.close()
    if ctx.is_main:
        for figure in getattr(run.objective, "save_figures", lambda _: [])(run.out_dir):
            log(f"wrote {figure}")
    return TrainResult(run.out_dir, run.best_oa, final, run.history, run.clock.elapsed(), run.model)


def _set_up(
    cfg: RunConfig,
    out_dir: Path,
    data: PointCloudSplits | None,
    resume: bool,
    ctx: DistContext,
    progress: bool,
    log: Callable[[str], None],
) -> _Run:
    """Data, model, objective and optimizer, restored from ``out_dir/last.pt`` when resuming; writes config.yaml."""
    if (out_dir / LAST).exists() and not resume:
        raise FileExistsError(f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose --out")
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    if data is None:
        data = load_modelnet40(
            cfg.data.source, num_points=max(cfg.data.num_points, cfg.data.eval_points), seed=cfg.seed
        )
    torch.manual_seed(cfg.seed)  # weight init
    model = build_model(cfg, data.num_classes).to(ctx.device)
    objective = build_objective(cfg, model, data.classes, data.train_y).to(ctx.device)
    if t.precision == "bf16" and ctx.device.type == "cpu" and not cpu_has_native_bf16():
        log("warning: train.precision bf16 on a CPU without AVX-512 BF16 or AMX: bf16 is emulated, slower than fp32")
    train_step = TrainStep(model, objective)
    step_module = wrap_for_training(train_step, ctx, t.sync_bn)  # train_step itself, or DDP around it
    params = list(model.parameters()) + list(objective.parameters())
    n_train, per_rank = data.train_x.shape[0], local_batch_size(t.batch_size, ctx)
    n_steps = steps_per_epoch(n_train, cfg)
    if ctx.distributed:
        n_steps = min(n_steps, (n_train // ctx.world_size) // per_rank)
    run = _Run(
        cfg,
        ctx,
        out_dir,
        data,
        model,
        objective,
        train_step,
        step_module,
        params,
        torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay),
        train_augment(cfg),
        n_steps,
        per_rank,
        progress,
        log,
    )
    if t.swa_epochs:
        if ctx.distributed:
            raise ConfigError("train.swa_epochs runs in one process only (its BatchNorm pass is not distributed)")
        run.swa = WeightAverage(model)
    if resume and run.last_path.exists():
        _restore(run)
    elif t.init:
        _initialise(run, t.init)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if ctx.distributed:
        log(f"distributed: {ctx.world_size} ranks x {per_rank} clouds per step ({ctx.device})")
    run.clock.start()
    return run


# Model settings that hold no weights: a warm start may change them (e.g. k with the training point count).
WEIGHTLESS = frozenset({"k", "knn_layers", "knn_backend", "edgeconv_impl", "dropout", "description"})


def _initialise(run: _Run, path: str) -> None:
    """A warm start (``train.init``): the model's weights and BatchNorm statistics from ``path``; the optimizer, the
    schedule, the history and the objective start afresh. The model config must match but for :data:`WEIGHTLESS`
    settings (each change is logged)."""
    ckpt = load_checkpoint(path)
    ours = run.model.config.to_dict()
    changed = sorted(
        key for key in set(ours) | set(ckpt["model_config"]) if ours.get(key) != ckpt["model_config"].get(key)
    )
    weighty = [key for key in changed if key not in WEIGHTLESS]
    if weighty:
        raise ValueError(f"train.init {path} holds a different model ({', '.join(weighty)})")
    run.model.load_state_dict(ckpt["state_dict"])
    moved = ", ".join(f"{key} {ckpt['model_config'].get(key)} -> {ours.get(key)}" for key in changed)
    run.log(f"initialised from {path}" + (f" ({moved})" if moved else ""))


def _restore(run: _Run) -> None:
    """Continue from ``last.pt``: weights, the objective's heads and banks, optimizer, position and history."""
    ckpt = load_checkpoint(run.last_path)
    if ckpt["model_config"] != run.model.config.to_dict():
        raise ValueError(f"{run.last_path} holds a different model config than this run's; refusing to resume")
    run.model.load_state_dict(ckpt["state_dict"])
    run.objective.load_state_dict(ckpt.get("objective", {}))
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.epoch, run.batch = ckpt["epoch"], ckpt["batch"]
    run.history, run.best_oa = ckpt.get("history", []), ckpt.get("best_oa", -1.0)
    if run.swa is not None and ckpt.get("swa"):
        run.swa.load_state_dict(ckpt["swa"])
    run.log(f"resuming {run.out_dir} at epoch {run.epoch}, batch {run.batch}")


def _snapshot(run: _Run, next_epoch: int, next_batch: int, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg, history = run.cfg, run.history
    return {
        "model_name": cfg.model.name,
        "model_config": run.model.config.to_dict(),
        "state_dict": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "objective": run.objective.state_dict(),
        "classes": list(run.data.classes),
        "num_points": cfg.data.eval_points,
        "config": cfg.to_dict(),
        "data_source": run.data.source,
        "teacher": cfg.distill.teacher if cfg.distill else None,
        "epoch": next_epoch,
        "batch": next_batch,
        "steps_per_epoch": run.n_steps,
        "train_clouds": run.n_train,
        "history": history,
        "best_oa": run.best_oa,
        "swa": run.swa.state_dict() if run.swa is not None else None,
        "metrics": metrics or (history[-1] if history else {}),
        "pointkd_version": __version__,
    }


def _train_epoch(run: _Run) -> _EpochSums:
    """The rest of epoch ``run.epoch`` from batch ``run.batch``, saving ``last.pt`` every ``checkpoint_minutes``
    and on KeyboardInterrupt (then re-raised)."""
    cfg, ctx, epoch = run.cfg, run.ctx, run.epoch
    run.model.train()
    order = _epoch_order(run, epoch)
    sums = _EpochSums(lr=cosine_lr(epoch * run.n_steps + run.batch, run.total_steps, cfg.train.lr, cfg.train.lr_min))
    last_save = time.monotonic()
    bar = tqdm(
        range(run.batch, run.n_steps),
        desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
        disable=not show_bars(run.progress),
        leave=False,
        mininterval=progress_interval(),
    )
    try:
        for b in bar:
            _train_step(run, order, b, sums)
            shown = {k: f"{v / sums.seen:.3f}" for k, v in sums.terms.items()} if len(sums.terms) > 1 else {}
            bar.set_postfix(
                loss=f"{sums.loss / sums.seen:.3f}",
                **shown,
                acc=f"{sums.correct / sums.seen:.3f}",
                lr=f"{sums.lr:.4f}",
                refresh=False,
            )
            run.batch = b + 1
            due = time.monotonic() - last_save > 60 * cfg.train.checkpoint_minutes
            if ctx.is_main and due and run.batch < run.n_steps:
                save_checkpoint(_snapshot(run, epoch, run.batch), run.last_path)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if ctx.is_main:
            save_checkpoint(_snapshot(run, epoch, run.batch), run.last_path)
            run.log(f"interrupted: saved {run.last_path} at epoch {epoch}, batch {run.batch}; continue with --resume")
        raise
    finally:
        bar.close()
    return sums


def _train_step(run: _Run, order: Tensor, b: int, sums: _EpochSums) -> None:
    """Batch ``b`` of the epoch's ``order``: forward, backward, a finite-gradient check, the SGD step; adds the
    batch to ``sums``."""
    cfg, ctx, epoch, t = run.cfg, run.ctx, run.epoch, run.cfg.train
    lr = cosine_lr(epoch * run.n_steps + b, run.total_steps, t.lr, t.lr_min)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    sel = order[b * run.per_rank : (b + 1) * run.per_rank]
    x = _augmented(run, sel, rank_step_seed(cfg.seed, epoch, b, ctx))
    y = run.data.train_y[sel].to(ctx.device)
    loss, logits = run.step_module(x, y)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # Gradients are all-reduced under DDP, so every rank takes this branch together.
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in run.params if p.grad is not None])
    if not torch.isfinite(grad_norm):
        terms = {k: round(v, 4) for k, v in run.train_step.terms.items()}
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, batch {b + 1}: loss {float(loss.detach()):.4g}, gradient "
            f"norm {float(grad_norm)} (terms {terms}). Nothing of this step was applied; {run.last_path} "
            "holds the last good state. Lower train.lr or the distillation weight (e.g. --lambda)."
        )
    run.optimizer.step()
    if not torch.isfinite(torch.nn.utils.get_total_norm(run.params)):
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, batch {b + 1}: the weights became non-finite "
            f"(learning rate {lr:.3g}). {run.last_path} holds the last good state. Lower train.lr."
        )
    sums.lr = lr
    sums.loss += float(loss.detach()) * len(sel)
    sums.correct += float((logits.argmax(-1) == y).sum())
    sums.seen += len(sel)
    for name, value in run.train_step.terms.items():
        sums.terms[name] = sums.terms.get(name, 0.0) + value * len(sel)


def _end_epoch(run: _Run, sums: _EpochSums) -> dict[str, Any]:
    """Close the epoch: sums over ranks, evaluation when due, history, ``best.pt`` / ``last.pt``, metrics.jsonl and
    the log line (rank 0); returns the epoch's history entry."""
    cfg, ctx, t = run.cfg, run.ctx, run.cfg.train
    run.epoch, run.batch = run.epoch + 1, 0
    names = sorted(sums.terms)
    loss, correct, seen, *totals = _all_reduce_sums(
        [sums.loss, sums.correct, sums.seen, *map(sums.terms.get, names)], ctx
    )
    entry: dict[str, Any] = {
        "epoch": run.epoch,
        "train_loss": loss / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        **{f"train_{k}": v / max(seen, 1) for k, v in zip(names, totals, strict=True)},
        "lr": sums.lr,
        "elapsed_s": run.clock.elapsed(),
        "paused_s": run.clock.paused_s,
    }
    if run.swa is not None and run.epoch > t.epochs - t.swa_epochs:
        _average(run, entry)
    if ctx.is_main and (run.epoch % t.eval_every == 0 or run.epoch == t.epochs):
        data = run.data
        report = evaluate(
            run.model, data.test_x, data.test_y, cfg.data.eval_points, data.num_classes, t.eval_batch_size, run.progress
        )
        entry.update(test_oa=report.oa, test_macc=report.macc)
    run.history.append(entry)
    if ctx.is_main:
        if entry.get("test_oa", -1.0) > run.best_oa:
            run.best_oa = entry["test_oa"]
            save_checkpoint(_snapshot(run, run.epoch, 0, entry), run.out_dir / BEST)
        save_checkpoint(_snapshot(run, run.epoch, 0, entry), run.last_path)
        with open(run.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        run.log(_format_entry(entry, t.epochs))
    barrier(ctx)  # the other ranks wait for rank 0's evaluation and checkpoint
    return entry


def _average(run: _Run, entry: dict[str, Any]) -> None:
    """Add this epoch's weights to the SWA mean; after the last epoch, make the mean the run's model."""
    assert run.swa is not None
    run.swa.add(run.model)
    if run.epoch < run.cfg.train.epochs:
        return
    run.swa.apply(run.model, _bn_batches(run))  # update_bn leaves the model in the mode it found
    entry["swa_models"] = run.swa.count
    run.log(f"SWA: the mean of the last {run.swa.count} epochs' weights, BatchNorm re-estimated over the train split")


def _bn_batches(run: _Run) -> Iterator[Tensor]:
    """One epoch of augmented training batches for SWA's BatchNorm pass, seeded apart from the training epochs."""
    order, n = _epoch_order(run, -1), run.per_rank
    for b in range(run.n_steps):
        yield _augmented(run, order[b * n : (b + 1) * n], step_seed(run.cfg.seed, -1, b))


def _epoch_order(run: _Run, epoch: int) -> Tensor:
    """The training clouds' order in ``epoch`` (this rank's share when distributed), a function of the seed."""
    if run.ctx.distributed:
        return rank_order(run.n_train, run.cfg, run.ctx, epoch)
    generator = torch.Generator().manual_seed(step_seed(run.cfg.seed, epoch, -1))
    return torch.randperm(run.n_train, generator=generator)


def _augmented(run: _Run, sel: Tensor, seed: int) -> Tensor:
    """Training clouds ``sel``, augmented by ``seed``, on the run's device; the forward's dropout seeded by it too."""
    x = run.augment(run.data.train_x[sel], torch.Generator().manual_seed(seed)).to(run.ctx.device)
    torch.manual_seed(seed)  # dropout
    return x


def _format_entry(e: dict[str, Any], epochs: int) -> str:
    s = f"epoch {e['epoch']}/{epochs}  loss {e['train_loss']:.4f}  train acc {e['train_acc'] * 100:.2f} %"
    if "test_oa" in e:
        s += f"  test OA {e['test_oa'] * 100:.2f} %  mAcc {e['test_macc'] * 100:.2f} %"
    return s
