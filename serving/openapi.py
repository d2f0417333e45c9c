"""The server's OpenAPI document, made to tell the truth about every route.

FastAPI derives the routes' paths and parameters from their signatures, but the routes read their bodies
themselves (every content type through a parse worker) and answer errors through :mod:`serving.errors`, so on its own
the document says every route answers only 200 or FastAPI's 422 shape, that ``/predict`` takes no body, and that
``/metrics`` is JSON. :func:`document_openapi` rewrites each operation from :data:`OPERATIONS`: its request bodies
(content types and JSON shapes), every status code it answers with the ``{"error": ...}`` schema, the real answer
schemas, and ``/metrics`` as Prometheus text. ``tests/test_serving_schema.py`` runs schemathesis' conformance checks
against the result.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from .kserve import MAX_CLOUDS
from .parsing import UPLOAD_SUFFIXES

REF = "#/components/schemas/"
JSON = "application/json"

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every error the server answers. `detail` (request validation only) lists what was wrong.",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "array", "items": {}}},
    },
    "Point": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
    "PredictRequest": {
        "type": "object",
        "description": "One cloud: P points (x, y, z), z-up. Any P from the model's kNN k to the server's "
        "--max-points; the server centres it, scales it into the unit sphere and resamples it to the model's N.",
        "required": ["points"],
        "properties": {"points": {"type": "array", "minItems": 1, "items": {"$ref": REF + "Point"}}},
    },
    "ClassProbability": {
        "type": "object",
        "required": ["class", "probability"],
        "properties": {"class": {"type": "string"}, "probability": {"type": "number", "minimum": 0, "maximum": 1}},
    },
    "PredictResponse": {
        "type": "object",
        "required": ["model", "version", "class", "probability", "top_k", "points_received", "server_ms"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string", "description": "the first 12 hex digits of the model file's sha256"},
            "class": {"type": "string"},
            "probability": {"type": "number", "minimum": 0, "maximum": 1},
            "top_k": {"type": "array", "items": {"$ref": REF + "ClassProbability"}},
            "points_received": {"type": "integer", "minimum": 0},
            "server_ms": {"type": "number", "minimum": 0},
        },
    },
    "InferInput": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "description": "the model's input (`points`); not checked"},
            "shape": {
                "type": "array",
                "description": f"[B, P, 3] (1 to {MAX_CLOUDS} clouds) or [P, 3]",
                "minItems": 2,
                "maxItems": 3,
                "items": {"type": "integer", "minimum": 0},
            },
            "datatype": {"type": "string", "enum": ["FP32", "FP64"]},
            "data": {
                "type": "array",
                "description": "the B x P x 3 numbers, flat or nested",
                "items": {"anyOf": [{"type": "number"}, {"type": "array"}]},
            },
            "parameters": {"type": "object"},
        },
    },
    "InferRequest": {
        "type": "object",
        "description": "Open Inference Protocol (KServe v2) inference request with one input tensor. Triton's binary "
        "tensor data extension is accepted too: this JSON as a header of `Inference-Header-Content-Length` bytes, "
        "the input's raw little-endian bytes after it (its `parameters.binary_data_size`).",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"$ref": REF + "InferInput"}},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "enum": ["probabilities"]},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": {"type": "boolean"}},
                            "not": {"required": ["classification"]},
                        },
                    },
                },
            },
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
        },
    },
    "InferResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs", "parameters"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"type": "string", "enum": ["probabilities"]},
                        "datatype": {"type": "string", "enum": ["FP32"]},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "data": {"type": "array", "items": {"type": "number"}},
                        "parameters": {"type": "object"},
                    },
                },
            },
            "parameters": {
                "type": "object",
                "properties": {"classes": {"type": "array", "items": {"type": "string"}}},
            },
        },
    },
    "TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs", "parameters"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": REF + "TensorMetadata"}},
            "outputs": {"type": "array", "items": {"$ref": REF + "TensorMetadata"}},
            "parameters": {
                "type": "object",
                "description": "classes, the input contract, the artifact format and its test accuracy",
                "properties": {
                    "classes": {"type": "array", "items": {"type": "string"}},
                    "input_contract": {"type": "object"},
                    "artifact_format": {"type": "string"},
                    "test_accuracy": {},
                },
            },
        },
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
}

ERRORS = {
    400: "The body is not readable: malformed JSON or multipart, or a v2 request the protocol does not allow",
    401: "The server requires an API key and the request has no valid one",
    404: "No such model or version",
    413: "The request body is over the server's --max-body-mb",
    415: "A content type this route does not read",
    422: "A request the model cannot take: a bad query value, a cloud of the wrong shape, too few points (fewer "
    "than its kNN k), more than --max-points, NaN or Inf, no extent, an unreadable file; or the server serves "
    "several models and none was named",
    503: "The models are not loaded yet, or reading the body ran out of time (Retry-After: 1)",
}


def _json(ref: str) -> dict[str, Any]:
    return {JSON: {"schema": {"$ref": REF + ref}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": ERRORS[c], "content": _json("Error")} for c in codes}


def _ok(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": description, "content": content}}


BINARY = {"schema": {"type": "string", "format": "binary"}}
# A cloud every shipped model takes (a 4 x 4 x 4 grid: 64 distinct points, above any kNN k of theirs, at most 40), the
# documents' example: /docs shows a request that works, and schemathesis sends it.
EXAMPLE_CLOUD = [[x / 3, y / 3, z / 3] for x in range(4) for y in range(4) for z in range(4)]
MODEL_ERRORS = (401, 404, 413, 503)

PREDICT = {
    "summary": "Classify one cloud",
    "description": 'One cloud in, its top classes out. The body is JSON `{"points": [[x, y, z], ...]}`, raw '
    "little-endian float32 (x, y, z) rows (`application/octet-stream`), a `.npy` file (`application/x-npy`: "
    "[P, >=3], the first 3 columns), or a multipart upload (field `file`) of "
    f"{' / '.join(UPLOAD_SUFFIXES)}. `model` names the model when the server has several.",
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": REF + "PredictRequest"}, "example": {"points": EXAMPLE_CLOUD}},
            "application/octet-stream": BINARY,
            "application/x-npy": BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    },
    "responses": {
        **_ok("The most probable class and the top_k classes", _json("PredictResponse")),
        **_errors(400, 401, 404, 413, 415, 422, 503),
    },
    "parameters": {
        "top_k": {"type": "integer", "minimum": 1, "description": "how many classes to return (default 5)"},
        "model": {"type": "string", "description": "the model's name (required when the server serves several)"},
    },
}

INFER = {
    "summary": "Open Inference Protocol inference",
    "description": "KServe v2 inference on one to 64 clouds: JSON, or Triton's binary tensor data extension (see "
    "InferRequest). Each cloud is prepared as /predict prepares one. The answer holds the probabilities [B, C] "
    "and, as a parameter, each cloud's class; it is binary (a JSON header, then the float32 bytes) when the request "
    "asks for a binary output.",
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {"$ref": REF + "InferRequest"},
                "example": {
                    "inputs": [
                        {
                            "name": "points",
                            "shape": [1, len(EXAMPLE_CLOUD), 3],
                            "datatype": "FP32",
                            "data": [v for p in EXAMPLE_CLOUD for v in p],
                        }
                    ]
                },
            }
        },
    },
    "responses": {
        **_ok(
            "The probabilities",
            {JSON: {"schema": {"$ref": REF + "InferResponse"}}, "application/octet-stream": BINARY},
        ),
        **_errors(400, 422, *MODEL_ERRORS),
    },
}

METADATA = {
    "summary": "Model metadata",
    "responses": {**_ok("The model's metadata", _json("ModelMetadata")), **_errors(*MODEL_ERRORS)},
}
MODEL_READY = {
    "summary": "Model readiness",
    "responses": {**_ok("The model is loaded", _json("ModelReady")), **_errors(*MODEL_ERRORS)},
}
VERSION_PARAMETER = {"version": {"type": "string", "description": "the model's version (any when left out)"}}

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/predict"): PREDICT,
    ("post", "/v2/models/{name}/infer"): {**INFER, "parameters": VERSION_PARAMETER},
    ("post", "/v2/models/{name}/versions/{version}/infer"): {**INFER, "parameters": VERSION_PARAMETER},
    ("get", "/v2/models/{name}"): {**METADATA, "parameters": VERSION_PARAMETER},
    ("get", "/v2/models/{name}/versions/{version}"): {**METADATA, "parameters": VERSION_PARAMETER},
    ("get", "/v2/models/{name}/ready"): {**MODEL_READY, "parameters": VERSION_PARAMETER},
    ("get", "/v2/models/{name}/versions/{version}/ready"): {**MODEL_READY, "parameters": VERSION_PARAMETER},
    ("get", "/v2"): {
        "summary": "Server metadata",
        "responses": {
            **_ok("The server's name, version and protocol extensions", _json("ServerMetadata")),
            **_errors(401, 413),
        },
    },
    ("get", "/v2/health/live"): {
        "summary": "Liveness",
        "responses": {**_ok("The server is up", _json("Live")), **_errors(413)},
    },
    ("get", "/v2/health/ready"): {
        "summary": "Readiness",
        "responses": {
            **_ok("The models are loaded", _json("Ready")),
            "503": {"description": 'The models are not loaded yet (`{"ready": false}`)', "content": _json("Ready")},
            **_errors(413),
        },
    },
    ("get", "/metrics"): {
        "summary": "Prometheus metrics",
        "description": "The Prometheus text exposition format: requests by endpoint and status, latency, batch "
        "sizes, queue and inference times, parse worker replacements.",
        "responses": {
            "200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(401, 413),
        },
    },
}


def document_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (``/openapi.json``, ``/docs``) describe what each route really takes and answers."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = truthful(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def truthful(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's document) with every operation of :data:`OPERATIONS` rewritten; an operation not in the
    table keeps its paths and parameters and gets the error schema for the statuses every route can answer."""
    schema = copy.deepcopy(schema)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(copy.deepcopy(SCHEMAS))
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            spec = copy.deepcopy(
                OPERATIONS.get((method, path), {"responses": {**op["responses"], **_errors(401, 413)}})
            )
            params = spec.pop("parameters", {})
            for p in op.get("parameters", []):
                p.pop("title", None)
                if p["name"] in params:
                    p["schema"] = params[p["name"]]
                elif "anyOf" in p["schema"]:  # FastAPI's `str | None`: a path or query value is never null
                    p["schema"] = next(s for s in p["schema"]["anyOf"] if s.get("type") != "null")
            if not op.get("parameters"):
                op.pop("parameters", None)
            responses = spec.pop("responses")
            if "422" in responses:  # FastAPI's validation error shape is not what the server answers
                responses["422"] = _errors(422)["422"]
            op.update(spec)
            op["responses"] = dict(sorted(responses.items()))
    return schema
