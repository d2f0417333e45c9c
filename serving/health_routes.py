"""Liveness, readiness and Prometheus ``/metrics``: answered on the event loop, never behind a parse or a model."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .context import ServerContext


def health_routes(ctx: ServerContext) -> APIRouter:
    """``/v2/health/live``, ``/v2/health/ready`` (503 until the lifespan has loaded the models) and ``/metrics``."""
    router = APIRouter()

    @router.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @router.get("/v2/health/ready")
    async def ready():
        if "models" not in ctx.state:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True}

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
