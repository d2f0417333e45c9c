"""Flag helpers that several commands share."""

from __future__ import annotations

import argparse

from ..config import PRECISIONS

# the names of pointkd.data.outliers.OUTLIER_FILTERS (a numpy module: not imported to build the parser)
OUTLIER_FILTERS = ("none", "sor")


def data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default=None,
        help="ModelNet40 source: a .npz, the .off mesh tree, modelnet40_ply_hdf5_2048/, a folder of clouds, or "
        "'synthetic'. Default: $POINTKD_DATA, else ../shared/data/modelnet40_1024/modelnet40_1024.npz",
    )


def set_arg(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def run_args(p: argparse.ArgumentParser) -> None:
    data_arg(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="override train.precision: bf16 runs the training forward under bf16 autocast (a 1024-point teacher "
        "step 1.3x (Zen 4) to 1.6x (Zen 5) faster on CPUs with AVX-512 BF16 or AMX; weights, evaluation and "
        "checkpoints stay fp32)",
    )
    set_arg(p, "override any config key, e.g. --set data.num_points=256 --set model.overrides.k=16")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
