"""The server's peak RSS under its worst memory case, against the bound its flags give (issue #30).

Against a real ``python -m pointkd serve`` subprocess on 127.0.0.1 (its RSS sampled every 20 ms, parse worker
processes apart: they have their own cap), in order:

1. ``idle``: ``--connections`` connections, each holding half a request line: the RSS per open connection.
2. ``json``: one JSON body of ``--json-mb`` (valid, parsed in the server's threads by default): what parsing a
   JSON body costs beyond its bytes (``json_factor``: the peak above the base, per body byte).
3. ``burst``: as many uploads of ``--max-body-mb`` as the body budget admits (``budget // max_body``), all sent at
   once to the last byte but one and held (the budget full), one more refused (503), then every last byte, so
   all of them are parsed together; JSON bodies, the costlier format. ``after`` is the RSS ``TRIM_EVERY_S`` + 1 s later.

The bound (docs/serving.md): ``base + body_budget + parse_threads x json_factor x max_body + max_connections x
per_connection``: every byte the budget admits held once (the body limit middleware keeps one copy), and at most
``parse_threads`` JSON parses (larger than ``--inline-parse-kib``) at once on top. With ``--trim-after-mb 0``
the same run shows the RSS that glibc keeps after the burst without ``malloc_trim``.

Run: ``python benchmarks/edge_memory.py ARTIFACT_DIR [--variant NAME=FLAGS ...]`` ->
``benchmarks/results/edge_memory.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import socket
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from pointkd.bench import harness
from serving.edge import TRIM_EVERY_S
from serving.launch import free_port, start_server, stop_server

RESULTS = Path(__file__).parent / "results"


class Rss:
    """A process's RSS in MiB: now, and the peak since :meth:`reset` (sampled every 20 ms in a thread)."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def reset(self) -> float:
        self.peak = self.now()
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.now())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def json_body(target_bytes: int, seed: int) -> bytes:
    """A valid ``{"points": ...}`` body of at most ``target_bytes`` and nearly that (float32 values written as
    ``json.dumps`` writes them, as the load test sends them)."""
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((max(1, target_bytes // 60), 3)).astype(np.float32).tolist()
    body = json.dumps({"points": points}).encode()
    while len(body) > target_bytes:
        points = points[: int(len(points) * target_bytes / len(body) * 0.999)]
        body = json.dumps({"points": points}).encode()
    return body


def request_head(length: int, ctype: str = "application/json") -> bytes:
    return f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n".encode()


def status(s: socket.socket, timeout: float = 120.0) -> int | None:
    s.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data and (chunk := s.recv(4096)):
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def idle_phase(port: int, rss: Rss, n: int) -> dict:
    before = rss.reset()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /predict HTT")
        socks.append(s)
    time.sleep(1.0)
    held = rss.now()
    for s in socks:
        s.close()
    return {
        "connections": n,
        "rss_before_mb": before,
        "rss_held_mb": held,
        "per_connection_kib": (held - before) * 1024 / n,
    }


def one_json_phase(port: int, rss: Rss, body: bytes) -> dict:
    time.sleep(1.0)
    before = rss.reset()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request_head(len(body)) + body)
    code = status(s)
    s.close()
    time.sleep(0.5)
    return {
        "body_mb": len(body) / 2**20,
        "status": code,
        "rss_before_mb": before,
        "rss_peak_mb": rss.peak,
        "json_factor": (rss.peak - before) / (len(body) / 2**20) - 1,  # beyond the body itself
    }


def burst_phase(port: int, rss: Rss, body: bytes, count: int) -> dict:
    time.sleep(1.0)
    before = rss.reset()
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request_head(len(body)) + body[:-1])
        socks.append(s)
    time.sleep(1.0)
    held = rss.now()
    extra = socket.create_connection(("127.0.0.1", port))
    extra.sendall(request_head(len(body)))
    refused = status(extra, 30)
    extra.close()
    for s in socks:
        s.sendall(body[-1:])
    codes = [status(s) for s in socks]
    for s in socks:
        s.close()
    time.sleep(TRIM_EVERY_S + 1.0)  # the heap's trim may wait out the interval since the last one
    after = rss.now()
    peak = max(rss.peak, held, after)  # the sampler can miss a rise that `held` or `after` saw
    return {
        "uploads": count,
        "body_mb": len(body) / 2**20,
        "statuses": codes,
        "one_more": refused,
        "rss_before_mb": before,
        "rss_held_mb": held,
        "rss_peak_mb": peak,
        "rss_after_mb": after,
    }


def run_variant(artifact: str, flags: list[str], args) -> dict:
    port = free_port()
    serve = ["--threads", "1", "--max-body-mb", str(args.max_body_mb), "--body-budget-mb", str(args.budget_mb)]
    serve += ["--max-connections", str(args.max_connections), "--max-points", "1000000", *flags]
    server = start_server(artifact, port, *serve, quiet=True, ready_timeout_s=600)
    rss = Rss(server.pid)
    try:
        base = rss.now()
        idle = idle_phase(port, rss, args.connections)
        one = one_json_phase(port, rss, json_body(min(args.json_mb, args.max_body_mb) << 20, 1))
        body = json_body((args.max_body_mb << 20) - 4096, 2)
        burst = burst_phase(port, rss, body, int(args.budget_mb // (len(body) / 2**20)))
    finally:
        rss.close()
        stop_server(server)
    parse = args.parse_threads * one["json_factor"] * args.max_body_mb
    bound = base + args.budget_mb + parse + args.max_connections * idle["per_connection_kib"] / 1024
    return {"flags": flags, "base_mb": base, "idle": idle, "one_json": one, "burst": burst, "bound_mb": bound}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--max-body-mb", type=int, default=32)
    ap.add_argument("--budget-mb", type=int, default=128)
    ap.add_argument("--max-connections", type=int, default=1024)
    ap.add_argument("--connections", type=int, default=400, help="idle connections held in phase 1")
    ap.add_argument("--json-mb", type=int, default=32, help="the one JSON body of phase 2 (at most --max-body-mb)")
    ap.add_argument("--parse-threads", type=int, default=2, help="the server's parse threads (its default)")
    ap.add_argument("--variant", action="append", default=None, help="NAME=SERVE FLAGS (repeatable)")
    harness.add_common_args(
        ap, out="DIR/NAME: writes DIR/NAME.{json,md} (default benchmarks/results/edge_memory)", threads=None
    )
    args = ap.parse_args()
    info = harness.device_header([1])
    variants = dict(v.split("=", 1) for v in (args.variant or ["default=", "no trim=--trim-after-mb 0"]))
    rows = {}
    for name, flags in variants.items():
        rows[name] = run_variant(args.artifact, shlex.split(flags), args)
        print(name, json.dumps(rows[name]), flush=True)
    keys = ("max_body_mb", "budget_mb", "max_connections", "connections", "json_mb", "parse_threads")
    limits = {k: getattr(args, k) for k in keys}
    report = {"device": info, "limits": limits, "variants": rows}
    lines = [
        "# Peak RSS of `pointkd serve` under its worst memory case (127.0.0.1)",
        "",
        f"`python benchmarks/edge_memory.py ARTIFACT` with `--max-body-mb {args.max_body_mb} --body-budget-mb "
        f"{args.budget_mb} --max-connections {args.max_connections}`; the server process's RSS (parse worker "
        "processes apart), sampled every 20 ms. Bound: base + body budget + parse threads x JSON factor x max body + "
        "max connections x per-connection RSS (JSON factor: an in-process JSON parse's peak beyond its body, per body "
        "byte, measured on one body alone).",
        "",
        "| variant | base MB | per connection KiB | JSON factor | burst: uploads x MB | statuses, one more | "
        "held MB | peak MB | bound MB | after MB |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        b = r["burst"]
        lines.append(
            f"| {name} {' '.join(r['flags'])} | {r['base_mb']:.1f} | {r['idle']['per_connection_kib']:.1f} | "
            f"{r['one_json']['json_factor']:.2f} | {b['uploads']} x {b['body_mb']:.1f} | {b['statuses']}, "
            f"{b['one_more']} | {b['rss_held_mb']:.1f} | {b['rss_peak_mb']:.1f} | {r['bound_mb']:.1f} | "
            f"{b['rss_after_mb']:.1f} |"
        )
    harness.write(*harness.out_stem(args.out, RESULTS / "edge_memory"), report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
