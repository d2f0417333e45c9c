"""``pointkd slim``: a small release copy of a checkpoint (fp16, no optimizer), optionally re-graphed."""

from __future__ import annotations

import argparse

from .common import data_arg
from .eval import eval_k, evaluate_checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    slim = sub.add_parser(
        "slim",
        help="write a small release copy of a checkpoint (fp16 weights, no optimizer)",
        description="A release copy of a checkpoint: fp16 weights, no optimizer or RNG state. With --knn-layers, "
        "only the named EdgeConvs build kNN graphs and the others reuse the last one (the same weights, fewer "
        "N x N distance matrices): e.g. pointkd slim runs/lsp/best.pt runs/lsp/g02.pt --knn-layers 0,2 --eval",
    )
    slim.add_argument("checkpoint", help="a pointkd checkpoint (.pt)")
    slim.add_argument("output", help="where to write the copy (.pt)")
    slim.add_argument("--fp32", action="store_true", help="keep float32 weights")
    slim.add_argument(
        "--knn-layers",
        metavar="0,2",
        help="comma-separated EdgeConv layers that build a kNN graph (layer 0 always does; 'all': every layer); "
        "the others reuse the previous layer's graph: fewer N x N distance matrices, so faster, with the same "
        "weights. Measure the accuracy after (--eval, or pointkd eval); benchmarks/results/graph_reuse.md measured "
        "trained students",
    )
    slim.add_argument(
        "--eval",
        action="store_true",
        help="with --knn-layers: measure the new model on the test split (--data) and record its test OA and mAcc "
        "in the copy, as training records them",
    )
    data_arg(slim)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..checkpoint import load_checkpoint, regraph_checkpoint, save_checkpoint, slim_checkpoint

    if args.eval and args.knn_layers is None:
        parser.error("--eval measures a re-graphed copy: give --knn-layers too")
    ckpt = load_checkpoint(args.checkpoint)
    if args.knn_layers is not None:
        ckpt = regraph_checkpoint(ckpt, parse_knn_layers(args.knn_layers, parser))
    ckpt = slim_checkpoint(ckpt, half=not args.fp32)
    if args.eval:
        ckpt = evaluated_copy(ckpt, args.data)
    path = save_checkpoint(ckpt, args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.knn_layers is not None:
        layers = ckpt["model_config"]["knn_layers"]
        hint = "" if args.eval else f"; measure it: pointkd eval {path}"
        print(f"graphs built at layers {'all' if layers is None else layers}{hint}")
    return 0


def evaluated_copy(ckpt: dict, data_source: str | None) -> dict:
    """``ckpt`` with its test OA and mAcc measured now (at its points, ``eval --k auto``), as training records them."""
    num_points = int(ckpt.get("num_points") or 1024)
    k = eval_k("auto", ckpt, num_points)
    report, data = evaluate_checkpoint(ckpt, data_source, num_points, k)
    print(f"OA {report.oa * 100:.2f} %  mAcc {report.macc * 100:.2f} %  ({num_points} points, k = {k})")
    metrics = {**ckpt.get("metrics", {}), "test_oa": report.oa, "test_macc": report.macc}
    derived = {**ckpt.get("derived", {}), "evaluated": {"data": data.source, "num_points": num_points, "k": k}}
    return {**ckpt, "metrics": metrics, "derived": derived}


def parse_knn_layers(text: str, parser: argparse.ArgumentParser) -> list[int] | None:
    """``--knn-layers``: ``all`` or comma-separated layer numbers (0-based)."""
    if text.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--knn-layers takes comma-separated layer numbers or 'all', got {text!r}")
