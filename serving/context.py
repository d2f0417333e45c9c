"""What the routes share: the settings, the metrics, and the models and parse pool the lifespan loads.

:class:`ServerContext` finds the model a request names (or answers 404, 422 or 503) and builds the small ``meta``
dict a parse worker job gets (:mod:`serving.jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .batcher import MicroBatcher
from .errors import HTTPProblem
from .jobs import run_job
from .metrics import ServerMetrics
from .predictor import Predictor
from .settings import ServeSettings
from .workers import ProcessPool, ThreadPool


@dataclass
class Served:
    """One model of the server: its predictor and its micro-batcher."""

    predictor: Predictor
    batcher: MicroBatcher


@dataclass
class ServerContext:
    """The server's settings and metrics, and ``state``: ``"pool"`` (the parse pool) and ``"models"`` (name ->
    :class:`Served`), filled by the lifespan and emptied when it ends (``app.state.serving``, for tests and tools)."""

    settings: ServeSettings
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    state: dict = field(default_factory=dict)

    @property
    def pool(self) -> ProcessPool | ThreadPool:
        return self.state["pool"]

    @property
    def raw_pool(self) -> ProcessPool | ThreadPool:
        """Where raw float32 bodies are parsed: threads of this process (``raw_in_threads``), else :attr:`pool`."""
        return self.state.get("raw_pool") if self.settings.raw_in_threads and "raw_pool" in self.state else self.pool

    @property
    def json_pool(self) -> ProcessPool | ThreadPool:
        """Where JSON ``/predict`` bodies and v2 infer bodies (JSON, or a JSON header and raw tensor bytes) are
        parsed: threads of this process (``json_in_threads``), else :attr:`pool`."""
        return self.state.get("raw_pool") if self.settings.json_in_threads and "raw_pool" in self.state else self.pool

    async def parse(self, pool: ProcessPool | ThreadPool, job: str, meta: dict, body: bytes) -> tuple[dict, object]:
        """``pool.run(job, meta, body)``; a body of at most ``inline_parse_bytes`` bound for threads of this process
        is parsed here, on the event loop, instead (the same job and errors, without two thread hand-offs)."""
        if isinstance(pool, ThreadPool) and len(body) <= self.settings.inline_parse_bytes:
            return run_job(job, meta, body)
        return await pool.run(job, meta, body)

    def job_meta(self, p: Predictor, **extra) -> dict:
        """A parse job's ``meta``: the model's input size, the server's point limit and outlier filter, plus
        ``extra``."""
        s = self.settings
        return {
            "num_points": p.num_points,
            "min_points": p.min_points,
            "max_points": s.max_points,
            "outliers": s.outlier_filter,
            **extra,
        }

    def served_model(self, name: str | None, version: str | None = None) -> Served:
        """The model ``name`` (the only one when None) at ``version`` (any when None), or an :class:`HTTPProblem`."""
        models = self.state.get("models")
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
