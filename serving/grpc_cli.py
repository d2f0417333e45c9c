"""``pointkd serve``'s ``--grpc-port`` flag and what it does, importable without grpcio (the flag is off by default,
and only then is :mod:`serving.grpc_server` imported, which needs the ``grpc`` extra)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

MISSING = "--grpc-port needs grpcio and tritonclient[grpc]: pip install 'pointkd[grpc]'"


def add_grpc_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--grpc-port",
        type=int,
        default=0,
        metavar="P",
        help="also serve the Open Inference Protocol over gRPC (KServe v2 / Triton inference.GRPCInferenceService) "
        "on --host:P, in the same process, on the same models, limits and API keys (default 0: off; needs the grpc "
        "extra)",
    )


def attach_grpc(app: FastAPI, args: argparse.Namespace, parser: argparse.ArgumentParser) -> FastAPI:
    """``app`` with the gRPC service on ``args.grpc_port`` (when not 0), bounded by the HTTP server's edge flags; a
    parser error for a bad port or when grpcio or tritonclient's gRPC messages cannot be imported."""
    if not args.grpc_port:
        return app
    if not 0 < args.grpc_port < 65536 or args.grpc_port == args.port:
        parser.error(f"--grpc-port must be a TCP port other than --port {args.port}, got {args.grpc_port}")
    try:
        from .grpc_server import GrpcOptions, with_grpc
    except ImportError as err:
        parser.error(f"{MISSING} ({err})")
    options = GrpcOptions(
        port=args.grpc_port,
        host=args.host,
        max_metadata_bytes=int(args.max_header_kib * 1024),
        idle_timeout_s=args.idle_timeout_s,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    return with_grpc(app, options)
