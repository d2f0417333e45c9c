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

import numpy as np

from ...runtime.errors import ExportError
from ..onnx_export import knn_nodes

DOMAIN = "pointkd"
OP_TYPE = "KnnTopK"
OP_VERSION = 1


@dataclasses.dataclass
class FusedKnn:
    """One kNN replaced by :func:`fuse_knn`."""

    node: str  # the KnnTopK node's name
    query: str
    key: str
    seed: str | None  # the previous layer's indices for a seeded TopK, else None
    indices: str  # the output tensor (the name the old kNN wrote)
    k: int


def _constant(model, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def _attr(node, name: str, default):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _dead(model, graph_outputs: set[str]) -> set[int]:
    """Indices of nodes whose outputs nothing reads (transitively)."""
    nodes = list(model.graph.node)
    alive = set(range(len(nodes)))
    while True:
        used = set(graph_outputs)
        for i in alive:
            used.update(nodes[i].input)
        dead = {i for i in alive if not any(out in used for out in nodes[i].output if out)}
        if not dead:
            return set(range(len(nodes))) - alive
        alive -= dead


def fuse_knn_model(model) -> list[FusedKnn]:
    """:func:`fuse_knn` on an in-memory ``onnx.ModelProto`` (changed in place)."""
    from onnx import helper

    graph = model.graph
    graph_outputs = {o.name for o in graph.output}
    dead_before = {id(graph.node[i]) for i in _dead(model, graph_outputs)}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    fused: list[FusedKnn] = []
    replace: dict[int, object] = {}  # id(old last node of a kNN) -> its KnnTopK node
    for knn in knn_nodes(model):
        last = producers.get(knn.indices)
        topk = last
        shift = None
        if last is not None and last.op_type == "Sub":
            shift = _constant(model, last.input[1])
            topk = producers.get(last.input[0])
        if topk is None or topk.op_type != "TopK":
            raise ExportError(f"fuse_knn: {knn.indices} is not produced by a TopK (or a TopK minus k)")
        k_value = _constant(model, topk.input[1])
        if k_value is None or k_value.size != 1:
            raise ExportError(f"fuse_knn: TopK {topk.name} has no constant k")
        k = int(k_value.reshape(-1)[0])
        if _attr(topk, "largest", 1) != 1 or _attr(topk, "axis", -1) not in (-1, 2):
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
        if transpose is None or transpose.op_type != "Transpose" or list(_attr(transpose, "perm", [])) != [0, 2, 1]:
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
            OP_TYPE, [query, key, *([seed] if seed else [])], [knn.indices], name=name, domain=DOMAIN, k=k
        )
        replace[id(last)] = node
        fused.append(FusedKnn(name, query, key, seed, knn.indices, k))

    nodes = [replace.get(id(node), node) for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    # Drop what only the old kNNs used (nodes dead before the rewrite are left as they were).
    drop = {i for i in _dead(model, graph_outputs) if id(graph.node[i]) not in dead_before}
    kept = [node for i, node in enumerate(graph.node) if i not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    read = {name for node in graph.node for name in node.input} | graph_outputs
    written = {out for node in graph.node for out in node.output} | {i.name for i in graph.input}
    stale = [init for init in graph.initializer if init.name not in read]
    removed_tensors = {out for i in drop for out in nodes[i].output}
    for init in stale:
        if any(init.name in nodes[i].input for i in drop):
            graph.initializer.remove(init)
    for info in list(graph.value_info):
        if info.name in removed_tensors and info.name not in written:
            graph.value_info.remove(info)
    if not any(op.domain == DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OP_VERSION))
    return fused


def fuse_knn(model_in: str | os.PathLike, model_out: str | os.PathLike) -> list[FusedKnn]:
    """Write ``model_in`` (an exported DGCNN) to ``model_out`` with every kNN (score MatMul + TopK, seeded or not)
    replaced by one ``pointkd.KnnTopK`` node; everything else is kept as it was. Returns the replaced kNNs in graph
    order. Raises :class:`~pointkd.export.onnx_export.ExportError` when a TopK is not an exported kNN."""
    import onnx

    model = onnx.load(str(model_in))
    fused = fuse_knn_model(model)
    onnx.checker.check_model(model)
    Path(model_out).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(model_out))
    return fused
