"""The FastAPI app: KServe-v2 endpoints, a convenience ``/predict``, Prometheus ``/metrics``.

``create_app(artifact_dir, ServeSettings(...))``; the artifact is loaded in the lifespan (sha256s checked against
its manifest), inference runs in a worker thread behind a :class:`~serving.batcher.MicroBatcher`. Bad input is a
4xx with ``{"error": "..."}``, never a 500: 400 unreadable body, 404 unknown model, 413 body too large,
415 content type, 422 a cloud the model cannot take; 503 while not ready.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .batcher import BatchStats, MicroBatcher
from .metrics import ServerMetrics
from .parsing import (
    UPLOAD_SUFFIXES,
    UnsupportedMedia,
    parse_file,
    parse_float32,
    parse_json_points,
    parse_npy,
    points_from_json_value,
)
from .predictor import Predictor
from .preprocess import BadCloud, prepare


@dataclass
class ServeSettings:
    threads: int = 0  # ONNX Runtime intra-op threads (0: one per core)
    max_batch: int = 8
    max_delay_ms: float = 0.0  # 0: batch whatever queued while the model ran (Triton's default), no added wait
    max_body_bytes: int = 32 << 20
    max_points: int = 1_000_000
    top_k: int = 5
    spin: bool = True  # ONNX Runtime pool threads busy-wait between runs


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimit:
    """ASGI middleware: reads the request body up to ``limit`` bytes and answers 413 beyond it, before anything
    parses it (at once from a Content-Length, else as a chunked body streams in); the app then sees the body."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._reject(scope, receive, send, int(length))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._reject(scope, receive, send, size)
            chunks.append(chunk)
            more = message.get("more_body", False)
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send, size: int) -> None:
        message = f"request body of {size}+ bytes is over this server's limit of {self.limit} bytes"
        await JSONResponse({"error": message}, status_code=413)(scope, receive, send)


