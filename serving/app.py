"""The FastAPI app: Open Inference Protocol (KServe v2) endpoints, a convenience ``/predict``, Prometheus ``/metrics``.

``create_app(path, ServeSettings(...))`` serves one artifact folder, or every artifact of a model repository (a
folder of artifact folders, :mod:`serving.repository`); each is loaded in the lifespan (sha256s checked against its
manifest) behind its own :class:`~serving.batcher.MicroBatcher`. Request bodies are read and resampled by parse
workers (:mod:`serving.workers`: worker processes with a memory cap and a time limit, or threads with
``parse_workers=0``), off the event loop, so health checks keep answering. Every error body is ``{"error": "..."}``;
bad input is a 4xx, never a 500: 400 unreadable body, 404 unknown model, version or path, 405 method, 413 body too
large, 415 content type, 422 a cloud the model cannot take (or one that crashed or exhausted its worker); 503 while
not ready, or when a body's parsing ran out of time. HEAD works on every GET route. With API keys
(:mod:`serving.access`) a request without a valid one is a 401; past ``max_in_flight`` requests, a 503 with
``Retry-After`` (health apart). Deadlines, header limits and the global body budget (408, 431, 503) are the
connection's, :mod:`serving.edge`.

This module assembles the app: the routes (:mod:`serving.oip_routes`, :mod:`serving.predict_routes`,
:mod:`serving.health_routes`) share a :class:`~serving.context.ServerContext`; the middleware is
:mod:`serving.middleware`, the error answers :mod:`serving.errors`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from .access import ApiKeyGuard
from .batcher import BatchStats, MicroBatcher
from .context import Served, ServerContext
from .errors import add_error_handlers
from .health_routes import health_routes
from .keep_awake import KeepAwake
from .metrics import ServerMetrics
from .middleware import BodyLimit, HeadAsGet, InFlightLimit, RequestMetrics
from .oip_routes import oip_routes
from .openapi import document_openapi
from .predict_routes import predict_routes
from .predictor import Predictor
from .repository import model_folders
from .settings import ServeSettings
from .workers import ProcessPool, ThreadPool


def parse_pool(settings: ServeSettings, warm_points: int, metrics: ServerMetrics) -> ProcessPool | ThreadPool:
    """Worker processes (memory cap, time limit, replacements counted in ``metrics``), or threads with
    ``parse_workers=0``."""
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
    """The server for ``artifact`` (one artifact folder or a model repository); it loads in the lifespan."""
    ctx = ServerContext(settings or ServeSettings())
    app = FastAPI(
        title="pointkd inference server",
        version="1",
        description="Point-cloud classification with compiled pointkd artifacts (Open Inference Protocol + /predict).",
        lifespan=serving_lifespan(ctx, artifact),
    )
    app.state.serving = ctx.state  # the parse pool and the models, for tests and tools
    app.state.context = ctx  # for what serves beside the routes (serving.grpc_server)

    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyLimit, limit=ctx.settings.max_body_bytes, spool=ctx.settings.spool_body_bytes)
    app.add_middleware(InFlightLimit, limit=ctx.settings.max_in_flight)
    s = ctx.settings
    app.add_middleware(ApiKeyGuard, keys=s.api_keys, guard_health=s.guard_health, open_metrics=s.open_metrics)
    # Outermost, so 401s, 413s, 503s and HEADs are counted too.
    app.add_middleware(RequestMetrics, metrics=ctx.metrics)
    add_error_handlers(app)
    for routes in (oip_routes, health_routes, predict_routes):
        app.include_router(routes(ctx))
    document_openapi(app)
    return app


def serving_lifespan(
    ctx: ServerContext, artifact: str | Path
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Load the models and start the parse pool (off the event loop), start a micro-batcher per model and warm each;
    on shutdown, stop the batchers and the pool."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictors, pool = await asyncio.get_running_loop().run_in_executor(None, load_models, ctx, artifact)
        ctx.state["pool"] = pool
        if (ctx.settings.raw_in_threads or ctx.settings.json_in_threads) and isinstance(pool, ProcessPool):
            ctx.state["raw_pool"] = ThreadPool(ctx.settings.parse_threads)
        models = {}
        for name, p in predictors.items():
            models[name] = Served(p, start_batcher(ctx, p))
            await warm(ctx, models[name])
        ctx.state["models"] = models
        keeper = KeepAwake()
        if ctx.settings.keep_awake:
            keeper.start()
            ctx.state["keep_awake"] = keeper
        # Everything alive now (torch, onnx, the app) lives as long as the server. Left in the collected heap, each
        # full collection walks it: ~120 ms stalls every ~15 s under JSON load (benchmarks/load_test.py).
        gc.collect()
        gc.freeze()
        yield
        raw_pool = ctx.state.get("raw_pool")
        ctx.state.clear()
        keeper.close()
        for served in models.values():
            await served.batcher.stop()
        pool.close()
        if raw_pool is not None:
            raw_pool.close()

    return lifespan


def load_models(ctx: ServerContext, artifact: str | Path) -> tuple[dict[str, Predictor], ProcessPool | ThreadPool]:
    """Every model of ``artifact`` (sha256s checked) by name, and the started parse pool."""
    s = ctx.settings
    predictors = [Predictor(folder, s.threads, s.spin, name) for name, folder in model_folders(artifact)]
    pool = parse_pool(s, predictors[0].num_points, ctx.metrics)
    pool.start()
    return {p.name: p for p in predictors}, pool


def start_batcher(ctx: ServerContext, p: Predictor) -> MicroBatcher:
    """A started micro-batcher for ``p`` that records its batches in the server's metrics."""

    def record_batch(stats: BatchStats) -> None:
        ctx.metrics.batch_size.observe(stats.size)
        ctx.metrics.queue_seconds.observe(stats.queue_s)
        ctx.metrics.inference_seconds.observe(stats.run_s)

    s = ctx.settings
    batcher = MicroBatcher(p.predict, s.max_batch, s.max_delay_ms, record_batch, (p.num_points, 3))
    batcher.start()
    return batcher


async def warm(ctx: ServerContext, served: Served) -> None:
    """One cloud through a parse worker and the model before serving (the first request is not slow)."""
    p = served.predictor
    cloud = np.random.default_rng(0).standard_normal((2 * p.num_points, 3)).astype(np.float32)
    _, prepared = await ctx.pool.run("upload", ctx.job_meta(p, ctype="application/octet-stream"), cloud.tobytes())
    await served.batcher.submit(prepared)
