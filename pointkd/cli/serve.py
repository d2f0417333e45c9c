"""``pointkd serve``: a compiled artifact (or a model repository) over HTTP, behind the network edge."""

from __future__ import annotations

import argparse
import sys

from .common import OUTLIER_FILTERS


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a compiled artifact over HTTP (FastAPI + uvicorn)",
        description="KServe-v2 endpoints (/v2/health/live, /v2/health/ready, /v2/models/<name>, "
        "/v2/models/<name>/infer), POST /predict for JSON / raw float32 / .npy / uploaded cloud files, and "
        "Prometheus /metrics. Requests are micro-batched. Clouds are centred, scaled to the unit sphere and "
        "resampled to the model's point count; send them z-up, as ModelNet40.",
    )
    serve.add_argument(
        "artifact",
        help="an artifact folder written by `pointkd compile` (with manifest.json), or a model repository: a folder "
        "of artifact folders, each served under its folder's name",
    )
    from serving.settings import ServeSettings  # a dataclass only: the server itself is imported when it runs

    d = ServeSettings  # the defaults
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--threads", type=int, default=d.threads, help=f"ONNX Runtime threads (default {d.threads}: one per core)"
    )
    serve.add_argument(
        "--max-batch", type=int, default=d.max_batch, help=f"largest micro-batch (default {d.max_batch})"
    )
    serve.add_argument(
        "--max-delay-ms",
        type=float,
        default=d.max_delay_ms,
        help=f"longest wait to fill a batch (default {d.max_delay_ms:g}: no added wait)",
    )
    serve.add_argument(
        "--max-body-mb",
        type=float,
        default=d.max_body_bytes / (1 << 20),
        help=f"largest request body (default {d.max_body_bytes / (1 << 20):g} MiB)",
    )
    serve.add_argument(
        "--max-points", type=int, default=d.max_points, help=f"largest cloud (default {d.max_points / 1e6:g}e6 points)"
    )
    serve.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=d.spin,
        help="ONNX Runtime threads busy-wait between runs (--spin) or sleep (--no-spin); "
        f"default {'--spin' if d.spin else '--no-spin'}",
    )
    serve.add_argument(
        "--parse-workers",
        type=int,
        default=d.parse_workers,
        help=f"worker processes that read and resample uploads (default {d.parse_workers}; 0: threads of the server, "
        "no isolation)",
    )
    serve.add_argument(
        "--raw-in-threads",
        action=argparse.BooleanOptionalAction,
        default=d.raw_in_threads,
        help="parse raw float32 bodies (application/octet-stream: no file reader) in threads of the server, the "
        "other formats in the worker processes (default); --no-raw-in-threads sends them to the workers too",
    )
    serve.add_argument(
        "--json-in-threads",
        action=argparse.BooleanOptionalAction,
        default=d.json_in_threads,
        help="parse JSON /predict bodies in threads of the server too (default: orjson under the body and value "
        "limits, no file reader); --no-json-in-threads sends them to the isolated workers",
    )
    serve.add_argument(
        "--spool-body-mb",
        type=float,
        default=ServeSettings.spool_body_bytes / (1 << 20),
        help="a request body past this many MiB is written to a temporary file as it arrives, not held in memory "
        f"(default {ServeSettings.spool_body_bytes >> 20}; 0: never)",
    )
    serve.add_argument(
        "--inline-parse-kib",
        type=float,
        default=ServeSettings.inline_parse_bytes / 1024,
        help="raw float32 and JSON bodies up to this size, when parsed in the server, are parsed on its event loop "
        f"rather than in a thread (default {ServeSettings.inline_parse_bytes >> 10}; 0: always in a thread)",
    )
    serve.add_argument(
        "--outlier-filter",
        choices=OUTLIER_FILTERS,
        default=d.outlier_filter,
        help="remove outliers from every cloud before it is normalised: none, or sor (statistical outlier removal, "
        "k 20, 2 standard deviations; pointkd.data.outliers, measured in benchmarks/results/robustness.md); "
        f"default {d.outlier_filter}",
    )
    serve.add_argument(
        "--parse-timeout-s",
        type=float,
        default=d.parse_timeout_s,
        help=f"longest a worker may spend on one body (default {d.parse_timeout_s:g} s)",
    )
    serve.add_argument(
        "--worker-memory-x",
        type=float,
        default=d.worker_memory_x,
        help="a worker's memory cap: its baseline + this many times --max-body-mb "
        f"(default {d.worker_memory_x:g}; JSON needs ~22x)",
    )
    serve.add_argument(
        "--keep-awake",
        action=argparse.BooleanOptionalAction,
        default=d.keep_awake,
        help="run an idle-priority busy process on each CPU so that an idle (virtual) CPU never halts: lower latency "
        "at low request rates, at the price of CPUs that show 100%% busy (default off)",
    )
    serve.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="uvicorn's event loop (default auto: uvloop when installed, as the serve extra does)",
    )
    serve.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="uvicorn's HTTP parser (default auto: httptools, a C parser, when installed; h11 is pure Python)",
    )
    serve.add_argument("--log-level", default="warning")
    _add_serve_edge(serve)
    from serving.grpc_cli import add_grpc_arguments

    add_grpc_arguments(serve)


