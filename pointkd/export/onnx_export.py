"""ONNX export of a trained DGCNN: the rewritten inference form (default) or the model as trained (``naive``).

The graph has one input ``points [batch, N, 3]`` (float32, dynamic batch axis, fixed N) and one output
``logits [batch, num_classes]``. The dynamo exporter (``torch.onnx.export(dynamo=True)``, which needs onnxscript) is
used; ``k`` of every TopK is a constant initializer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..models import DGCNN
from ..runtime.errors import ExportError
from .deploy_model import DeployDGCNN

OPSET = 18
# Bumped whenever the exported graph changes, so cached artifacts of an older export are rebuilt (2: seeded TopK).
EXPORT_REVISION = 2
INPUT_NAME = "points"
OUTPUT_NAME = "logits"


@dataclasses.dataclass
class KnnNodes:
    """Where one kNN graph sits in an exported ONNX model."""

    score: str | None  # the MatMul / Gemm node computing the scores (None if the TopK reads something else)
    indices: str  # the tensor of neighbour indices [B, N, k] the layer gathers with


def knn_nodes(model) -> list[KnnNodes]:
    """Per TopK of an exported ONNX ``model``, in graph order: the score MatMul feeding it (directly, or as the last
    input of a seeded TopK's Concat) and the neighbour indices (the TopK's, or those of the Sub that shifts a seeded
    TopK's back by ``k``); see :func:`~pointkd.export.deploy_model.seeded_topk`."""
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    for node in model.graph.node:
        if node.op_type != "TopK":
            continue
        src = producers.get(node.input[0])
        if src is not None and src.op_type == "Concat":
            src = producers.get(src.input[-1])
        indices = node.output[1]
        users = consumers.get(indices, [])
        if len(users) == 1 and users[0].op_type == "Sub":
            indices = users[0].output[0]
        score = src.name if src is not None and src.op_type in ("MatMul", "Gemm") else None
        found.append(KnnNodes(score, indices))
    return found


def reference_model(model: DGCNN) -> DGCNN:
    """``model`` in eval mode with the dense kNN: the torch computation every export is checked against.

    torch-cluster's kNN (the training default on xyz) breaks near-ties differently from a distance matrix + TopK,
    which is what every exported graph computes, so parity is measured against the dense kNN."""
    ref = DGCNN(dataclasses.replace(model.config, knn_backend="dense"))
    ref.load_state_dict(model.state_dict())
    return ref.float().eval()


def naive_model(model: DGCNN) -> DGCNN:
    """The model exactly as trained, for the "naive export" baseline: edge-wise EdgeConv, BN unfolded, sorted TopK."""
    naive = DGCNN(dataclasses.replace(model.config, knn_backend="dense", edgeconv_impl="naive"))
    naive.load_state_dict(model.state_dict())
    return naive.float().eval()


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's noise about things pointkd does not use: a warning per torchvision operator it cannot
    register (torchvision is not installed) and pytree's LeafSpec deprecation, raised from torch's own code."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def export_onnx(model: DGCNN, path: str | os.PathLike, num_points: int, naive: bool = False) -> Path:
    """Write ``model`` as ONNX to ``path``: the :class:`DeployDGCNN` rewrite, or the trained graph with ``naive``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module: nn.Module = naive_model(model) if naive else DeployDGCNN(reference_model(model))
    example = torch.zeros(2, num_points, model.config.in_channels)
    batch = torch.export.Dim("batch", min=1, max=4096)
    log = io.StringIO()
    try:
        # The exporter narrates every stage on stdout; keep it for the error message only.
        with contextlib.redirect_stdout(log), quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"points": {0: batch}},
                external_data=False,
            )
    except Exception as err:
        raise ExportError(f"ONNX export failed: {err}\n{log.getvalue()[-2000:]}") from err
    strip_debug_info(path)
    return path


def strip_debug_info(path: Path) -> None:
    """Drop the exporter's per-node stack traces and metadata (a fifth of a student's file), keeping the graph."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    model.doc_string = ""
    onnx.save(model, str(path))
