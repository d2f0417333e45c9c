"""The ``pointkd`` command line: one module per command, each with ``add_parser(sub)`` (its flags) and
``run(args, parser)`` (its code). Heavy imports happen inside ``run``, after jemalloc is set up, so that building
the parser (``pointkd --help``) imports no torch."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from . import bench, campaign, data, demo, distill, export, models, predict, select, serve, slim, train
from . import compile as compile_
from . import eval as eval_

# the commands in the order ``pointkd --help`` lists them
COMMANDS = {
    "data": data,
    "train": train,
    "distill": distill,
    "eval": eval_,
    "slim": slim,
    "models": models,
    "serve": serve,
    "predict": predict,
    "export": export,
    "compile": compile_,
    "bench": bench,
    "select": select,
    "demo": demo,
    "campaign": campaign,
}
LONG_RUNNING = {"train", "eval", "distill", "bench", "compile", "demo"}
TORCH_FREE = {"predict", "export"}  # commands that import torch only when their model is a checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pointkd",
        description="Train DGCNN teachers on ModelNet40, distil them into small students with LSP, "
        "compile and serve them.",
    )
    parser.add_argument("--version", action="version", version=f"pointkd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if from_shell and args.command in LONG_RUNNING:
        from ..process import reexec_with_jemalloc

        reexec_with_jemalloc()
    if from_shell and args.command in LONG_RUNNING | {"campaign"}:
        from ..process import stop_on_signals

        stop_on_signals()
    try:
        return COMMANDS[args.command].run(args, parser)
    except handled_errors(args.command) as e:
        if os.environ.get("POINTKD_DEBUG"):
            raise
        print(f"pointkd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pointkd {args.command}: interrupted", file=sys.stderr)
        return 130


def handled_errors(command: str) -> tuple[type[BaseException], ...]:
    """The errors a command reports in one line (exit status 2) rather than as a traceback. The torch-free commands
    (:data:`TORCH_FREE`) do not import the trainer, the checkpoint module or the campaign runner to name theirs."""
    from ..runtime.errors import ExportError, RuntimeUnavailable

    light = (ExportError, RuntimeUnavailable, FileExistsError, FileNotFoundError, KeyError, TypeError, ValueError)
    if command in TORCH_FREE:
        return light  # DataError, CheckpointError, ManifestError and ConfigError are ValueErrors
    from ..campaign.runner import CampaignError
    from ..train.trainer import TrainingDiverged

    return (*light, CampaignError, TrainingDiverged)
