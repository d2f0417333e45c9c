"""``POST /predict``: one cloud in (JSON, raw float32, .npy, or a multipart file upload), the top classes out."""

from __future__ import annotations

import time

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from .context import ServerContext
from .errors import HTTPProblem
from .parsing import RAW_FLOAT32, UPLOAD_SUFFIXES
from .predictor import Predictor
from .preprocess import BadCloud

INLINE_TYPES = (RAW_FLOAT32, "application/json")  # parsed without a file reader: on the loop when small


def predict_routes(ctx: ServerContext) -> APIRouter:
    """``POST /predict``, answering from ``ctx``'s models."""
    router = APIRouter()

    @router.post("/predict")
    async def predict(request: Request, top_k: int | None = None, model: str | None = None) -> Response:
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
        answer = {
            "model": p.name,
            "version": p.version,
            "class": p.classes[int(order[0])],
            "probability": float(probs[order[0]]),
            "top_k": [{"class": p.classes[int(i)], "probability": float(probs[i])} for i in order],
            "points_received": info["received"],
        }
        answer["server_ms"] = (time.perf_counter() - start) * 1000
        # Written by orjson and returned as a Response: FastAPI's validation and encoding of a dict are skipped.
        return Response(orjson.dumps(answer), media_type="application/json")

    return router


async def cloud_of(ctx: ServerContext, request: Request, p: Predictor) -> tuple[dict, np.ndarray]:
    """``{"received": points}`` and the prepared cloud of a ``/predict`` request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        pool = ctx.raw_pool if ctype == RAW_FLOAT32 else ctx.json_pool if ctype == "application/json" else ctx.pool
        meta, body = ctx.job_meta(p, ctype=ctype), await request.body()
        if ctype in INLINE_TYPES:  # no file reader: small ones are parsed on the loop
            return await ctx.parse(pool, "upload", meta, body)
        return await pool.run("upload", meta, body)
    try:
        form = await request.form()
    except Exception as err:
        raise HTTPProblem(400, f"malformed multipart body: {err}") from err
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadCloud(f"multipart upload needs a file field named 'file' ({', '.join(UPLOAD_SUFFIXES)})")
    data, filename = await upload.read(), upload.filename or ""
    return await ctx.pool.run("upload", ctx.job_meta(p, filename=filename), data)