class RequestMetrics:
    """ASGI middleware: counts requests by endpoint (the matched route's path) and status, and times them."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def create_app(artifact: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    state: dict = {}

    def record_batch(stats: BatchStats) -> None:
        metrics.batch_size.observe(stats.size)
        metrics.queue_seconds.observe(stats.queue_s)
        metrics.inference_seconds.observe(stats.run_s)

    def load() -> Predictor:
        predictor = Predictor(artifact, settings.threads, settings.spin)
        # One cloud through the whole path before serving: it imports the resampler (open3d) and lets the runtime
        # allocate, so the first request is not slow and what they create is frozen below with the rest.
        cloud = np.random.default_rng(0).standard_normal((2 * predictor.num_points, 3)).astype(np.float32)
        predictor.predict(prepare(cloud, predictor.num_points, predictor.min_points, len(cloud))[None])
        return predictor

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        predictor = await asyncio.get_running_loop().run_in_executor(None, load)
        batcher = MicroBatcher(predictor.predict, settings.max_batch, settings.max_delay_ms, record_batch)
        batcher.start()
        state.update(predictor=predictor, batcher=batcher)
        # Everything alive now (torch, onnx, open3d, the app) lives as long as the server. Left in the collected
        # heap, each full collection walks it: ~120 ms stalls every ~15 s under JSON load (benchmarks/load_test.py).
        gc.collect()
        gc.freeze()
        yield
        state.clear()
        await batcher.stop()

    app = FastAPI(
        title="pointkd inference server",
        version="1",
        description="Point-cloud classification with a compiled pointkd artifact (KServe v2 + /predict).",
        lifespan=lifespan,
    )

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # Outside BodyLimit, so 413s are counted too. Plain ASGI rather than @app.middleware("http"), whose
    # BaseHTTPMiddleware adds a task group and a response re-stream to every request.
    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.exception_handler(HTTPProblem)
    async def problem(_: Request, err: HTTPProblem):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(BadCloud)
    async def bad_cloud(_: Request, err: BadCloud):
        return JSONResponse({"error": str(err)}, status_code=422)

    @app.exception_handler(UnsupportedMedia)
    async def bad_media(_: Request, err: UnsupportedMedia):
        return JSONResponse({"error": str(err)}, status_code=415)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError):
        return JSONResponse({"error": "invalid request", "detail": jsonable(err.errors())}, status_code=422)

    def ready_predictor() -> Predictor:
        if "predictor" not in state:
            raise HTTPProblem(503, "the model is not loaded yet")
        return state["predictor"]

    def model_named(name: str) -> Predictor:
        predictor = ready_predictor()
        if name != predictor.name:
            raise HTTPProblem(404, f"no model {name!r}; this server serves {predictor.name!r}")
        return predictor

    async def classify(predictor: Predictor, points: np.ndarray) -> np.ndarray:
        cloud = prepare(points, predictor.num_points, predictor.min_points, settings.max_points)
        return await state["batcher"].submit(cloud)

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        if "predictor" not in state:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True}

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> dict:
        p = model_named(name)
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

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict:
        p = model_named(name)
        doc = await json_body(request)
        inputs = doc.get("inputs") if isinstance(doc, dict) else None
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise HTTPProblem(400, "expected {'inputs': [{'name', 'shape', 'datatype', 'data'}]} with one input")
        tensor = inputs[0]
        if tensor.get("datatype") not in ("FP32", "FP64"):
            raise HTTPProblem(400, f"datatype must be FP32 or FP64, got {tensor.get('datatype')!r}")
        shape = tensor.get("shape")
        if not (isinstance(shape, list) and len(shape) in (2, 3) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise BadCloud(f"shape must be [B, P, 3] or [P, 3], got {shape!r}")
        data = points_from_json_value(tensor.get("data"), "data")
        if data.size != int(np.prod(shape)):
            raise BadCloud(f"data holds {data.size} numbers, shape {shape} needs {int(np.prod(shape))}")
        clouds = data.reshape(shape if len(shape) == 3 else [1, *shape])
        if clouds.shape[0] == 0 or clouds.shape[0] > 64:
            raise BadCloud(f"batch of {clouds.shape[0]} clouds; send 1 to 64 per request")
        probs = await asyncio.gather(*(classify(p, c) for c in clouds))
        out = np.stack(probs).astype(np.float32)
        return {
            "model_name": p.name,
            "model_version": p.version,
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": list(out.shape), "data": out.ravel().tolist()}
            ],
            "parameters": {"classes": [p.classes[i] for i in out.argmax(1)]},
        }

    @app.post("/predict")
    async def predict(request: Request, top_k: int | None = None) -> dict:
        """Classify one cloud: JSON ``{"points": [[x, y, z], ...]}``, raw little-endian float32
        (``application/octet-stream``, P x 3), ``application/x-npy``, or a multipart upload (field ``file``) of
        .ply / .pcd / .xyz / .pts / .txt / .off / .npy."""
        start = time.perf_counter()
        p = ready_predictor()
        k = settings.top_k if top_k is None else top_k
        if not 1 <= k <= len(p.classes):
            raise BadCloud(f"top_k must be in 1..{len(p.classes)}")
        points = await points_of(request)
        probs = await classify(p, points)
        order = np.argsort(-probs)[:k]
        return {
            "model": p.name,
            "version": p.version,
            "class": p.classes[int(order[0])],
            "probability": float(probs[order[0]]),
            "top_k": [{"class": p.classes[int(i)], "probability": float(probs[i])} for i in order],
            "points_received": int(points.shape[0]) if points.ndim else 0,
            "server_ms": (time.perf_counter() - start) * 1000,
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def json_body(request: Request):
        body = await request.body()
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HTTPProblem(400, f"body is not valid JSON: {err}") from err

    async def points_of(request: Request) -> np.ndarray:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            try:
                form = await request.form()
            except Exception as err:
                raise BadCloud(f"malformed multipart body: {err}") from err
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadCloud(f"multipart upload needs a file field named 'file' ({', '.join(UPLOAD_SUFFIXES)})")
            return parse_file(await upload.read(), upload.filename or "")
        body = await request.body()
        if ctype == "application/json":
            return parse_json_points(body)
        if ctype == "application/octet-stream":
            return parse_float32(body)
        if ctype in ("application/x-npy", "application/npy"):
            return parse_npy(body)
        raise UnsupportedMedia(
            f"content type {ctype or '(none)'!r} is not supported: send application/json, application/octet-stream "
            "(float32 x, y, z), application/x-npy, or multipart/form-data with a file"
        )

    return app


def jsonable(value):
    """Validation error details with anything non-JSON (exceptions in ``ctx``) turned into strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
