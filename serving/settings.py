"""The server's settings (``pointkd serve``'s options), shared by the app, its lifespan and its routes."""

from __future__ import annotations

from dataclasses import dataclass


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
    parse_threads: int = 2  # threads that parse and resample: every body with parse_workers=0, else raw float32
    # Raw float32 /predict bodies go to threads of this process even with parse workers: no file reader touches them
    # (a length check, then numpy views the bytes), so a worker's isolation buys nothing there and its hop costs.
    raw_in_threads: bool = True
    # JSON /predict bodies too: orjson (memory-safe, no callbacks) parses them under the body limit and the JSON
    # value limit; the worker hop was most of JSON's p99 at 50 requests/s (benchmarks/results/<device>/load_test_*)
    json_in_threads: bool = True
    # Raw float32 and JSON /predict bodies up to this size, when they are parsed in this process, are parsed on the
    # event loop itself (a 1024-point JSON body: ~0.5 ms): two thread hand-offs per request cost more than that on
    # 2 busy cores (benchmarks/results/<device>/load_test_*). 0: always in a thread.
    inline_parse_bytes: int = 128 << 10
    spool_body_bytes: int = 8 << 20  # a body past this goes to a temporary file as it arrives (0: kept in memory)
    parse_timeout_s: float = 10.0  # a body's parsing and resampling in a worker process, at most
    worker_memory_x: float = 24.0  # a worker's address space: its baseline + this many times max_body_bytes
    outlier_filter: str = "none"  # pointkd.data.outliers: "none" | "sor", before the normalisation of every cloud
    keep_awake: bool = False  # an idle-priority spinner per CPU, so the vCPUs never halt (serving.keep_awake)
    api_keys: tuple[str, ...] = ()  # none: no access control (serving.access)
    guard_health: bool = False  # liveness and readiness need a key too
    open_metrics: bool = False  # /metrics answers without a key
    max_in_flight: int = 64  # requests in the app at once, health apart; 503 + Retry-After beyond (0: no limit)
    worker_faults: bool = False  # tests only (never the command line): workers obey FAULT_CTYPE bodies


@dataclass
class EdgeLimits:
    """``pointkd serve``'s network edge flags (:mod:`serving.edge`; 0 turns a limit off)."""

    idle_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    min_body_rate: int = 256 << 10  # bytes per second, on average, after the grace
    max_header_bytes: int = 16 << 10
    max_header_fields: int = 100
    max_connections: int = 1024
    body_budget_bytes: int = 128 << 20
    trim_after_bytes: int = 16 << 20  # malloc_trim(0) once the budget drains after a burst this large (glibc only)
    mmap_threshold_bytes: int = 1 << 20  # glibc: blocks this large mapped on their own, freed at once (0: glibc's own)
