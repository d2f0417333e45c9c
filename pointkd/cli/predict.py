"""``pointkd predict``: classify cloud files with a checkpoint or an artifact, without a server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    pred = sub.add_parser(
        "predict",
        help="classify cloud files with a checkpoint or an artifact, without a server",
        description="Classify clouds: one line a cloud (file, class, probability) and a per-class count at the "
        "end. Each file is read and prepared exactly as the server prepares an upload (centred, scaled to the unit "
        "sphere, resampled to the model's point count; send clouds z-up, as ModelNet40). An unreadable file is "
        "reported with its reason and the rest go on; the exit status is 1 only when nothing could be classified.",
    )
    pred.add_argument("model", help="an artifact folder written by `pointkd compile`, or a .pt checkpoint")
    pred.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="cloud files (.ply .pcd .xyz .pts .txt .off .npy), folders (searched recursively) or glob patterns "
        "(quote them for ** )",
    )
    pred.add_argument("--top-k", type=int, default=1, help="classes shown per cloud (default 1)")
    rows = pred.add_mutually_exclusive_group()
    rows.add_argument("--jsonl", default=None, metavar="OUT", help="also write one JSON object a file to OUT")
    rows.add_argument("--csv", default=None, metavar="OUT", help="also write one CSV row a file to OUT")
    pred.add_argument("--batch-size", type=int, default=32, help="clouds per model call (default 32)")
    pred.add_argument("--threads", type=int, default=0, help="runtime CPU threads (default 0: one per core)")
    pred.add_argument("--no-progress", action="store_true", help="no progress report on stderr")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..classify import RowWriter, run_predict
    from ..inference import find_clouds, load

    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be at least 1")
    files, missing = find_clouds(args.sources)
    model = load(args.model, threads=args.threads)
    top_k = min(args.top_k, len(model.classes))
    target, kind = (args.jsonl, "jsonl") if args.jsonl else (args.csv, "csv")
    rows = RowWriter(Path(target), kind, top_k) if target else None
    try:
        outcome = run_predict(model, files, missing, top_k, args.batch_size, rows, progress=not args.no_progress)
    finally:
        if rows is not None:
            rows.close()
    if not outcome.predictions:
        print(
            f"pointkd predict: error: no cloud could be classified ({len(outcome.failures)} unreadable)",
            file=sys.stderr,
        )
        return 1
    return 0
