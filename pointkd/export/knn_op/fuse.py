"""Rewrite an exported DGCNN so that each kNN is one ``pointkd.KnnTopK`` node.

Per kNN layer the export (:func:`~pointkd.export.deploy_model.knn_topk`) has

* plain: ``score = MatMul(query, Transpose(key, [0, 2, 1]))``, ``indices = TopK(score, k)[1]``;
* seeded (:func:`~pointkd.export.deploy_model.seeded_topk`): ``tau = ReduceMin(GatherElements(score, seed))``,
  ``floor = tau - (|tau|·1e-6 + 1e-30)``, ``indices = TopK(Concat(Expand(floor, k), score), k)[1] - k``;

with ``query [B, N, D] = [x, 1]`` and ``key [B, N, D] = [x, -½‖x‖²]``. Both become
``indices = KnnTopK(query, key[, seed], k=k)``, written to the same tensor name, so every consumer is unchanged;
the nodes only the old kNN used (Transpose, MatMul, GatherElements, ..., TopK, Sub) and their constants are removed.
``query`` and ``key`` (and the ReduceSum / Concat that build them) stay in the graph: the operator takes the very
tensors the MatMul took, which is what lets it reproduce the MatMul's float32 scores bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ...runtime.errors import ExportError
from ..onnx_export import knn_nodes
from .graph_edit import DOMAIN, attribute, constant, links, replace_nodes

OP_TYPE = "KnnTopK"


@dataclasses.dataclass
class FusedKnn:
    """One kNN replaced by :func:`fuse_knn`."""

    node: str  # the KnnTopK node's name
    query: str
    key: str
    seed: str | None  # the previous layer's indices for a seeded TopK, else None
    indices: str  # the output tensor (the name the old kNN wrote)
    k: int


def fuse_knn_model(model) -> list[FusedKnn]:
    """:func:`fuse_knn` on an in-memory ``onnx.ModelProto`` (changed in place)."""
    from onnx import helper

    producers, consumers = links(model)

    fused: list[FusedKnn] = []
    replace: dict[int, object] = {}  # id(old last node of a kNN) -> its KnnTopK node
    for knn in knn_nodes(model):
        last = producers.get(knn.indices)
        topk = last
        shift = None
        if last is not None and last.op_type == "Sub":
            shift = constant(model, last.input[1])
            topk = producers.get(last.input[0])
        if topk is None or topk.op_type != "TopK":
            raise ExportError(f"fuse_knn: {knn.indices} is not produced by a TopK (or a TopK minus k)")
        k_value = constant(model, topk.input[1])
        if k_value is None or k_value.size != 1:
            raise ExportError(f"fuse_knn: TopK {topk.name} has no constant k")
        k = int(k_value.reshape(-1)[0])
        if attribute(topk, "largest", 1) != 1 or attribute(topk, "axis", -1) not in (-1, 2):
            raise ExportError(f"fuse_knn: TopK {topk.name} is not a largest-k over the last axis")
        src = producers.get(topk.input[0])
        seeded = src is not None and src.op_type == "Concat"
        if seeded != (shift is not None):
            raise ExportError(f"fuse_knn: TopK {topk.name} is neither a plain nor a seeded kNN TopK")
        if seeded:
            if shift is None or shift.size != 1 or int(shift.reshape(-1)[0]) != k:
                raise ExportError(f"fuse_knn: the seeded TopK {topk.name} is not shifted back by k = {k}")
            src = producers.get(src.input[-1])
        if src is None or src.op_type != "MatMul" or src.name != knn.score:
            raise ExportError(f"fuse_knn: TopK {topk.name} does not read a score MatMul")
        query, key_t = src.input
        transpose = producers.get(key_t)
        if transpose is None or transpose.op_type != "Transpose" or list(attribute(transpose, "perm", [])) != [0, 2, 1]:
            raise ExportError(f"fuse_knn: the score MatMul {src.name} does not read a transposed key")
        key = transpose.input[0]
        seed = None
        if seeded:
            gathers = [n for n in consumers.get(src.output[0], []) if n.op_type == "GatherElements"]
            if len(gathers) != 1:
                raise ExportError(f"fuse_knn: the seeded TopK {topk.name} has no single GatherElements of its scores")
            seed = gathers[0].input[1]
        name = f"{topk.name}_fused"
        node = helper.make_node(
            OP_TYPE,
            [query, key, *([seed] if seed else [])],
            [knn.indices],
            name=name,
            domain=DOMAIN,
            k=k,
            sorted=int(attribute(topk, "sorted", 1)),
        )
        replace[id(last)] = node
        fused.append(FusedKnn(name, query, key, seed, knn.indices, k))

    replace_nodes(model, replace)
    return fused


def fuse_knn(model_in: str | os.PathLike, model_out: str | os.PathLike, gather_max: bool = True) -> list[FusedKnn]:
    """Write ``model_in`` (an exported DGCNN) to ``model_out`` with every kNN (score MatMul + TopK, seeded or not)
    replaced by one ``pointkd.KnnTopK`` node and, with ``gather_max``, every EdgeConv's neighbour gather + max by one
    ``pointkd.GatherMax`` (:mod:`.fuse_gather_max`); everything else is kept as it was. Returns the replaced kNNs in
    graph order. Raises :class:`~pointkd.export.onnx_export.ExportError` when a TopK is not an exported kNN."""
    import onnx

    from .fuse_gather_max import fuse_gather_max_model

    model = onnx.load(str(model_in))
    fused = fuse_knn_model(model)
    if gather_max:
        fuse_gather_max_model(model)
    onnx.checker.check_model(model)
    Path(model_out).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(model_out))
    return fused
