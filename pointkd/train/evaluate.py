"""Evaluate a classifier on a split: predictions in batches, metrics, a per-class table and a confusion PNG."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.transforms import fixed_subset
from ..process import progress_interval, show_bars
from .metrics import ClassificationReport


@torch.inference_mode()
def predict(model: nn.Module, clouds: Tensor, num_points: int, batch_size: int = 64, progress: bool = False) -> Tensor:
    """Logits ``[M, num_classes]`` for ``clouds`` ``[M, P, 3]``, each reduced to a fixed ``num_points`` subset."""
    from tqdm import tqdm  # here, so that inference needs no tqdm (benchmarks/gpu_check.py runs on torch alone)

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in tqdm(
        range(0, clouds.shape[0], batch_size),
        desc="eval",
        disable=not show_bars(progress),
        leave=False,
        mininterval=progress_interval(),
    ):
        out.append(model(fixed_subset(clouds[start : start + batch_size], num_points).to(device)).cpu())
    model.train(was_training)
    return torch.cat(out)


VOTE_SCALE = (0.85, 1.15)  # the anisotropic scaling range of the usual DGCNN / PAConv voting evaluation


def vote_scales(votes: int, clouds: int, seed: int = 0) -> Tensor:
    """Per-axis scale factors ``[votes, clouds, 1, 3]`` for test-time voting: vote 0 is the cloud itself (all ones),
    every other vote draws each axis from :data:`VOTE_SCALE`, seeded, independent of the batch size."""
    gen = torch.Generator().manual_seed(seed)
    low, high = VOTE_SCALE
    drawn = low + (high - low) * torch.rand(votes - 1, clouds, 1, 3, generator=gen)
    return torch.cat([torch.ones(1, clouds, 1, 3), drawn])


@torch.inference_mode()
def predict_votes(
    model: nn.Module, clouds: Tensor, num_points: int, votes: int, batch_size: int = 64, seed: int = 0
) -> Tensor:
    """Class probabilities ``[votes, M, num_classes]`` of each of ``votes`` copies of each cloud, anisotropically
    scaled by :func:`vote_scales` (copy 0 is the cloud itself, so ``[0]`` is the single-pass prediction)."""
    if votes < 1:
        raise ValueError(f"votes must be at least 1, got {votes}")
    subset = fixed_subset(clouds, num_points)
    scales = vote_scales(votes, subset.shape[0], seed)
    return torch.stack(
        [predict(model, subset * scales[v].to(subset.device), num_points, batch_size).softmax(-1) for v in range(votes)]
    )


def predict_voting(
    model: nn.Module, clouds: Tensor, num_points: int, votes: int, batch_size: int = 64, seed: int = 0
) -> Tensor:
    """Class probabilities ``[M, num_classes]`` averaged over ``votes`` anisotropically scaled copies of each cloud
    (test-time voting, as the DGCNN literature reports it beside the single-pass figure)."""
    return predict_votes(model, clouds, num_points, votes, batch_size, seed).mean(0)


def evaluate(
    model: nn.Module,
    clouds: Tensor,
    labels: Tensor,
    num_points: int,
    num_classes: int,
    batch_size: int = 64,
    progress: bool = False,
    votes: int = 1,
) -> ClassificationReport:
    """Metrics of ``model`` on ``clouds`` ``[M, P, 3]`` / ``labels`` ``[M]``; ``votes`` > 1: test-time voting."""
    if votes == 1:
        pred = predict(model, clouds, num_points, batch_size, progress).argmax(-1)
    else:
        pred = predict_voting(model, clouds, num_points, votes, batch_size).argmax(-1)
    return ClassificationReport.from_predictions(pred, labels, num_classes)


def per_class_table(report: ClassificationReport, classes: list[str]) -> str:
    """Markdown table: class, test clouds, correct, accuracy."""
    rows = ["| class | clouds | correct | accuracy |", "| --- | ---: | ---: | ---: |"]
    diag = report.confusion.diagonal().tolist()
    for name, n, c, acc in zip(classes, report.support, diag, report.per_class, strict=True):
        rows.append(f"| {name} | {n} | {c} | {acc * 100:.1f} % |" if n else f"| {name} | 0 | 0 | – |")
    rows.append(
        f"| **all** | {sum(report.support)} | {sum(diag)} "
        f"| OA {report.oa * 100:.2f} %, mAcc {report.macc * 100:.2f} % |"
    )
    return "\n".join(rows)


def plot_confusion(report: ClassificationReport, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG."""
    from ..plotting import heatmap, save_png

    cm = report.confusion.double()
    norm = cm / cm.sum(1, keepdim=True).clamp_min(1)
    size = max(6.0, 0.28 * len(classes) + 2)
    title = title or f"OA {report.oa * 100:.2f} %  mAcc {report.macc * 100:.2f} %"
    fig = heatmap(norm.numpy(), classes, classes, "predicted", "true", title, (size, size), tick_fontsize=7)
    return save_png(fig, path)
