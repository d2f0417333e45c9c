"""Small ONNX graph edits shared by the fused-operator rewrites (:mod:`.fuse`, :mod:`.fuse_gather_max`)."""

from __future__ import annotations

import numpy as np

DOMAIN = "pointkd"
OP_VERSION = 1


def constant(model, name: str) -> np.ndarray | None:
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


def attribute(node, name: str, default):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def dead_nodes(model, graph_outputs: set[str]) -> set[int]:
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


def links(model) -> tuple[dict[str, object], dict[str, list]]:
    """Tensor name -> the node writing it, and -> the nodes reading it."""
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producers, consumers


def replace_nodes(model, replace: dict[int, object]) -> None:
    """Swap each node ``n`` with ``id(n)`` in ``replace`` for its replacement (same place), then drop the nodes,
    initializers and value infos that only the replaced subgraphs used (nodes dead before the rewrite are left as
    they were). ``replace`` is keyed by the ``id`` of the graph's node objects as read before this call."""
    from onnx import helper

    graph = model.graph
    graph_outputs = {o.name for o in graph.output}
    # By index: the swap keeps every node's place, and extend() copies the messages (new objects, new ids).
    dead_before = dead_nodes(model, graph_outputs)
    replaced_inputs = {name for node in graph.node if id(node) in replace for name in node.input}
    nodes = [replace.get(id(node), node) for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    drop = dead_nodes(model, graph_outputs) - dead_before
    kept = [node for i, node in enumerate(graph.node) if i not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    read = {name for node in graph.node for name in node.input} | graph_outputs
    written = {out for node in graph.node for out in node.output} | {i.name for i in graph.input}
    stale = [init for init in graph.initializer if init.name not in read]
    removed_tensors = {out for i in drop for out in nodes[i].output}
    for init in stale:
        if init.name in replaced_inputs or any(init.name in nodes[i].input for i in drop):
            graph.initializer.remove(init)
    for info in list(graph.value_info):
        if info.name in removed_tensors and info.name not in written:
            graph.value_info.remove(info)
    if not any(op.domain == DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OP_VERSION))
