"""``POST /predict``: one cloud in (JSON, raw float32, .npy, or a multipart file upload), the top classes out."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Request

from .context import ServerContext
from .errors import HTTPProblem
from .parsing import RAW_FLOAT32, UPLOAD_SUFFIXES
from .predictor import Predictor
from .preprocess import BadCloud


def predict_routes(ctx: ServerContext) -> APIRouter:
    """``POST /predict``, answering from ``ctx``'s models."""
    router = APIRouter()

    @router.post("/predict")
    async def predict(request: Request, top_k: int | None = None, model: str | None = None) -> dict:
        """Classify one cloud: JSON ``{"points": [[x, y, z], ...]}``, raw little-endian float32
        (``application/octet-stream``, P x 3), ``application/x-npy``, or a multipart upload (field ``file``) of
        .ply / .pcd / .xyz / .pts / .txt / .off / .npy. ``model`` names the model when the server has several."""
        start = time.perf_counter()
        served = ctx.served_model(model)
        p = served.predictor
        k = ctx.settings.top_k if top_k is None else top_k
        if not 1 <= k <= len(p.classes):
            raise BadCloud(f"top_k must be in 1..{len(p.classes)}")
        info, cloud = await cloud_of(ctx, request, p)
        probs = await served.batcher.submit(cloud)
        order = np.argsort(-probs)[:k]
        return {
            "model": p.name,
            "version": p.version,
            "class": p.classes[int(order[0])],
            "probability": float(probs[order[0]]),
            "top_k": [{"class": p.classes[int(i)], "probability": float(probs[i])} for i in order],
            "points_received": info["received"],
            "server_ms": (time.perf_counter() - start) * 1000,
        }

    return router


async def cloud_of(ctx: ServerContext, request: Request, p: Predictor) -> tuple[dict, np.ndarray]:
    """``{"received": points}`` and the prepared cloud of a ``/predict`` request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        pool = ctx.raw_pool if ctype == RAW_FLOAT32 else ctx.json_pool if ctype == "application/json" else ctx.pool
        return await pool.run("upload", ctx.job_meta(p, ctype=ctype), await request.body())
    try:
        form = await request.form()
    except Exception as err:
        raise HTTPProblem(400, f"malformed multipart body: {err}") from err
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadCloud(f"multipart upload needs a file field named 'file' ({', '.join(UPLOAD_SUFFIXES)})")
    data, filename = await upload.read(), upload.filename or ""
    return await ctx.pool.run("upload", ctx.job_meta(p, filename=filename), data)
