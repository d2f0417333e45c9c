"""``pointkd compile``: a checkpoint to an artifact folder, checking accuracy at every step."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..runtime.formats import ARTIFACT_FORMATS
from .common import data_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    comp = sub.add_parser(
        "compile",
        help="export a checkpoint to an ONNX / int8 / torch-cuda / TensorRT artifact, checking accuracy at every step",
        description="Write an artifact folder (model file + manifest.json) for serving and benchmarks. The ONNX "
        "export must match the torch model on the whole test split (max |Δlogit| <= --atol, identical top-1); "
        "onnx-int8 is calibrated on a stratified training-split set and refused if it loses more than --max-drop "
        "OA points; onnx-fused rewrites each kNN and each EdgeConv's gather + max into fused custom operators "
        "(built with a C++ compiler, copied into the artifact); torch-cuda needs an NVIDIA GPU, trt-* formats "
        "TensorRT and an NVIDIA GPU.",
    )
    comp.add_argument("checkpoint", help="a pointkd checkpoint (.pt)")
    comp.add_argument(
        "--format",
        dest="fmt",
        default="onnx",
        help=" | ".join(f"{name} (default)" if name == "onnx" else name for name in ARTIFACT_FORMATS),
    )
    comp.add_argument(
        "--num-points", type=int, default=None, help="points per cloud the artifact takes (default: the checkpoint's)"
    )
    comp.add_argument("--out", default=None, help="artifact folder (default runs/artifacts/<model>-<format>)")
    data_arg(comp)
    comp.add_argument(
        "--calib-size", type=int, default=1024, help="int8: calibration clouds from the train split (default 1024)"
    )
    comp.add_argument("--calib-seed", type=int, default=0)
    comp.add_argument("--max-drop", type=float, default=1.0, help="int8: largest OA loss in points (default 1.0)")
    comp.add_argument("--atol", type=float, default=1e-4, help="fp32 parity: largest |Δlogit| (default 1e-4)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..checkpoint import load_checkpoint
    from ..export.compile import CompileOptions, compile_checkpoint
    from ..runtime.formats import get_format

    get_format(args.fmt, among=ARTIFACT_FORMATS)  # an unknown --format fails before the checkpoint is read
    out = args.out
    if out is None:
        name = load_checkpoint(args.checkpoint).get("model_name") or Path(args.checkpoint).stem
        out = Path("runs") / "artifacts" / f"{name}-{args.fmt}"
    opts = CompileOptions(
        args.fmt, args.num_points, args.data, args.calib_size, args.calib_seed, args.max_drop, args.atol
    )
    manifest = compile_checkpoint(args.checkpoint, out, opts)
    size = (Path(out) / manifest["model_file"]).stat().st_size
    print(f"wrote {out}/{manifest['model_file']} ({size / 1024:.0f} KiB) and {out}/manifest.json")
    return 0
