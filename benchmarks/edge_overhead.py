"""What serving.edge's protocol costs per request: uvicorn's stock httptools protocol against the edge subclass
(deadlines, header counts, the body budget), same uvloop, same trivial ASGI app, in a server subprocess each.

A client on one keep-alive connection sends ``--requests`` small POSTs (a 12 KiB body, as a raw 1024-point cloud)
back to back; the report gives the round trip's p50 / p99 / min per protocol, in alternating rounds so that drift
in the machine's load falls on both. Run: ``python benchmarks/edge_overhead.py`` ->
``benchmarks/results/edge_overhead.{md,json}``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pointkd.bench import harness
from serving.launch import free_port

RESULTS = Path(__file__).parent / "results"

SERVER = """
import sys, uvicorn
from serving.edge import edge_protocol
from serving.settings import EdgeLimits

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})

http = edge_protocol(EdgeLimits()) if sys.argv[2] == "edge" else "httptools"
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http=http, log_level="warning")
"""


def serve(kind: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), kind])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def client(port: int) -> tuple[socket.socket, Callable[[], None]]:
    """A keep-alive connection to ``port`` and one round trip on it: a 12 KiB POST, its answer read in full."""
    body = b"\0" * 12288
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def round_trip() -> None:
        s.sendall(request)
        data = b""
        while not data.endswith(b"ok"):
            data += s.recv(4096)

    return s, round_trip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_args(
        ap,
        out="DIR/NAME: writes DIR/NAME.{json,md} (default benchmarks/results/edge_overhead)",
        threads=None,
        repeats=2000,
        warmup=200,
        rounds=4,
        repeats_flags=("--requests", "--repeats"),  # requests per protocol, over all rounds
    )
    args = ap.parse_args()
    args.requests = args.repeats
    servers = {kind: serve(kind) for kind in ("stock", "edge")}
    clients = {kind: client(port) for kind, (_, port) in servers.items()}
    try:
        times = harness.interleaved({k: fn for k, (_, fn) in clients.items()}, args.requests, args.rounds, args.warmup)
    finally:
        for s, _ in clients.values():
            s.close()
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    rows = {}  # by protocol: {"requests", "p50_ms", "p99_ms", "min_ms"}
    for kind, t in times.items():
        s = harness.summary(t, quantiles=(50, 99), low=True)
        rows[kind] = {"requests": s.pop("runs"), **s}
    lines = [
        "# Edge protocol overhead: uvicorn's httptools protocol vs serving.edge's subclass",
        "",
        f"`python benchmarks/edge_overhead.py --requests {args.requests} --rounds {args.rounds}`: one keep-alive "
        "connection, 12 KiB POST bodies back to back, a trivial ASGI app, uvloop.",
        "",
        "| protocol | requests | p50 ms | p99 ms | min ms |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {k} | {r['requests']} | {r['p50_ms']} | {r['p99_ms']} | {r['min_ms']} |" for k, r in rows.items()]
    report = {"device": harness.device_header(), "requests": args.requests, "rounds": args.rounds, "rows": rows}
    harness.write(*harness.out_stem(args.out, RESULTS / "edge_overhead"), report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
