"""``pointkd export``: ONNX artifacts as a Triton model repository, or a KServe InferenceService."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "export",
        help="write ONNX artifacts as a Triton model repository, or a KServe InferenceService serving one",
        description="--to triton: DIR/<name>/config.pbtxt, DIR/<name>/1/model.onnx and labels.txt per artifact "
        "(onnx, onnx-int8, onnx-fused with its custom-op library), dynamic batching. --to kserve: the same "
        "repository for KServe's /mnt/models and DIR/inferenceservice.yaml serving it with the Triton runtime (copy "
        "DIR to --storage-uri). Triton answers logits for prepared [B, N, 3] clouds.",
    )
    exp.add_argument("--to", choices=("triton", "kserve"), required=True, dest="target")
    exp.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifact folders written by `pointkd compile`")
    exp.add_argument("--out", required=True, help="the repository folder to write")
    exp.add_argument("--max-batch", type=int, default=64, help="Triton's max_batch_size (default 64)")
    exp.add_argument(
        "--max-delay-us", type=int, default=0, help="dynamic batching's max_queue_delay_microseconds (default 0)"
    )
    exp.add_argument("--instances", type=int, default=1, help="model instances on the CPU (default 1)")
    exp.add_argument(
        "--mount", default=None, help="where the repository sits on the Triton server (default: --out's absolute path)"
    )
    exp.add_argument("--name", default="pointkd", help="the InferenceService's name (kserve)")
    exp.add_argument(
        "--storage-uri", default="pvc://pointkd-models", help="where the repository is stored for KServe (kserve)"
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..export.triton import KSERVE_MOUNT, export_triton, kserve_manifest

    mount = KSERVE_MOUNT if args.target == "kserve" and args.mount is None else args.mount
    folders = export_triton(args.artifacts, args.out, mount, args.max_batch, args.max_delay_us, args.instances)
    for folder in folders:
        print(f"wrote {folder}/config.pbtxt and {folder}/1/model.onnx")
    if args.target == "kserve":
        path = Path(args.out) / "inferenceservice.yaml"
        path.write_text(kserve_manifest(args.name, args.storage_uri))
        print(f"wrote {path}: copy {args.out} to {args.storage_uri}, then kubectl apply -f {path}")
    return 0
