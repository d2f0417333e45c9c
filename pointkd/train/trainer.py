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
from collections.abc import Callable
from dataclasses import dataclass
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
from ..process import progress_interval, show_bars
from .distributed import (
    DistContext,
    TrainStep,
    barrier,
    init_distributed,
    local_batch_size,
    wrap_for_training,
)
from .evaluate import evaluate

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


def build_model(cfg: RunConfig, num_classes: int) -> DGCNN:
    return create_model(cfg.model.name, **{"num_classes": num_classes, **cfg.model.overrides})


def build_objective(cfg: RunConfig, model: DGCNN, classes: list[str]) -> nn.Module:
    """Cross-entropy, or distillation from ``cfg.distill.teacher`` when the config has a distill section."""
    from ..distill import Distill, Supervised

    d = cfg.distill
    if d is None or d.method == "scratch":
        return Supervised(cfg.train.label_smoothing)
    if not d.teacher:
        raise ConfigError(f"distill.method {d.method!r} needs a teacher checkpoint (--teacher)")
    ckpt = load_checkpoint(d.teacher)
    if list(ckpt["classes"]) != list(classes):
        raise ValueError(f"teacher {d.teacher} was trained on other classes than this data set's")
    return Distill(model_from_checkpoint(ckpt), model, d, cfg.train.label_smoothing)


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
    out_dir = Path(out_dir)
    last_path = out_dir / LAST
    if last_path.exists() and not resume:
        raise FileExistsError(f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose --out")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if data is None:
        data = load_modelnet40(
            cfg.data.source, num_points=max(cfg.data.num_points, cfg.data.eval_points), seed=cfg.seed
        )
    torch.manual_seed(cfg.seed)  # weight init
    model = build_model(cfg, data.num_classes).to(ctx.device)
    objective = build_objective(cfg, model, data.classes).to(ctx.device)
    t = cfg.train
    train_step = TrainStep(model, objective)
    step_module = wrap_for_training(train_step, ctx, t.sync_bn)  # train_step itself, or DDP around it
    params = list(model.parameters()) + list(objective.parameters())
    optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    epoch, batch, history, best_oa = 0, 0, [], -1.0
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        if ckpt["model_config"] != model.config.to_dict():
            raise ValueError(f"{last_path} holds a different model config than this run's; refusing to resume")
        model.load_state_dict(ckpt["state_dict"])
        objective.load_state_dict(ckpt.get("objective", {}))
        optimizer.load_state_dict(ckpt["optimizer"])
        epoch, batch = ckpt["epoch"], ckpt["batch"]
        history, best_oa = ckpt.get("history", []), ckpt.get("best_oa", -1.0)
        log(f"resuming {out_dir} at epoch {epoch}, batch {batch}")
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    augment = TrainAugment(
        num_points=cfg.data.num_points, jitter_sigma=cfg.data.jitter_sigma, rotate_up=cfg.data.rotate_up
    )
    n_train = data.train_x.shape[0]
    n_steps = steps_per_epoch(n_train, cfg)
    per_rank = local_batch_size(t.batch_size, ctx)
    if ctx.distributed:
        n_steps = min(n_steps, (n_train // ctx.world_size) // per_rank)
        log(f"distributed: {ctx.world_size} ranks x {per_rank} clouds per step ({ctx.device})")
    total_steps = n_steps * t.epochs
    started = time.perf_counter()

    def snapshot(next_epoch: int, next_batch: int, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "model_name": cfg.model.name,
            "model_config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(),
            "classes": list(data.classes),
            "num_points": cfg.data.eval_points,
            "config": cfg.to_dict(),
            "data_source": data.source,
            "teacher": cfg.distill.teacher if cfg.distill else None,
            "epoch": next_epoch,
            "batch": next_batch,
            "steps_per_epoch": n_steps,
            "train_clouds": n_train,
            "history": history,
            "best_oa": best_oa,
            "metrics": metrics or (history[-1] if history else {}),
            "pointkd_version": __version__,
        }

    final: dict[str, Any] = history[-1] if history else {}
    while epoch < t.epochs:
        model.train()
        if ctx.distributed:
            order = rank_order(n_train, cfg, ctx, epoch)
        else:
            order = torch.randperm(n_train, generator=torch.Generator().manual_seed(step_seed(cfg.seed, epoch, -1)))
        loss_sum = correct = seen = 0.0
        term_sums: dict[str, float] = {}
        last_save = time.monotonic()
        bar = tqdm(
            range(batch, n_steps),
            desc=f"epoch {epoch + 1}/{t.epochs}",
            disable=not show_bars(progress),
            leave=False,
            mininterval=progress_interval(),
        )
        try:
            for b in bar:
                step = epoch * n_steps + b
                lr = cosine_lr(step, total_steps, t.lr, t.lr_min)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                sel = order[b * per_rank : (b + 1) * per_rank]
                seed = rank_step_seed(cfg.seed, epoch, b, ctx)
                x = augment(data.train_x[sel], torch.Generator().manual_seed(seed)).to(ctx.device)
                y = data.train_y[sel].to(ctx.device)
                torch.manual_seed(seed)  # dropout
                loss, logits = step_module(x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # Gradients are all-reduced under DDP, so every rank takes this branch together.
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
                if not torch.isfinite(grad_norm):
                    terms = {k: round(v, 4) for k, v in train_step.terms.items()}
                    raise TrainingDiverged(
                        f"training diverged at epoch {epoch + 1}, batch {b + 1}: loss {float(loss):.4g}, gradient "
                        f"norm {float(grad_norm)} (terms {terms}). Nothing of this step was applied; {last_path} "
                        "holds the last good state. Lower train.lr or the distillation weight (e.g. --lambda)."
                    )
                optimizer.step()
                if not torch.isfinite(torch.nn.utils.get_total_norm(params)):
                    raise TrainingDiverged(
                        f"training diverged at epoch {epoch + 1}, batch {b + 1}: the weights became non-finite "
                        f"(learning rate {lr:.3g}). {last_path} holds the last good state. Lower train.lr."
                    )
                loss_sum += float(loss.detach()) * len(sel)
                correct += float((logits.argmax(-1) == y).sum())
                seen += len(sel)
                for name, value in train_step.terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + value * len(sel)
                shown = {k: f"{v / seen:.3f}" for k, v in term_sums.items()} if len(term_sums) > 1 else {}
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.3f}", **shown, acc=f"{correct / seen:.3f}", lr=f"{lr:.4f}", refresh=False
                )
                batch = b + 1
                if ctx.is_main and time.monotonic() - last_save > 60 * t.checkpoint_minutes and batch < n_steps:
                    save_checkpoint(snapshot(epoch, batch), last_path)
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            if ctx.is_main:
                save_checkpoint(snapshot(epoch, batch), last_path)
                log(f"interrupted: saved {last_path} at epoch {epoch}, batch {batch}; continue with --resume")
            raise
        finally:
            bar.close()
        epoch, batch = epoch + 1, 0
        names = sorted(term_sums)
        loss_sum, correct, seen, *totals = _all_reduce_sums([loss_sum, correct, seen, *map(term_sums.get, names)], ctx)
        term_sums = dict(zip(names, totals, strict=True))
        entry: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "train_acc": correct / max(seen, 1),
            **{f"train_{k}": v / max(seen, 1) for k, v in term_sums.items()},
            "lr": lr,
            "elapsed_s": time.perf_counter() - started,
        }
        if ctx.is_main and (epoch % t.eval_every == 0 or epoch == t.epochs):
            report = evaluate(
                model,
                data.test_x,
                data.test_y,
                cfg.data.eval_points,
                data.num_classes,
                t.eval_batch_size,
                progress,
            )
            entry.update(test_oa=report.oa, test_macc=report.macc)
        history.append(entry)
        final = entry
        if ctx.is_main:
            if entry.get("test_oa", -1.0) > best_oa:
                best_oa = entry["test_oa"]
                save_checkpoint(snapshot(epoch, 0, entry), out_dir / BEST)
            save_checkpoint(snapshot(epoch, 0, entry), last_path)
            with open(out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
            log(_format_entry(entry, t.epochs))
        barrier(ctx)  # the other ranks wait for rank 0's evaluation and checkpoint
    if ctx.is_main:
        for figure in getattr(objective, "save_figures", lambda _: [])(out_dir):
            log(f"wrote {figure}")
    return TrainResult(out_dir, best_oa, final, history, time.perf_counter() - started, model)


def _format_entry(e: dict[str, Any], epochs: int) -> str:
    s = f"epoch {e['epoch']}/{epochs}  loss {e['train_loss']:.4f}  train acc {e['train_acc'] * 100:.2f} %"
    if "test_oa" in e:
        s += f"  test OA {e['test_oa'] * 100:.2f} %  mAcc {e['test_macc'] * 100:.2f} %"
    return s
