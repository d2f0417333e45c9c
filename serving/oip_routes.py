"""The Open Inference Protocol (KServe v2) routes: server and model metadata, model readiness, and infer (JSON or
Triton's binary tensor data; the body is parsed and resampled by :func:`serving.jobs.prepare_infer` where JSON
bodies are, :attr:`~serving.context.ServerContext.json_pool`, and each cloud goes through the model's
micro-batcher on its own)."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

import pointkd

from .context import ServerContext
from .kserve import HEADER_LENGTH, InferOptions, header_length, infer_response
from .predictor import Predictor


def oip_routes(ctx: ServerContext) -> APIRouter:
    """The v2 routes, answering from ``ctx``'s models."""
    router = APIRouter()

    @router.get("/v2")
    async def server_metadata() -> dict:
        return {"name": "pointkd", "version": pointkd.__version__, "extensions": ["binary_tensor_data"]}

    @router.get("/v2/models/{name}/ready")
    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> dict:
        return {"name": ctx.served_model(name, version).predictor.name, "ready": True}

    @router.get("/v2/models/{name}")
    @router.get("/v2/models/{name}/versions/{version}")
    async def metadata(name: str, version: str | None = None) -> dict:
        return model_metadata(ctx.served_model(name, version).predictor)

    @router.post("/v2/models/{name}/infer")
    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        served = ctx.served_model(name, version)
        p = served.predictor
        meta = ctx.job_meta(p, json_length=header_length(request.headers.get(HEADER_LENGTH)))
        info, clouds = await ctx.parse(ctx.json_pool, "infer", meta, await request.body())
        probs = await asyncio.gather(*(served.batcher.submit(c) for c in clouds))
        body, headers = infer_response(
            p.name, p.version, np.stack(probs).astype(np.float32), p.classes, InferOptions(**info)
        )
        return Response(body, headers=headers)

    return router


def model_metadata(p: Predictor) -> dict:
    """A model's v2 metadata, with its classes, input contract, artifact format and test accuracy as parameters."""
    m = p.manifest
    return {
        "name": p.name,
        "versions": [p.version],
        "platform": p.platform,
        "inputs": [{"name": "points", "datatype": "FP32", "shape": [-1, -1, 3]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(p.classes)]}],
        "parameters": {
            "classes": p.classes,
            "input_contract": m["input"],
            "artifact_format": m["artifact_format"],
            "test_accuracy": m["accuracy"],
        },
    }
