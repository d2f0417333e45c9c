"""``pointkd demo``: the whole pipeline end to end (teacher, LSP student, ONNX + int8, bench, server)."""

from __future__ import annotations

import argparse

from .common import data_arg, set_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline end to end: teacher, LSP student, ONNX + int8, bench, server",
        description="Train a small teacher, distil a student from it with LSP, compile the student to ONNX and "
        "int8, benchmark them, serve the int8 model and classify real test clouds over HTTP, then print the report "
        "paths. Uses the shared ModelNet40 when present, else a generated synthetic set. Every stage resumes: "
        "re-running continues where an interrupted demo stopped.",
    )
    demo.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo)")
    data_arg(demo)
    demo.add_argument("--requests", type=int, default=200, help="test clouds sent to the server (default 200)")
    set_arg(demo, "override a key of both training configs, e.g. --set train.epochs=4 for a longer, better demo")
    demo.add_argument(
        "--shipped",
        action="store_true",
        help="no training: compile, bench and serve the repository's shipped teacher and LSP student "
        "(benchmarks/checkpoints/teacher_tail1024b.pt, student_lsp_fast2_robust.pt; needs ModelNet40)",
    )
    demo.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..demo import run_demo

    report = run_demo(
        args.out,
        data=args.data,
        requests=args.requests,
        progress=not args.no_progress,
        overrides=args.overrides,
        shipped=args.shipped,
    )
    print(f"demo report: {report}")
    return 0
