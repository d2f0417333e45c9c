"""``pointkd select``: the most accurate benchmarked model within a latency budget, and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import OUTLIER_FILTERS


def add_parser(sub: argparse._SubParsersAction) -> None:
    sel = sub.add_parser(
        "select",
        help="pick the most accurate benchmarked model within a latency budget, and say why",
        description="Reads a `pointkd bench` report and picks, among the rows that ran and were validated, the "
        "most accurate one whose latency (default p95 at batch 1) meets --budget-ms; prints every candidate with "
        "the reason it won or lost. Exit status 1 when none meets the budget.",
    )
    sel.add_argument("--budget-ms", type=float, required=True, help="latency budget in ms")
    sel.add_argument("--device-report", required=True, help="a bench.json (or the folder holding it)")
    sel.add_argument("--metric", default="p95", choices=("p50", "p95", "p99"), help="latency percentile (p95)")
    sel.add_argument("--threads", type=int, default=None, help="thread count to judge (default: the most measured)")
    sel.add_argument(
        "--models", nargs="+", default=None, metavar="LABEL", help="choose only among these models (e.g. the students)"
    )
    sel.add_argument(
        "--max-mce",
        type=float,
        default=None,
        help="a robustness floor: only rows whose ModelNet-C mCE (vs DGCNN, from --robustness) is at most this; a "
        "row never measured under corruption is not eligible",
    )
    sel.add_argument(
        "--robustness",
        default="benchmarks/results/robustness.json",
        help="the robustness report --max-mce reads (benchmarks/robustness.py; default %(default)s)",
    )
    sel.add_argument(
        "--outlier-filter", default="none", choices=OUTLIER_FILTERS, help="the served filter its mCE is read for"
    )
    sel.add_argument("--json", action="store_true", help="print the chosen row as JSON")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from dataclasses import asdict

    from ..bench import read_report, select_model
    from ..bench.select import mce_index

    _, rows = read_report(args.device_report)
    mce = None
    if args.max_mce is not None:
        path = Path(args.robustness)
        if not path.is_file():
            parser.error(f"--max-mce needs a robustness report: {path} does not exist (benchmarks/robustness.py)")
        mce = mce_index(json.loads(path.read_text()), args.outlier_filter)
    metric = f"{args.metric}_ms"
    selection = select_model(rows, args.budget_ms, metric, args.threads, args.models, mce, args.max_mce)
    if args.json:
        print(json.dumps(asdict(selection.chosen) if selection.chosen else None, indent=2))
    else:
        print(selection.explain())
    return 0 if selection.chosen is not None else 1
