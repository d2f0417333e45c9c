"""The FastAPI app: Open Inference Protocol (KServe v2) endpoints, a convenience ``/predict``, Prometheus ``/metrics``.

``create_app(path, ServeSettings(...))`` serves one artifact folder, or every artifact of a model repository (a
folder of artifact folders, :mod:`serving.repository`); each is loaded in the lifespan (sha256s checked against its
manifest) behind its own :class:`~serving.batcher.MicroBatcher`. Request bodies are read and resampled by parse
workers (:mod:`serving.workers`: worker processes with a memory cap and a time limit, or threads with
``parse_workers=0``), off the event loop, so health checks keep answering. Every error body is ``{"error": "..."}``;
bad input is a 4xx, never a 500: 400 unreadable body, 404 unknown model, version or path, 405 method, 413 body too
large, 415 content type, 422 a cloud the model cannot take (or one that crashed or exhausted its worker); 503 while
not ready, or when a body's parsing ran out of time. HEAD works on every GET route.
"""

from __future__ import annotations

import asyncio
import gc
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

import pointkd

from .batcher import BatchStats, MicroBatcher
from .kserve import HEADER_LENGTH, BadRequest, InferOptions, header_length, infer_response
from .metrics import ServerMetrics
from .middleware import BodyLimit, HeadAsGet, RequestMetrics
from .parsing import UPLOAD_SUFFIXES, UnsupportedMedia
from .predictor import Predictor
from .preprocess import BadCloud
from .repository import model_folders
from .strict_json import BadJSON, BadNumbers
from .workers import ProcessPool, ThreadPool, WorkerFailed


@dataclass
class ServeSettings:
    threads: int = 0  # ONNX Runtime intra-op threads (0: one per core)
    max_batch: int = 8
    max_delay_ms: float = 0.0  # 0: batch whatever queued while the model ran (Triton's default), no added wait
    max_body_bytes: int = 32 << 20
    max_points: int = 1_000_000
    top_k: int = 5
    spin: bool = True  # ONNX Runtime pool threads busy-wait between runs
    parse_workers: int = 2  # worker processes that parse and resample bodies; 0: threads of this process instead
    parse_threads: int = 2  # with parse_workers=0: the threads that parse and resample bodies
    parse_timeout_s: float = 10.0  # a body's parsing and resampling in a worker process, at most
    worker_memory_x: float = 24.0  # a worker's address space: its baseline + this many times max_body_bytes
    worker_faults: bool = False  # tests only (never the command line): workers obey FAULT_CTYPE bodies


@dataclass
class Served:
    """One model of the server: its predictor and its micro-batcher."""

    predictor: Predictor
    batcher: MicroBatcher


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_pool(settings: ServeSettings, warm_points: int, metrics: ServerMetrics) -> ProcessPool | ThreadPool:
    if settings.parse_workers <= 0:
        return ThreadPool(settings.parse_threads)
    return ProcessPool(
        settings.parse_workers,
        memory_limit_bytes=int(settings.worker_memory_x * settings.max_body_bytes),
        timeout_s=settings.parse_timeout_s,
        warm_points=warm_points,
        faults=settings.worker_faults,
        on_replace=lambda reason: metrics.worker_replacements.labels(reason).inc(),
    )


