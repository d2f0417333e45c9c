"""``pointkd distill``: train a student against a frozen teacher with the loss registry's terms."""

from __future__ import annotations

import argparse

from ..config import KERNELS, SIGMA_RULES, DistillSection
from .common import run_args
from .train import run_training


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = DistillSection  # the defaults its help names
    distill = sub.add_parser(
        "distill",
        help="distil a trained teacher into a student (LSP, KD, FitNet, AT, HKD, layer attention)",
        description="Train a student against a frozen teacher checkpoint. The objective is a weighted sum of "
        "registered losses: a --method preset (scratch, kd, fitnet, at, lsp, lsp+kd, hkd, hkd+kd, layer_attention; "
        "--list-methods shows what each expands to), or a config's distill.terms (pointkd/configs/"
        "distill_terms.yaml). Shipped configs: distill_cpu (CPU budget), distill_paper (the paper's protocol), "
        "distill_terms. Writes the same run folder as `train`. Runs under `torchrun --nproc_per_node=N -m pointkd "
        "distill ...` too (DDP).",
    )
    distill.add_argument("--teacher", default=None, help="the teacher's checkpoint (required unless --method scratch)")
    distill.add_argument("--student", default=None, help="registered student model (default: the config's)")
    distill.add_argument("--config", default=None, help="shipped config name or YAML path (default: distill_cpu)")
    distill.add_argument("--method", default=None, help="a preset of the loss registry (see --list-methods)")
    distill.add_argument(
        "--list-methods", action="store_true", help="list the presets with the terms each expands to, and exit"
    )
    distill.add_argument(
        "--kernel",
        default=None,
        help="LSP kernel: " + " | ".join(f"{k} (default)" if k == d.kernel else k for k in KERNELS),
    )
    distill.add_argument(
        "--lambda", dest="lsp_lambda", type=float, default=None, help=f"LSP weight λ (default {d.lsp_lambda:g})"
    )
    distill.add_argument(
        "--sigma", type=float, default=None, help=f"RBF bandwidth σ under --sigma-rule fixed (default {d.sigma:g})"
    )
    distill.add_argument(
        "--sigma-rule",
        choices=SIGMA_RULES,
        default=None,
        help="fixed: one σ for every layer (the paper's, default); median: σ per layer pair and step = the median "
        "teacher distance over the compared edges, so deep layers, whose features lie far apart, keep a "
        "neighbour structure to match (benchmarks/results/lsp_target_shape.md)",
    )
    distill.add_argument("--kd-alpha", type=float, default=None, help=f"KD weight α (default {d.kd_alpha:g})")
    distill.add_argument(
        "--kd-temperature", type=float, default=None, help=f"KD temperature T (default {d.kd_temperature:g})"
    )
    run_args(distill)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.list_methods:
        print(list_methods())
        return 0
    return run_training(args, "distill_cpu", distill_overrides(args))


def distill_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides that the distill flags given stand for."""
    flags = {
        "teacher": "distill.teacher",
        "student": "model.name",
        "method": "distill.method",
        "kernel": "distill.kernel",
        "lsp_lambda": "distill.lsp_lambda",
        "sigma": "distill.sigma",
        "sigma_rule": "distill.sigma_rule",
        "kd_alpha": "distill.kd_alpha",
        "kd_temperature": "distill.kd_temperature",
    }
    return [f"{key}={getattr(args, flag)}" for flag, key in flags.items() if getattr(args, flag) is not None]


def list_methods() -> str:
    """The ``distill.method`` presets of the registry, each with its doc line and its terms at the defaults."""
    from ..distill import PRESETS

    lines = []
    for name, expand in PRESETS.items():
        doc = " ".join((expand.__doc__ or "").split("\n\n")[0].split())
        terms = ", ".join(f"{t['weight']:g}·{t['loss']}" for t in expand(DistillSection(method=name)))
        lines.append(f"{name:<16} {terms:<32} {doc}")
    return "\n".join(lines)
