"""KServe v2 / Open Inference Protocol requests -> clouds, and results -> responses, every field checked before use.

A request is JSON, or (Triton's binary tensor data extension) a JSON header of ``Inference-Header-Content-Length``
bytes followed by the raw little-endian bytes of each input that declares a ``binary_data_size`` parameter. The
answer is JSON, or a JSON header followed by the raw output bytes when the request asks for binary outputs (an
output's ``binary_data`` parameter, or the request's ``binary_data_output``, which tritonclient sends by default).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .preprocess import BadCloud
from .strict_json import BadNumbers, load_json, numbers_of

MAX_CLOUDS = 64
OUTPUT = "probabilities"
DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
HEADER_LENGTH = "Inference-Header-Content-Length"


class BadRequest(ValueError):
    """A request the protocol does not allow (a 400); the message says why."""


@dataclass
class InferOptions:
    """What the request asks of the answer: its id (echoed) and whether the output goes back as binary."""

    id: str | None = None
    binary_output: bool = False

    def to_dict(self) -> dict:
        return {"id": self.id, "binary_output": self.binary_output}


def header_length(value: str | None) -> int | None:
    """The ``Inference-Header-Content-Length`` header as an int (None if absent), or :class:`BadRequest`."""
    if value is None:
        return None
    if not value.strip().isdigit() or len(value.strip()) > 12:
        raise BadRequest(f"{HEADER_LENGTH} must be a non-negative integer, got {value[:40]!r}")
    return int(value)


def infer_request(body: bytes, json_length: int | None, max_values: int) -> tuple[InferOptions, np.ndarray]:
    """The options and the ``[B, P, 3]`` clouds of a v2 infer body (``json_length``: the binary extension's header
    length, None for a plain JSON body)."""
    binary = b""
    if json_length is not None:
        if json_length > len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {json_length} but the body has only {len(body)} bytes")
        body, binary = body[:json_length], body[json_length:]
    doc = load_json(body, max_values)
    tensor = input_tensor(doc)
    options = infer_options(doc)
    size = (tensor.get("parameters") or {}).get("binary_data_size") if isinstance(tensor, dict) else None
    if size is None:
        if binary:
            raise BadRequest(f"{len(binary)} bytes follow the JSON header but no input has a binary_data_size")
        return options, clouds_of(tensor)
    return options, clouds_of_bytes(tensor, size, binary)


def input_tensor(doc: object) -> dict:
    """The one input tensor of a v2 infer request document."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("expected {'inputs': [{'name', 'shape', 'datatype', 'data'}]} with one input")
    tensor = inputs[0]
    datatype = tensor.get("datatype")
    if type(datatype) is not str or datatype not in DTYPES:  # a list or an object is unhashable: test its type first
        raise BadRequest(f"datatype must be FP32 or FP64, got {_brief(datatype)}")
    params = tensor.get("parameters", {})
    if not isinstance(params, dict):
        raise BadRequest("an input's parameters must be an object")
    return tensor


def infer_options(doc: dict) -> InferOptions:
    """The request's id and output choice; an output other than ``probabilities`` is a :class:`BadRequest`."""
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest("a request id must be a string")
    params = doc.get("parameters", {})
    if not isinstance(params, dict):
        raise BadRequest("the request's parameters must be an object")
    binary = params.get("binary_data_output", False) is True
    outputs = doc.get("outputs")
    if outputs is None:
        return InferOptions(rid, binary)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequest("outputs must be a list of objects")
    for out in outputs:
        if out.get("name") != OUTPUT:
            raise BadRequest(f"unknown output {out.get('name')!r}; this model has one output, {OUTPUT!r}")
        out_params = out.get("parameters", {})
        if not isinstance(out_params, dict):
            raise BadRequest("an output's parameters must be an object")
        if "classification" in out_params:
            raise BadRequest("the classification extension is not supported; read the 'classes' parameter")
        binary = binary or out_params.get("binary_data", False) is True
    return InferOptions(rid, binary)


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


def clouds_of_bytes(tensor: dict, size: object, binary: bytes) -> np.ndarray:
    """``[B, P, 3]`` from the raw little-endian bytes after the JSON header (the binary tensor data extension)."""
    if "data" in tensor:
        raise BadRequest("an input has both 'data' and a binary_data_size")
    if type(size) is not int or size != len(binary):
        raise BadRequest(f"binary_data_size is {_brief(size)} but {len(binary)} bytes follow the JSON header")
    shape = cloud_shape(tensor.get("shape"))
    dtype = DTYPES[tensor["datatype"]]
    need = math.prod(shape) * dtype.itemsize
    if size != need:
        raise BadCloud(f"binary data holds {size} bytes, shape {list(shape)} of {tensor['datatype']} needs {need}")
    return np.frombuffer(binary, dtype=dtype).reshape(shape)


def reshaped(data: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    need = math.prod(shape)  # Python integers: no overflow, unlike np.prod
    if data.size != need:
        raise BadCloud(f"data holds {data.size} numbers, shape {list(shape)} needs {need}")
    return data.reshape(shape)


def infer_response(
    name: str, version: str, probs: np.ndarray, classes: list[str], options: InferOptions
) -> tuple[bytes, dict]:
    """The body and headers of a v2 infer answer: JSON, or a JSON header + the float32 output bytes."""
    out = {"name": OUTPUT, "datatype": "FP32", "shape": list(probs.shape)}
    raw = b""
    if options.binary_output:
        raw = np.ascontiguousarray(probs, dtype="<f4").tobytes()
        out["parameters"] = {"binary_data_size": len(raw)}
    else:
        out["data"] = probs.ravel().tolist()
    doc = {"model_name": name, "model_version": version, "outputs": [out]}
    if options.id is not None:
        doc["id"] = options.id
    doc["parameters"] = {"classes": [classes[i] for i in probs.argmax(1)]}
    header = json.dumps(doc).encode()
    if not options.binary_output:
        return header, {"content-type": "application/json"}
    return header + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def _brief(value: object) -> str:
    text = repr(value).replace("True", "true").replace("False", "false")
    return text if len(text) <= 80 else text[:77] + "..."
