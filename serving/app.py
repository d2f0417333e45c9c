"""The FastAPI app: KServe-v2 endpoints, a convenience ``/predict``, Prometheus ``/metrics``.

``create_app(artifact_dir, ServeSettings(...))``; the artifact is loaded in the lifespan (sha256s checked against
its manifest). Request bodies are parsed and resampled in a pool of worker threads (``parse_threads``), off the event
loop, so health checks keep answering; inference runs in a worker thread behind a
:class:`~serving.batcher.MicroBatcher`. Every error body is ``{"error": "..."}``; bad input is a 4xx, never a 500:
400 unreadable body, 404 unknown model or path, 405 method, 413 body too large, 415 content type, 422 a cloud the
model cannot take; 503 while not ready. HEAD works on every GET route.
"""

from __future__ import annotations

import asyncio
import gc
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import BatchStats, MicroBatcher
from .kserve import MAX_CLOUDS, BadRequest, clouds_of, input_tensor
from .metrics import ServerMetrics
from .middleware import BodyLimit, HeadAsGet, RequestMetrics
from .parsing import UPLOAD_SUFFIXES, UnsupportedMedia, json_values_limit, parse_body, parse_file
from .predictor import Predictor
from .preprocess import BadCloud, prepare
from .strict_json import BadJSON, BadNumbers, load_json


@dataclass
class ServeSettings:
    threads: int = 0  # ONNX Runtime intra-op threads (0: one per core)
    max_batch: int = 8
    max_delay_ms: float = 0.0  # 0: batch whatever queued while the model ran (Triton's default), no added wait
    max_body_bytes: int = 32 << 20
    max_points: int = 1_000_000
    top_k: int = 5
    spin: bool = True  # ONNX Runtime pool threads busy-wait between runs
    parse_threads: int = 2  # threads that parse and resample request bodies, off the event loop


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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
        row = (predictor.num_points, 3)
        batcher = MicroBatcher(predictor.predict, settings.max_batch, settings.max_delay_ms, record_batch, row)
        batcher.start()
        threads = max(1, settings.parse_threads)
        parse_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pointkd-parse")
        state.update(predictor=predictor, batcher=batcher, parse_pool=parse_pool)
        # Everything alive now (torch, onnx, open3d, the app) lives as long as the server. Left in the collected
        # heap, each full collection walks it: ~120 ms stalls every ~15 s under JSON load (benchmarks/load_test.py).
        gc.collect()
        gc.freeze()
        yield
        state.clear()
        await batcher.stop()
        parse_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="pointkd inference server",
        version="1",
        description="Point-cloud classification with a compiled pointkd artifact (KServe v2 + /predict).",
        lifespan=lifespan,
    )

    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # Outermost, so 413s and HEADs are counted too.
    app.add_middleware(RequestMetrics, metrics=metrics)
    add_error_handlers(app)

    async def off_loop(fn, *args):
        """``fn(*args)`` in the parse pool: parsing and resampling never block the event loop."""
        return await asyncio.get_running_loop().run_in_executor(state["parse_pool"], fn, *args)

    def ready_predictor() -> Predictor:
        if "predictor" not in state:
            raise HTTPProblem(503, "the model is not loaded yet")
        return state["predictor"]

    def model_named(name: str) -> Predictor:
        predictor = ready_predictor()
        if name != predictor.name:
            raise HTTPProblem(404, f"no model {name!r}; this server serves {predictor.name!r}")
        return predictor

    def prepared(predictor: Predictor, points: np.ndarray) -> np.ndarray:
        return prepare(points, predictor.num_points, predictor.min_points, settings.max_points)

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
        clouds = await off_loop(infer_clouds, p, await request.body())
        probs = await asyncio.gather(*(state["batcher"].submit(c) for c in clouds))
        out = np.stack(probs).astype(np.float32)
        return {
            "model_name": p.name,
            "model_version": p.version,
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": list(out.shape), "data": out.ravel().tolist()}
            ],
            "parameters": {"classes": [p.classes[i] for i in out.argmax(1)]},
        }

    def infer_clouds(p: Predictor, body: bytes) -> list[np.ndarray]:
        tensor = input_tensor(load_json(body, json_values_limit(settings.max_points, MAX_CLOUDS)))
        return [prepared(p, c) for c in clouds_of(tensor)]

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
        received, cloud = await cloud_of(request, p)
        probs = await state["batcher"].submit(cloud)
        order = np.argsort(-probs)[:k]
        return {
            "model": p.name,
            "version": p.version,
            "class": p.classes[int(order[0])],
            "probability": float(probs[order[0]]),
            "top_k": [{"class": p.classes[int(i)], "probability": float(probs[i])} for i in order],
            "points_received": received,
            "server_ms": (time.perf_counter() - start) * 1000,
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def cloud_of(request: Request, p: Predictor) -> tuple[int, np.ndarray]:
        """The number of points received and the prepared cloud of a ``/predict`` request."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            try:
                form = await request.form()
            except Exception as err:
                raise HTTPProblem(400, f"malformed multipart body: {err}") from err
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadCloud(f"multipart upload needs a file field named 'file' ({', '.join(UPLOAD_SUFFIXES)})")
            data, filename = await upload.read(), upload.filename or ""
            return await off_loop(read_and_prepare, p, lambda: parse_file(data, filename, settings.max_points))
        body = await request.body()
        return await off_loop(read_and_prepare, p, lambda: parse_body(ctype, body, settings.max_points))

    def read_and_prepare(p: Predictor, read) -> tuple[int, np.ndarray]:
        points = read()
        return (int(points.shape[0]) if points.ndim else 0), prepared(p, points)

    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error body is ``{"error": message}``, whatever raised it."""

    def answer(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    statuses = {HTTPProblem: None, BadJSON: 400, BadRequest: 400, BadCloud: 422, BadNumbers: 422, UnsupportedMedia: 415}
    for kind, status in statuses.items():

        async def handle(_: Request, err: Exception, status: int | None = status):
            return answer(status or err.status, getattr(err, "message", None) or str(err))

        app.add_exception_handler(kind, handle)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException):
        return answer(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError):
        body = {"error": "invalid request", "detail": jsonable(err.errors())}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(_: Request, err: Exception):
        return answer(500, f"internal server error ({type(err).__name__})")


def jsonable(value):
    """Validation error details with anything non-JSON (exceptions in ``ctx``) turned into strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