def _add_serve_edge(serve: argparse.ArgumentParser) -> None:
    """``pointkd serve``'s network edge: API keys, TLS, deadlines and limits (serving.access, serving.edge)."""
    from serving.settings import EdgeLimits, ServeSettings

    e, d = EdgeLimits(), ServeSettings
    net = serve.add_argument_group("access control and TLS")
    net.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a key a client must send (Authorization: Bearer KEY or X-API-Key: KEY), else 401; repeatable; "
        "$POINTKD_API_KEY adds one. Without any key, every client may infer",
    )
    net.add_argument(
        "--api-key-file", action="append", default=[], metavar="FILE", help="a file of API keys, one a line"
    )
    net.add_argument(
        "--guard-health",
        action=argparse.BooleanOptionalAction,
        default=d.guard_health,
        help="liveness and readiness need a key too (default: they answer anyone, for load balancers)",
    )
    net.add_argument(
        "--open-metrics",
        action=argparse.BooleanOptionalAction,
        default=d.open_metrics,
        help="/metrics answers without a key (default: it needs one, as inference does)",
    )
    net.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    net.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    lim = serve.add_argument_group("deadlines and limits (0 turns one off)")
    lim.add_argument(
        "--idle-timeout-s",
        type=float,
        default=e.idle_timeout_s,
        help="close a connection that sends nothing for this long, new or between requests "
        f"(default {e.idle_timeout_s:g})",
    )
    lim.add_argument(
        "--header-timeout-s",
        type=float,
        default=e.header_timeout_s,
        help=f"a request's headers must arrive within this, else 408 (default {e.header_timeout_s:g})",
    )
    lim.add_argument(
        "--body-timeout-s",
        type=float,
        default=e.body_timeout_s,
        help="a body must arrive within this grace plus its size at --min-body-rate-kib, else 408 "
        f"(default {e.body_timeout_s:g})",
    )
    lim.add_argument(
        "--min-body-rate-kib",
        type=float,
        default=e.min_body_rate / 1024,
        help=f"slowest average body upload after the grace, KiB/s (default {e.min_body_rate / 1024:g})",
    )
    lim.add_argument(
        "--max-header-kib",
        type=float,
        default=e.max_header_bytes / 1024,
        help=f"request line + headers, KiB, else 431 (default {e.max_header_bytes / 1024:g})",
    )
    lim.add_argument(
        "--max-header-fields",
        type=int,
        default=e.max_header_fields,
        help=f"header fields per request, else 431 (default {e.max_header_fields})",
    )
    lim.add_argument(
        "--max-connections",
        type=int,
        default=e.max_connections,
        help=f"open connections; one more gets 503 + Retry-After and is closed (default {e.max_connections})",
    )
    lim.add_argument(
        "--max-in-flight",
        type=int,
        default=d.max_in_flight,
        help="requests the app works on at once; more get 503 + Retry-After, health is always answered "
        f"(default {d.max_in_flight})",
    )
    lim.add_argument(
        "--body-budget-mb",
        type=float,
        default=e.body_budget_bytes / (1 << 20),
        help="request body bytes the server holds at once, over all connections; a request that would pass it gets "
        f"503 + Retry-After (default {e.body_budget_bytes / (1 << 20):g} MiB)",
    )
    lim.add_argument(
        "--trim-after-mb",
        type=float,
        default=e.trim_after_bytes / (1 << 20),
        help="when the held body bytes drain to zero after a burst of at least this many MiB, glibc's "
        f"malloc_trim gives the freed memory back (default {e.trim_after_bytes / (1 << 20):g}; 0: never)",
    )
    lim.add_argument(
        "--mmap-threshold-kib",
        type=float,
        default=e.mmap_threshold_bytes / 1024,
        help="glibc: memory blocks at least this large (request bodies, JSON parse buffers) get a mapping of their "
        "own, returned to the system when freed, so the RSS falls back after a burst "
        f"(default {e.mmap_threshold_bytes / 1024:g}; 0: glibc's dynamic threshold, up to 32 MiB)",
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import uvicorn

    from serving import ServeSettings, create_app
    from serving.access import is_loopback, load_api_keys
    from serving.heap import MAX_MMAP_THRESHOLD, set_mmap_threshold
    from serving.launch import server_stack
    from serving.repository import model_folders
    from serving.settings import EdgeLimits

    from ..runtime.manifest import read_manifest

    if not 0 <= args.mmap_threshold_kib <= MAX_MMAP_THRESHOLD / 1024:
        parser.error(f"--mmap-threshold-kib must be in 0..{MAX_MMAP_THRESHOLD // 1024}")
    for _, folder in model_folders(args.artifact):
        read_manifest(folder)  # fail here, with one line, rather than inside the server's start-up
    try:
        keys = load_api_keys(args.api_key, args.api_key_file)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    if bool(args.ssl_keyfile) and not args.ssl_certfile:
        parser.error("--ssl-keyfile needs --ssl-certfile")
    if not keys and not is_loopback(args.host):
        print(
            f"WARNING: serving on {args.host}, beyond this machine, without an API key: anyone who can reach port "
            f"{args.port} may infer and read the metrics. Give --api-key / --api-key-file / $POINTKD_API_KEY "
            "(and --ssl-certfile / --ssl-keyfile for TLS).",
            file=sys.stderr,
        )
    settings = ServeSettings(
        threads=args.threads,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_points=args.max_points,
        spin=args.spin,
        parse_workers=args.parse_workers,
        raw_in_threads=args.raw_in_threads,
        json_in_threads=args.json_in_threads,
        inline_parse_bytes=int(args.inline_parse_kib * 1024),
        spool_body_bytes=int(args.spool_body_mb * (1 << 20)),
        parse_timeout_s=args.parse_timeout_s,
        worker_memory_x=args.worker_memory_x,
        outlier_filter=args.outlier_filter,
        keep_awake=args.keep_awake,
        api_keys=keys,
        guard_health=args.guard_health,
        open_metrics=args.open_metrics,
        max_in_flight=args.max_in_flight,
    )
    limits = EdgeLimits(
        idle_timeout_s=args.idle_timeout_s,
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        min_body_rate=int(args.min_body_rate_kib * 1024),
        max_header_bytes=int(args.max_header_kib * 1024),
        max_header_fields=args.max_header_fields,
        max_connections=args.max_connections,
        body_budget_bytes=int(args.body_budget_mb * (1 << 20)),
        trim_after_bytes=int(args.trim_after_mb * (1 << 20)),
        mmap_threshold_bytes=int(args.mmap_threshold_kib * 1024),
    )
    if limits.mmap_threshold_bytes:
        set_mmap_threshold(limits.mmap_threshold_bytes)  # before the app starts its threads and parse workers
    loop, http = server_stack(args.loop, args.http)
    protocol: object = http
    if http == "httptools":
        from serving.edge import edge_protocol  # imports httptools

        protocol = edge_protocol(limits)
    else:
        print("WARNING: --http h11 has no header, body or body-budget limits (they need httptools)", file=sys.stderr)
    from serving.grpc_cli import attach_grpc

    uvicorn.run(
        attach_grpc(create_app(args.artifact, settings), args, parser),
        host=args.host,
        port=args.port,
        loop=loop,
        http=protocol,
        log_level=args.log_level,
        access_log=False,
        timeout_keep_alive=max(args.idle_timeout_s, 0.001) if args.idle_timeout_s else 3600,
        h11_max_incomplete_event_size=int(args.max_header_kib * 1024) or None,
        limit_concurrency=None if http == "httptools" else (args.max_connections or None),
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    return 0
