"""``pointkd eval``: a checkpoint on the test split, or a checkpoint or artifact under ModelNet-C."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .common import OUTLIER_FILTERS, data_arg

if TYPE_CHECKING:
    from ..data import PointCloudSplits
    from ..models import DGCNN
    from ..train.metrics import ClassificationReport


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on the test split (with --corruptions: a checkpoint or artifact under ModelNet-C)",
        description="Overall accuracy, mean class accuracy, a per-class table and a confusion-matrix PNG. With "
        "--corruptions: OA under the seven ModelNet-C corruptions at 5 levels each (regenerated from the test split, "
        "pointkd.data.corruptions), every cloud prepared as a served upload, and mOA, mCE and RmCE against the "
        "published DGCNN (and --reference models); writes robustness.json and robustness.md.",
    )
    ev.add_argument(
        "checkpoint", help="a pointkd checkpoint (.pt), or with --corruptions an artifact folder (pointkd compile)"
    )
    data_arg(ev)
    ev.add_argument("--num-points", type=int, default=None, help="points per cloud (default: the checkpoint's)")
    ev.add_argument(
        "--k",
        default="auto",
        help="neighbours per kNN graph: an int, or auto (default): the trained k scaled by test / training points",
    )
    ev.add_argument("--out", default=None, help="folder for metrics.json, per_class.md, confusion.png")
    ev.add_argument(
        "--votes",
        type=int,
        default=1,
        help="test-time voting: average the probabilities of the cloud and N-1 copies scaled per axis by 0.85-1.15 "
        "(seeded); reported as its own figure, never a model's headline (default 1: no voting)",
    )
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--no-progress", action="store_true")
    ev.add_argument("--corruptions", action="store_true", help="evaluate under the ModelNet-C corruptions")
    ev.add_argument(
        "--corruption-samples",
        type=int,
        default=None,
        metavar="M",
        help="--corruptions on a seeded random M of the test clouds (default: all 2,468: 36 passes over them)",
    )
    ev.add_argument("--corruption-seed", type=int, default=0, help="seeds the corruptions and the sample (default 0)")
    ev.add_argument(
        "--outlier-filter",
        choices=OUTLIER_FILTERS,
        default="none",
        help="remove outliers before normalising each cloud, as pointkd serve --outlier-filter (default none)",
    )
    ev.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME=robustness.json",
        help="also score mCE / RmCE against another model's --corruptions result, e.g. teacher=runs/t/robustness.json",
    )
    ev.add_argument("--threads", type=int, default=0, help="CPU threads of the model (default 0: the runtime's)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..checkpoint import load_checkpoint
    from ..train import per_class_table, plot_confusion

    if args.corruptions:
        return eval_corruptions(args, parser)
    if Path(args.checkpoint).is_dir():
        raise ValueError("an artifact folder is evaluated with --corruptions (its clean OA is in its manifest)")

    ckpt = load_checkpoint(args.checkpoint)
    num_points = args.num_points or ckpt.get("num_points", 1024)
    k = eval_k(args.k, ckpt, num_points)
    if args.votes < 1:
        parser.error(f"--votes must be at least 1, got {args.votes}")
    report, data = evaluate_checkpoint(
        ckpt, args.data, num_points, k, args.batch_size, not args.no_progress, votes=args.votes
    )
    print(per_class_table(report, data.classes))
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "checkpoint": str(args.checkpoint),
        "data": data.source,
        "num_points": num_points,
        "k": k,
        "votes": args.votes,
        "oa": report.oa,
        "macc": report.macc,
        "per_class": dict(zip(data.classes, report.per_class, strict=True)),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "per_class.md").write_text(per_class_table(report, data.classes) + "\n")
    png = plot_confusion(report, data.classes, out / "confusion.png")
    print(
        f"OA {report.oa * 100:.2f} %  mAcc {report.macc * 100:.2f} %  ({num_points} points, k = {k}"
        f"{f', {args.votes} votes' if args.votes > 1 else ''}); wrote {out}/ ({png.name})"
    )
    return 0


def eval_corruptions(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``pointkd eval --corruptions``: see :mod:`pointkd.bench.robustness`."""
    from ..bench.robustness import evaluate_corruptions, sample_indices, with_reference, write_robustness
    from ..data import load_modelnet40

    references = {}
    for item in args.reference:
        name, sep, path = item.partition("=")
        if not sep or not name:
            parser.error(f"--reference takes NAME=robustness.json, got {item!r}")
        references[name] = json.loads(Path(path).read_text())
    run, num_points, classes, label = corruption_runner(args)
    # ModelNet-C corrupts 1024-point clouds (dropout_local removes up to 500): sources that sample, at least that
    data = load_modelnet40(args.data, num_points=max(num_points, 1024))
    if list(data.classes) != list(classes):
        raise ValueError(f"the data's classes differ from the model's ({len(data.classes)} vs {len(classes)})")
    idx = sample_indices(len(data.test_y), args.corruption_samples, args.corruption_seed)
    result = evaluate_corruptions(
        run,
        data.test_x.numpy()[idx],
        data.test_y.numpy()[idx],
        num_points,
        indices=idx,
        seed=args.corruption_seed,
        outliers=args.outlier_filter,
        batch_size=args.batch_size,
        log=None if args.no_progress else print,
    )
    result = {"model": str(args.checkpoint), "runs_as": label, "data": data.source, **result}
    for name, ref in references.items():
        result = with_reference(result, name, ref)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    write_robustness(out, result, f"ModelNet-C (regenerated): {Path(args.checkpoint).name} as {label}")
    s = result["scores"]
    vs = "".join(f"; vs {n}: mCE {v['mCE']:.3f}" for n, v in result.get("scores_vs", {}).items())
    print(
        f"clean OA {result['clean_oa'] * 100:.2f} %  mOA {s['mOA'] * 100:.2f} %  mCE {s['mCE']:.3f}  "
        f"RmCE {s['RmCE']:.3f}{vs} ({result['clouds']} clouds, {result['seconds']:.0f} s); wrote {out}/robustness.*"
    )
    return 0


