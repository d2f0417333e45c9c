"""``pointkd data info``: per-split counts per class and checks of a ModelNet40 source."""

from __future__ import annotations

import argparse
import json

from .common import data_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect and check a ModelNet40 source")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    info = data_sub.add_parser("info", help="per-split counts per class, and checks of the data")
    data_arg(info)
    info.add_argument("--num-points", type=int, default=1024, help="points per cloud for mesh/folder sources")
    info.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.data_command != "info":
        parser.parse_args(["data", "--help"])
        return 2
    from ..data.report import data_report, format_data_report

    report = data_report(args.data, num_points=args.num_points)
    print(json.dumps(report, indent=2) if args.json else format_data_report(report))
    return 0 if report["ok"] else 1
