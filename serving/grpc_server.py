"""``pointkd serve --grpc-port P``: the gRPC Open Inference Protocol service (:mod:`serving.grpc_service`) in the
HTTP server's process and event loop, on the same models, micro-batchers, parse pool, limits and API keys.

:func:`with_grpc` wraps the FastAPI app's lifespan: the ``grpc.aio`` server starts before the models load (so that
``ServerReady`` answers false and model RPCs UNAVAILABLE until they are) and stops, with a short grace, before they
are unloaded. Its bounds follow the HTTP server's flags: a message is at most ``--max-body-mb``
(``max_receive_message_length``; a larger one is refused RESOURCE_EXHAUSTED before it is parsed), metadata at most
``--max-header-kib``, an idle connection is closed after ``--idle-timeout-s``, and at most ``--max-in-flight`` RPCs
run at once (health apart; beyond, RESOURCE_EXHAUSTED), with gRPC's own concurrent-RPC cap a little above that.
With API keys, every RPC but ServerLive and ServerReady (those too with ``--guard-health``) needs metadata
``authorization: Bearer KEY`` or ``x-api-key: KEY``, else UNAUTHENTICATED. With ``--ssl-certfile`` it speaks TLS.

grpcio and tritonclient's generated messages (``tritonclient[grpc]``, the ``grpc`` extra) are imported by this
module only, which ``pointkd serve`` imports only with ``--grpc-port``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from fastapi import FastAPI

from .access import key_matches, presented_key
from .context import ServerContext
from .grpc_service import HEALTH_METHODS, METHODS, SERVICE, InferenceService, generic_handler

STOP_GRACE_S = 5.0  # RPCs still running at shutdown get this long to finish
HEALTH_HEADROOM = 16  # gRPC's own RPC cap sits this far above the in-flight limit, so health is still answered


@dataclass
class GrpcOptions:
    """Where the gRPC service listens and the HTTP server's edge bounds it follows (0 turns a bound off)."""

    port: int
    host: str = "127.0.0.1"
    max_metadata_bytes: int = 16 << 10  # --max-header-kib
    idle_timeout_s: float = 5.0  # --idle-timeout-s
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for an RPC without a valid key in its metadata (``authorization: Bearer K`` or
    ``x-api-key: K``, compared as :mod:`serving.access` compares HTTP keys); health is open unless ``guard_health``."""

    def __init__(self, ctx: ServerContext):
        s = ctx.settings
        self.keys = tuple(k.encode() for k in s.api_keys)
        self.open = frozenset() if s.guard_health else frozenset(f"/{SERVICE}/{m}" for m in HEALTH_METHODS)
        self.metrics = ctx.metrics

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        if not self.keys or details.method in self.open:
            return await continuation(details)
        metadata = [
            (k.lower().encode(), v if isinstance(v, bytes) else v.encode())
            for k, v in details.invocation_metadata or ()
        ]
        given = presented_key(metadata)
        if given is not None and key_matches(given, self.keys):
            return await continuation(details)
        message = "this server needs an API key: send metadata 'authorization: Bearer KEY' or 'x-api-key: KEY'"
        if given is not None:
            message = "the API key is not valid"
        method = details.method.rsplit("/", 1)[-1]  # the client's string: a label only when it is a known method
        self.metrics.requests.labels(f"grpc:{method if method in METHODS else 'other'}", "UNAUTHENTICATED").inc()

        async def refuse(request, context: grpc.aio.ServicerContext):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return grpc.unary_unary_rpc_method_handler(refuse)


def server_options(ctx: ServerContext, options: GrpcOptions) -> list[tuple[str, int]]:
    """The ``grpc.aio`` channel arguments that bound messages, metadata, streams and idle connections."""
    s = ctx.settings
    args = [
        ("grpc.max_receive_message_length", s.max_body_bytes),
        ("grpc.max_send_message_length", s.max_body_bytes),
        ("grpc.so_reuseport", 0),  # a port another server holds is an error here, not a shared port
    ]
    if options.max_metadata_bytes:
        args.append(("grpc.max_metadata_size", options.max_metadata_bytes))
    if options.idle_timeout_s:
        args.append(("grpc.max_connection_idle_ms", max(1, int(options.idle_timeout_s * 1000))))
    if s.max_in_flight:
        args.append(("grpc.max_concurrent_streams", s.max_in_flight))
    return args


def build_server(ctx: ServerContext, options: GrpcOptions) -> grpc.aio.Server:
    """A ``grpc.aio`` server (not started) answering ``inference.GRPCInferenceService`` from ``ctx``, bound to
    ``options.address``; RuntimeError if it cannot listen there."""
    limit = ctx.settings.max_in_flight
    server = grpc.aio.server(
        interceptors=[ApiKeyInterceptor(ctx)],
        options=server_options(ctx, options),
        maximum_concurrent_rpcs=limit + HEALTH_HEADROOM if limit else None,
    )
    server.add_generic_rpc_handlers((generic_handler(InferenceService(ctx)),))
    try:
        if options.ssl_certfile:
            key = Path(options.ssl_keyfile or options.ssl_certfile).read_bytes()
            credentials = grpc.ssl_server_credentials([(key, Path(options.ssl_certfile).read_bytes())])
            server.add_secure_port(options.address, credentials)
        else:
            server.add_insecure_port(options.address)
    except RuntimeError as err:
        raise RuntimeError(f"the gRPC service cannot listen on {options.address}: {err}") from err
    return server


def with_grpc(app: FastAPI, options: GrpcOptions) -> FastAPI:
    """``app`` (from :func:`serving.create_app`) with the gRPC service started and stopped by its lifespan."""
    inner = app.router.lifespan_context
    ctx: ServerContext = app.state.context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        server = build_server(ctx, options)
        await server.start()
        try:
            async with inner(a):
                try:
                    yield
                finally:
                    await server.stop(STOP_GRACE_S)  # before the batchers and the parse pool stop
        finally:
            await server.stop(None)

    app.router.lifespan_context = lifespan
    return app
