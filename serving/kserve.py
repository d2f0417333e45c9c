"""KServe v2 / Open Inference Protocol request tensors -> clouds, every field checked before it is used."""

from __future__ import annotations

import math

import numpy as np

from .preprocess import BadCloud
from .strict_json import BadNumbers, numbers_of

MAX_CLOUDS = 64


class BadRequest(ValueError):
    """A request the protocol does not allow (a 400); the message says why."""


def input_tensor(doc: object) -> dict:
    """The one input tensor of a v2 infer request document."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("expected {'inputs': [{'name', 'shape', 'datatype', 'data'}]} with one input")
    tensor = inputs[0]
    if tensor.get("datatype") not in ("FP32", "FP64"):
        raise BadRequest(f"datatype must be FP32 or FP64, got {tensor.get('datatype')!r}")
    return tensor


def cloud_shape(shape: object) -> tuple[int, int, int]:
    """``[B, P, 3]`` or ``[P, 3]`` as ``(B, P, 3)``: integers (not booleans), non-negative, 1 to 64 clouds."""
    ok = isinstance(shape, list) and len(shape) in (2, 3) and all(type(s) is int and s >= 0 for s in shape)
    if not ok:
        raise BadCloud(f"shape must be [B, P, 3] or [P, 3] of non-negative integers, got {_brief(shape)}")
    full = shape if len(shape) == 3 else [1, *shape]
    if full[2] != 3:
        raise BadCloud(f"shape must end in 3 (x, y, z), got {shape}")
    if not 1 <= full[0] <= MAX_CLOUDS:
        raise BadCloud(f"batch of {full[0]} clouds; send 1 to {MAX_CLOUDS} per request")
    return full[0], full[1], full[2]


def clouds_of(tensor: dict) -> np.ndarray:
    """``[B, P, 3]`` float64 from a JSON tensor whose ``data`` holds exactly ``prod(shape)`` numbers."""
    shape = cloud_shape(tensor.get("shape"))
    try:
        data = numbers_of(tensor.get("data"), "data")
    except BadNumbers as err:
        raise BadCloud(str(err)) from err
    return reshaped(data, shape)


def reshaped(data: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    need = math.prod(shape)  # Python integers: no overflow, unlike np.prod
    if data.size != need:
        raise BadCloud(f"data holds {data.size} numbers, shape {list(shape)} needs {need}")
    return data.reshape(shape)


def _brief(value: object) -> str:
    text = repr(value).replace("True", "true").replace("False", "false")
    return text if len(text) <= 80 else text[:77] + "..."
