"""Rewrite each EdgeConv's neighbour gather and max of an exported DGCNN into one ``pointkd.GatherMax`` node.

The export (:class:`~pointkd.export.deploy_model.DeployEdgeConv`) writes, per EdgeConv,

``g = Gather(data [R, C], Reshape(index [..., k], [-1]), axis=0)``, ``e = Reshape(g, [..., k, C])``,
``m = ReduceMax(e, axes=[-2], keepdims=0)`` (``[..., C]``), then the tail ``y = LeakyRelu(m + (centre + bias))``
(``centre`` a MatMul, ``bias`` a ``[C]`` initializer),

which materialises the ``[B, N, k, C]`` edge tensor. ``y = GatherMax(data, index, centre, bias,
negative_slope=alpha)`` computes the same values (bit for bit, ``csrc/gather_max.cpp``) in one pass over the ``k``
rows of each point, written to the same tensor name so every consumer is unchanged; the Gather, both Reshapes, the
ReduceMax, the Adds and the LeakyRelu are removed. The tail is folded only as far as it matches (an Add whose other
term has the output's shape, the bias Add of a ``[C]`` constant read nowhere else, a LeakyRelu).
"""

from __future__ import annotations

import dataclasses

from .graph_edit import DOMAIN, attribute, constant, links, replace_nodes

GATHER_MAX = "GatherMax"


@dataclasses.dataclass
class FusedGatherMax:
    """One gather + max replaced by :func:`fuse_gather_max_model`."""

    node: str
    data: str  # [R, C]
    index: str  # [..., k]
    out: str  # [..., C]: the last folded node's output
    centre: str | None = None  # [..., C]
    bias: str | None = None  # [C]
    negative_slope: float | None = None
    last: object = dataclasses.field(default=None, repr=False, compare=False)  # the node the GatherMax replaces


def _shape(shapes: dict, name: str) -> list | None:
    info = shapes.get(name)
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in info.type.tensor_type.shape.dim]


def _reduce_axes(model, node) -> list[int] | None:
    if len(node.input) > 1 and node.input[1]:
        axes = constant(model, node.input[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = attribute(node, "axes", None)
    return None if axes is None else [int(a) for a in axes]


def _match(model, reduce, producers: dict, consumers: dict, shapes: dict, outputs: set[str]) -> FusedGatherMax | None:
    """The gather + max ending in ``reduce`` (a ReduceMax), or None where the subgraph is not the export's."""
    view = producers.get(reduce.input[0])
    gather = producers.get(view.input[0]) if view is not None and view.op_type == "Reshape" else None
    if gather is None or gather.op_type != "Gather" or attribute(gather, "axis", 0) != 0:
        return None
    flat = producers.get(gather.input[1])
    if flat is None or flat.op_type != "Reshape":
        return None
    target = constant(model, flat.input[1])
    if target is None or [int(v) for v in target.reshape(-1)] != [-1]:
        return None
    for inner in (gather.output[0], view.output[0]):  # read by the next node only: they are removed
        if len(consumers.get(inner, [])) != 1 or inner in outputs:
            return None
    data, index = gather.input[0], flat.input[0]
    edges, index_shape, data_shape = _shape(shapes, view.output[0]), _shape(shapes, index), _shape(shapes, data)
    if edges is None or index_shape is None or data_shape is None or len(data_shape) != 2:
        return None
    rank = len(edges)
    if attribute(reduce, "keepdims", 1) != 0 or _reduce_axes(model, reduce) not in ([rank - 2], [-2]):
        return None
    # The reshape must only append C to the index's shape: [..., k] -> [..., k, C] (unknown dims are let through;
    # the compile's parity check runs the fused model against the stock one).
    if len(index_shape) != rank - 1 or edges[-1] != data_shape[1]:
        return None
    if any(a is not None and b is not None and a != b for a, b in zip(edges[:-1], index_shape, strict=True)):
        return None
    found = FusedGatherMax(f"{reduce.name}_gather_max", data, index, reduce.output[0], last=reduce)
    _match_tail(model, found, [*index_shape[:-1], data_shape[1]], producers, consumers, shapes, outputs)
    return found


def _only_reader(name: str, consumers: dict, outputs: set[str], op_type: str):
    readers = consumers.get(name, [])
    if (
        len(readers) != 1
        or name in outputs
        or readers[0].op_type != op_type
        or readers[0].domain not in ("", "ai.onnx")
    ):
        return None
    return readers[0]


def _same_shape(a: list | None, b: list) -> bool:
    return a is not None and len(a) == len(b) and all(x is not None and x == y for x, y in zip(a, b, strict=True))


def _match_tail(
    model, found: FusedGatherMax, out_shape: list, producers: dict, consumers: dict, shapes: dict, outputs: set[str]
) -> None:
    """Extend ``found`` over ``+ centre`` (``+ bias``) and a LeakyRelu where the graph has them."""
    add = _only_reader(found.out, consumers, outputs, "Add")
    if add is None:
        return
    centre = add.input[1] if add.input[0] == found.out else add.input[0]
    if centre == found.out or not _same_shape(_shape(shapes, centre), out_shape):
        return
    found.centre, found.out, found.last = centre, add.output[0], add
    biased = producers.get(centre)
    if biased is not None and biased.op_type == "Add" and len(consumers.get(centre, [])) == 1 and centre not in outputs:
        for term, other in (biased.input, biased.input[::-1]):
            vector = constant(model, other)
            if vector is not None and vector.shape == (out_shape[-1],) and _same_shape(_shape(shapes, term), out_shape):
                found.centre, found.bias = term, other
                break
    leaky = _only_reader(found.out, consumers, outputs, "LeakyRelu")
    if leaky is not None:
        found.negative_slope = float(attribute(leaky, "alpha", 0.01))
        found.out, found.last = leaky.output[0], leaky


def fuse_gather_max_model(model) -> list[FusedGatherMax]:
    """Replace every exported EdgeConv gather + max of ``model`` (an ``onnx.ModelProto``, changed in place) with a
    ``pointkd.GatherMax`` node; other ReduceMax nodes (the global pooling) are left alone. Returns the rewrites."""
    import onnx
    from onnx import helper

    graph = model.graph
    outputs = {o.name for o in graph.output}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {v.name: v for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    producers, consumers = links(model)
    fused, replace = [], {}
    for node in graph.node:
        if node.op_type != "ReduceMax" or node.domain not in ("", "ai.onnx"):
            continue
        found = _match(model, node, producers, consumers, shapes, outputs)
        if found is None:
            continue
        inputs = [
            found.data,
            found.index,
            *([found.centre] if found.centre else []),
            *([found.bias] if found.bias else []),
        ]
        attrs = {} if found.negative_slope is None else {"negative_slope": found.negative_slope}
        # At the last folded node's place: the centre term is computed by then.
        replace[id(found.last)] = helper.make_node(
            GATHER_MAX, inputs, [found.out], name=found.node, domain=DOMAIN, **attrs
        )
        fused.append(found)
    if fused:
        replace_nodes(model, replace)
    return fused
