"""``pointkd bench``: a latency / accuracy report per model and format on this device."""

from __future__ import annotations

import argparse

from ..runtime.formats import FORMAT_NAMES
from .common import data_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="latency / accuracy report per model and format on this device",
        description="One row per (model, format, threads): status (✅ ran and validated, ❎ exported but an "
        "accuracy check failed, ❌ failed or unavailable, with the reason), file size, parameters, OA / mAcc on the "
        "test split, p50/p95/p99 ms at batch 1, clouds/s at batch 32 and peak memory, each (model, format) in a "
        "fresh process on the same clouds. Checkpoints are compiled to each format first (cached); artifact "
        "folders run in their own format. Writes OUT/<device-id>/bench.{json,md,png}.",
    )
    bench.add_argument("sources", nargs="+", metavar="CKPT_OR_ARTIFACT", help="checkpoints (.pt) or artifact folders")
    bench.add_argument(
        "--formats",
        default=",".join(FORMAT_NAMES),
        help="comma-separated formats for checkpoints (default: all; torch-cuda runs eagerly, torch-cuda-graphs "
        "through CUDA graphs; GPU rows say why they cannot run here)",
    )
    bench.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts (default 1,2)")
    bench.add_argument("--out", default="runs/bench", help="results root (default runs/bench)")
    data_arg(bench)
    bench.add_argument("--num-points", type=int, default=None, help="points per cloud (default: each model's own)")
    bench.add_argument("--repeats", type=int, default=200, help="timed batch-1 runs per thread count (default 200)")
    bench.add_argument(
        "--max-seconds", type=float, default=20.0, help="cap on one thread count's batch-1 runs (default 20 s)"
    )
    bench.add_argument("--calib-size", type=int, default=1024, help="int8 calibration clouds (default 1024)")
    bench.add_argument("--max-drop", type=float, default=1.0, help="int8: largest OA loss in points (default 1.0)")
    bench.add_argument(
        "--add",
        action="store_true",
        help="add the rows to OUT/<device-id>/bench.json (rows of the same model and format are replaced, the "
        "others kept; its settings must match): one report from several shorter runs",
    )
    bench.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..bench import BenchOptions, run_bench

    opts = BenchOptions(
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        threads=_int_list(args.threads, "--threads"),
        data=args.data,
        num_points=args.num_points,
        repeats=args.repeats,
        max_seconds=args.max_seconds,
        calib_size=args.calib_size,
        max_drop=args.max_drop,
        add=args.add,
        progress=not args.no_progress,
    )
    paths, rows = run_bench(args.sources, args.out, opts)
    print(paths["md"].read_text())
    print(f"wrote {paths['md']}, {paths['json'].name} and {paths['png'].name}")
    return 0 if any(r.status == "ok" for r in rows) else 1


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{what} is empty")
    return values
