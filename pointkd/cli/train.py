"""``pointkd train``: train a registered model (supervised); the run that ``distill`` shares."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .common import run_args

# run_args' shorthand flags and the config keys they override
FLAG_KEYS = {
    "epochs": "train.epochs",
    "threads": "train.threads",
    "precision": "train.precision",
    "data": "data.source",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a model (supervised)",
        description="Train a registered model on ModelNet40. Writes last.pt (resumable), best.pt, metrics.jsonl "
        "and config.yaml to --out. Shipped configs: teacher_paper (GPU recipe), teacher_cpu, student_cpu, "
        "quickstart. Runs on N processes with `torchrun --nproc_per_node=N -m pointkd train ...` (DDP: gloo on "
        "CPU, nccl on CUDA; train.batch_size is the global batch; --set train.sync_bn=true on CUDA).",
    )
    train.add_argument("--config", default=None, help="shipped config name or YAML path (default: teacher_cpu)")
    train.add_argument("--model", default=None, help="registered model name (overrides the config's model)")
    run_args(train)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return run_training(args, "teacher_cpu", [f"model.name={args.model}"] if args.model else [])


def run_training(args: argparse.Namespace, default_config: str, overrides: list[str]) -> int:
    from ..config import load_config
    from ..train import train

    overrides = overrides + list(args.overrides)
    for flag, key in FLAG_KEYS.items():
        if getattr(args, flag):
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_config(args.config or default_config, overrides)
    out = Path(args.out or Path("runs") / (cfg.name or cfg.model.name))
    result = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone reports
        print(f"best test OA {result.best_oa * 100:.2f} % in {result.seconds / 60:.1f} min; checkpoints in {out}")
    from ..train.distributed import shutdown_distributed

    shutdown_distributed()
    return 0
