"""``pointkd export --to triton|kserve``: compiled ONNX artifacts as a Triton model repository, and a KServe
``InferenceService`` that serves that repository with the Triton runtime.

Each artifact becomes ``DIR/<name>/config.pbtxt``, ``DIR/<name>/1/model.onnx`` (the artifact's model file, byte for
byte), ``DIR/<name>/labels.txt`` (its classes, Triton's classification labels) and, for ``onnx-fused``, the
custom-op library beside them, named in ``model_operations { op_library_filename }`` by the path it will have on the
server (``mount``: where the repository is mounted there, default this folder's absolute path; KServe's
``/mnt/models``). The input and output names, dims and datatypes come from the manifest; the batch dimension is
Triton's (``max_batch_size``) with dynamic batching. Triton answers the model's logits: the softmax and the
preprocessing (:meth:`pointkd.inference.Model.prepare`) are the client's, as the tensor is the model's own input.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..runtime.errors import ExportError
from ..runtime.formats import get_format
from ..runtime.manifest import custom_op_library, read_manifest

KSERVE_MOUNT = "/mnt/models"  # where KServe's storage initializer puts storageUri
DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64"}


def model_name(folder: Path, manifest: dict[str, Any]) -> str:
    """The artifact's Triton model name: its folder's name, with anything but ``[A-Za-z0-9_.-]`` made ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", folder.name) or str((manifest.get("model") or {}).get("name", "model"))


def config_pbtxt(
    name: str, manifest: dict[str, Any], max_batch: int, delay_us: int, library: str | None, instances: int
) -> str:
    """Triton's ``config.pbtxt`` for an artifact (text protobuf of ``inference.ModelConfig``)."""
    inp, out = manifest["input"], manifest["output"]
    in_dims = [int(d) for d in inp["shape"][1:]]
    out_dims = [int(d) for d in out["shape"][1:]]
    lines = [
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch}",
        "input [",
        f'  {{ name: "{inp["name"]}" data_type: {DTYPES[inp["dtype"]]} dims: {in_dims} }}',
        "]",
        "output [",
        f'  {{ name: "{out["name"]}" data_type: {DTYPES[out["dtype"]]} dims: {out_dims}',
        '    label_filename: "labels.txt" }',
        "]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}",
        f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]",
    ]
    if library is not None:
        lines.append(f'model_operations {{ op_library_filename: "{library}" }}')
    return "\n".join(lines) + "\n"


def export_triton(
    artifacts: list[str | os.PathLike],
    out: str | os.PathLike,
    mount: str | None = None,
    max_batch: int = 64,
    delay_us: int = 0,
    instances: int = 1,
) -> list[Path]:
    """Write the Triton model repository of ``artifacts`` (ONNX artifact folders; sha256s checked) into ``out``;
    returns the model folders. Raises :class:`ExportError` for an artifact Triton's ONNX Runtime backend cannot run
    or a name used twice."""
    out = Path(out)
    root = mount if mount is not None else str(out.resolve())
    written: list[Path] = []
    for artifact in map(Path, artifacts):
        m = read_manifest(artifact, verify=True)
        fmt = get_format(m["artifact_format"])
        if fmt.runtime != "onnxruntime":
            raise ExportError(f"{artifact}: {fmt.description} is not an ONNX model; Triton export takes onnx formats")
        name = model_name(artifact, m)
        folder = out / name
        if folder in written:
            raise ExportError(f"two artifacts export as the Triton model {name!r}: rename one folder")
        (folder / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact / m["model_file"], folder / "1" / "model.onnx")
        (folder / "labels.txt").write_text("\n".join(m["classes"]) + "\n")
        library = custom_op_library(artifact, m)
        on_server = None
        if library is not None:
            shutil.copyfile(library, folder / library.name)
            on_server = f"{root.rstrip('/')}/{name}/{library.name}"
        (folder / "config.pbtxt").write_text(config_pbtxt(name, m, max_batch, delay_us, on_server, instances))
        written.append(folder)
    return written


def kserve_manifest(service: str, storage_uri: str) -> str:
    """An ``InferenceService`` (KServe v1beta1) serving the Triton repository at ``storage_uri`` with the Triton
    runtime over the Open Inference Protocol (v2)."""
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": service},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "triton"},
                    "protocolVersion": "v2",
                    "runtime": "kserve-tritonserver",
                    "storageUri": storage_uri,
                }
            }
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)
