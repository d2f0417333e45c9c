"""Parity of an exported model with the torch model, aware of kNN ties.

A kNN graph is discontinuous in its input: when the k-th and (k+1)-th neighbours of a point are (nearly) equally far,
two correct float32 implementations may pick different ones, and the logits then differ by far more than rounding.
On real ModelNet40 this happens even between two exact torch formulations of the same distance (the CAD meshes are
sampled into many equidistant points), so a plain max |Δlogit| over the test split cannot tell a broken export from
an ill-conditioned cloud. For every cloud that misses ``atol`` or the top-1 class, this check therefore

1. runs the exported model with every TopK's indices added as outputs, so it knows the graphs ONNX Runtime chose
   (for a torch artifact, :meth:`~pointkd.export.deploy_model.DeployDGCNN.forward_graphs` returns them);
2. runs the torch model on *those* graphs (``DGCNN.forward_features(graphs=...)``): the logits must then agree to
   ``atol`` — the export computes the same function;
3. checks that each chosen graph is a correct kNN up to a tie: no picked neighbour is farther (in float64) than the
   true k-th nearest by more than ``tie_rtol`` times the row's largest squared distance.
The export passes when both hold for every such cloud. The report counts them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..models import DGCNN
from ..runtime.ort import make_session

# ``x [1, N, 3] -> (logits [1, C], the graphs [1, N, k] of every layer that builds one, in order)``
GraphsOf = Callable[[np.ndarray], tuple[np.ndarray, list[np.ndarray]]]


@dataclass
class ParityReport:
    clouds: int
    max_abs_logit_diff: float  # over every cloud, torch model as built vs the export
    top1_agreement: float
    off_clouds: int  # clouds off by more than atol or in top-1 (when ok: all explained by kNN ties)
    max_diff_same_graphs: float  # on those clouds, with torch run on the export's own graphs
    max_tie_gap: float  # largest (picked - k-th nearest) squared distance, relative to the row's largest
    ok: bool
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _with_topk_outputs(onnx_path: str | os.PathLike, out_path: Path) -> int:
    """Copy of the model whose outputs also include every kNN graph's indices; returns how many graphs."""
    import onnx

    from .onnx_export import knn_nodes

    model = onnx.load(str(onnx_path))
    graphs = knn_nodes(model)
    for knn in graphs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(knn.indices, onnx.TensorProto.INT64, None))
    onnx.save(model, str(out_path))
    return len(graphs)


def _layer_graphs(model: DGCNN, built: list[np.ndarray]) -> list[torch.Tensor]:
    graphs, it, idx = [], iter(built), None
    for layer in range(len(model.convs)):
        if idx is None or model.config.builds_graph(layer):
            idx = torch.from_numpy(next(it)).long()
        graphs.append(idx)
    return graphs


def _tie_gap(x: torch.Tensor, idx: torch.Tensor) -> float:
    """Largest relative excess of a picked neighbour's squared distance over the true k-th nearest (float64)."""
    x = x.double()
    d = torch.cdist(x, x).square()  # [B, N, N]
    kth = d.topk(idx.shape[-1], dim=-1, largest=False).values[..., -1]
    picked = d.gather(-1, idx).amax(-1)
    scale = d.amax(-1).clamp_min(1e-12)
    return float(((picked - kth).clamp_min(0) / scale).max())


@contextlib.contextmanager
def onnx_graphs(onnx_path: str | os.PathLike) -> Iterator[GraphsOf]:
    """The exported ONNX model as a :data:`GraphsOf`: a copy with every kNN graph's indices as extra outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        debug = Path(tmp) / "debug.onnx"
        _with_topk_outputs(onnx_path, debug)
        session = make_session(debug)
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
            logits, *built = session.run(None, {name: x})
            return logits, built

        yield run


@torch.inference_mode()
def check_parity(
    model: DGCNN,
    export: str | os.PathLike | GraphsOf,
    clouds: np.ndarray,
    ref: np.ndarray,
    got: np.ndarray,
    atol: float = 1e-4,
    tie_rtol: float = 1e-4,
) -> ParityReport:
    """Compare ``got`` (the export's logits of ``clouds``) with ``ref`` (the torch model's); see the module doc.
    ``export`` is the ONNX file, or a :data:`GraphsOf` callable that runs the export and returns its graphs."""
    diff = np.abs(got - ref).max(1)
    off = np.flatnonzero((diff > atol) | (got.argmax(1) != ref.argmax(1)))
    report = ParityReport(
        len(clouds), float(diff.max()), float((got.argmax(1) == ref.argmax(1)).mean()), len(off), 0.0, 0.0, True
    )
    if len(off) == 0:
        return report
    with contextlib.ExitStack() as stack:
        graphs_of = export if callable(export) else stack.enter_context(onnx_graphs(export))
        for i in off:
            x = np.ascontiguousarray(clouds[i : i + 1], dtype=np.float32)
            logits, built = graphs_of(x)
            graphs = _layer_graphs(model, built)
            out = model.forward_features(torch.from_numpy(x), graphs=graphs)
            report.max_diff_same_graphs = max(
                report.max_diff_same_graphs, float(np.abs(out.logits.numpy() - logits).max())
            )
            inputs = [torch.from_numpy(x), *out.features[:-1]]
            for layer, g in enumerate(graphs):
                if layer == 0 or model.config.builds_graph(layer):
                    report.max_tie_gap = max(report.max_tie_gap, _tie_gap(inputs[layer], g))
    if report.max_diff_same_graphs > atol:
        report.ok = False
        report.reason = (
            f"on the export's own kNN graphs the logits still differ by {report.max_diff_same_graphs:.3g} "
            f"(limit {atol:g}): the exported computation is wrong"
        )
    elif report.max_tie_gap > tie_rtol:
        report.ok = False
        report.reason = (
            f"the export picked a neighbour {report.max_tie_gap:.3g} (relative) farther than the true "
            f"k-th nearest (limit {tie_rtol:g}): its kNN is wrong, not a tie"
        )
    return report