def corruption_runner(args: argparse.Namespace):
    """``(run, num_points, classes, label)`` for ``args.checkpoint``: a checkpoint run by torch at ``--k`` (default
    auto), or an artifact folder run as its format."""
    import numpy as np
    import torch

    path = Path(args.checkpoint)
    if path.is_dir():
        from ..runtime.runner import open_artifact

        art = open_artifact(path, threads=args.threads)
        return art.run, int(art.manifest["input"]["num_points"]), art.manifest["classes"], art.format.name
    from ..checkpoint import load_checkpoint, model_from_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(path)
    num_points = args.num_points or int(ckpt.get("num_points") or 1024)
    model = model_from_checkpoint(ckpt).float().eval()
    model.set_k(eval_k(args.k, ckpt, num_points))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    return run, num_points, ckpt["classes"], "torch"


def eval_k(choice: str, ckpt: dict, num_points: int) -> int:
    """``--k``: an int as given, or ``auto``: the checkpoint's k scaled from its training points to ``num_points``."""
    from ..models.dgcnn import scaled_k

    k = int(ckpt["model_config"]["k"])
    if choice == "auto":
        trained = int(
            (ckpt.get("config") or {}).get("data", {}).get("num_points") or ckpt.get("num_points", num_points)
        )
        return scaled_k(k, trained, num_points)
    if not choice.isdigit() or int(choice) < 1:
        raise ValueError(f"--k must be a positive integer or auto, got {choice!r}")
    return int(choice)


def eval_model(ckpt: dict, num_points: int, choice: str = "auto") -> DGCNN:
    """``ckpt``'s model set up to classify clouds of ``num_points`` with ``--k`` ``choice`` (:func:`eval_k`)."""
    from ..checkpoint import model_from_checkpoint

    model = model_from_checkpoint(ckpt)
    model.set_k(eval_k(choice, ckpt, num_points))
    return model


def evaluate_checkpoint(
    ckpt: dict,
    data_source: str | None,
    num_points: int,
    k: int,
    batch_size: int = 64,
    progress: bool = False,
    votes: int = 1,
) -> tuple[ClassificationReport, PointCloudSplits]:
    """``(report, data)``: ``ckpt``'s model with ``k`` neighbours on the test split at ``num_points``; a ValueError
    when the data's classes are not the checkpoint's."""
    from ..checkpoint import model_from_checkpoint
    from ..data import load_modelnet40
    from ..train import evaluate

    data = load_modelnet40(data_source, num_points=num_points)
    if list(data.classes) != list(ckpt["classes"]):
        raise ValueError(
            f"the data's classes differ from the checkpoint's ({len(data.classes)} vs {len(ckpt['classes'])})"
        )
    model = model_from_checkpoint(ckpt)
    model.set_k(k)
    report = evaluate(model, data.test_x, data.test_y, num_points, data.num_classes, batch_size, progress, votes)
    return report, data