def create_app(artifact: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    state: dict = {}

    def record_batch(stats: BatchStats) -> None:
        metrics.batch_size.observe(stats.size)
        metrics.queue_seconds.observe(stats.queue_s)
        metrics.inference_seconds.observe(stats.run_s)

    def load() -> tuple[dict[str, Predictor], ProcessPool | ThreadPool]:
        folders = model_folders(artifact)
        predictors = [Predictor(folder, settings.threads, settings.spin, name) for name, folder in folders]
        pool = parse_pool(settings, predictors[0].num_points, metrics)
        pool.start()
        return {p.name: p for p in predictors}, pool

    async def warm(served: Served) -> None:
        """One cloud through a parse worker and the model before serving (the first request is not slow)."""
        p = served.predictor
        cloud = np.random.default_rng(0).standard_normal((2 * p.num_points, 3)).astype(np.float32)
        _, prepared = await state["pool"].run("upload", job_meta(p, ctype="application/octet-stream"), cloud.tobytes())
        await served.batcher.submit(prepared)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        predictors, pool = await asyncio.get_running_loop().run_in_executor(None, load)
        state["pool"] = pool
        models = {}
        for name, p in predictors.items():
            batcher = MicroBatcher(
                p.predict, settings.max_batch, settings.max_delay_ms, record_batch, (p.num_points, 3)
            )
            batcher.start()
            models[name] = Served(p, batcher)
            await warm(models[name])
        state["models"] = models
        # Everything alive now (torch, onnx, the app) lives as long as the server. Left in the collected heap, each
        # full collection walks it: ~120 ms stalls every ~15 s under JSON load (benchmarks/load_test.py).
        gc.collect()
        gc.freeze()
        yield
        state.clear()
        for served in models.values():
            await served.batcher.stop()
        pool.close()

    app = FastAPI(
        title="pointkd inference server",
        version="1",
        description="Point-cloud classification with compiled pointkd artifacts (Open Inference Protocol + /predict).",
        lifespan=lifespan,
    )
    app.state.serving = state  # the parse pool and the models, for tests and tools

    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # Outermost, so 413s and HEADs are counted too.
    app.add_middleware(RequestMetrics, metrics=metrics)
    add_error_handlers(app)

    def job_meta(p: Predictor, **extra) -> dict:
        return {"num_points": p.num_points, "min_points": p.min_points, "max_points": settings.max_points, **extra}

    def served_model(name: str | None, version: str | None = None) -> Served:
        models = state.get("models")
        if models is None:
            raise HTTPProblem(503, "the models are not loaded yet")
        if name is None:
            if len(models) > 1:
                raise HTTPProblem(
                    422, f"this server serves {len(models)} models: name one with ?model= {sorted(models)}"
                )
            name = next(iter(models))
        if name not in models:
            raise HTTPProblem(404, f"no model {name!r}; this server serves {sorted(models)}")
        served = models[name]
        if version is not None and version != served.predictor.version:
            raise HTTPProblem(404, f"model {name!r} has no version {version!r}; it has {served.predictor.version!r}")
        return served

    @app.get("/v2")
    async def server_metadata() -> dict:
        return {"name": "pointkd", "version": pointkd.__version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        if "models" not in state:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True}

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> dict:
        return {"name": served_model(name, version).predictor.name, "ready": True}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def metadata(name: str, version: str | None = None) -> dict:
        return model_metadata(served_model(name, version).predictor)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        served = served_model(name, version)
        p = served.predictor
        meta = job_meta(p, json_length=header_length(request.headers.get(HEADER_LENGTH)))
        info, clouds = await state["pool"].run("infer", meta, await request.body())
        probs = await asyncio.gather(*(served.batcher.submit(c) for c in clouds))
        body, headers = infer_response(
            p.name, p.version, np.stack(probs).astype(np.float32), p.classes, InferOptions(**info)
        )
        return Response(body, headers=headers)

    @app.post("/predict")
    async def predict(request: Request, top_k: int | None = None, model: str | None = None) -> dict:
        """Classify one cloud: JSON ``{"points": [[x, y, z], ...]}``, raw little-endian float32
        (``application/octet-stream``, P x 3), ``application/x-npy``, or a multipart upload (field ``file``) of
        .ply / .pcd / .xyz / .pts / .txt / .off / .npy. ``model`` names the model when the server has several."""
        start = time.perf_counter()
        served = served_model(model)
        p = served.predictor
        k = settings.top_k if top_k is None else top_k
        if not 1 <= k <= len(p.classes):
            raise BadCloud(f"top_k must be in 1..{len(p.classes)}")
        info, cloud = await cloud_of(request, p)
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

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def cloud_of(request: Request, p: Predictor) -> tuple[dict, np.ndarray]:
        """``{"received": points}`` and the prepared cloud of a ``/predict`` request."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            return await state["pool"].run("upload", job_meta(p, ctype=ctype), await request.body())
        try:
            form = await request.form()
        except Exception as err:
            raise HTTPProblem(400, f"malformed multipart body: {err}") from err
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadCloud(f"multipart upload needs a file field named 'file' ({', '.join(UPLOAD_SUFFIXES)})")
        data, filename = await upload.read(), upload.filename or ""
        return await state["pool"].run("upload", job_meta(p, filename=filename), data)

    return app


def model_metadata(p: Predictor) -> dict:
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


def add_error_handlers(app: FastAPI) -> None:
    """Every error body is ``{"error": message}``, whatever raised it."""

    def answer(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    statuses = {HTTPProblem: None, BadJSON: 400, BadRequest: 400, BadCloud: 422, BadNumbers: 422, UnsupportedMedia: 415}
    for kind, status in statuses.items():

        async def handle(_: Request, err: Exception, status: int | None = status):
            return answer(status or err.status, getattr(err, "message", None) or str(err))

        app.add_exception_handler(kind, handle)

    @app.exception_handler(WorkerFailed)
    async def worker_failed(_: Request, err: WorkerFailed):
        return answer(err.status, err.message, {"retry-after": "1"} if err.status == 503 else None)

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
