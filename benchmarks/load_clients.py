"""How much the load generator itself adds: the same server, the same open-loop schedule, httpx vs aiohttp clients.

Client and server share this machine's 2 cores, so a client's own per-request CPU shows up as server latency. This
runs ``pointkd serve`` once and alternates the two clients (binary payloads, ``--rate`` requests/s for
``--seconds``, ``--repeats`` times each); ``benchmarks/load_test.py`` uses the cheaper one.

Run: ``python benchmarks/load_clients.py ARTIFACT_DIR`` -> ``benchmarks/results/load_clients.{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import open_loop, payloads, summary

from pointkd.bench import harness
from pointkd.data import load_modelnet40
from pointkd.process import busy_cores
from pointkd.timing import on_schedule
from serving.launch import free_port, start_server, stop_server

RESULTS = Path(__file__).parent / "results"


async def open_loop_httpx(url: str, bodies: list, rate: float, seconds: float) -> dict:
    """The open-loop schedule of ``load_test.open_loop``, sent with an httpx ``AsyncClient``."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=30) as client:

        async def one(i: int) -> None:
            nonlocal errors
            body, headers = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                ok = (await client.post(url, content=body, headers=headers)).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - start) * 1000)
            errors += not ok

        elapsed = await on_schedule(one, rate, seconds)
    return summary(latencies, errors, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--data", default=None)
    harness.add_common_args(parser, out="folder (default benchmarks/results)", threads=[2], repeats=2)
    args = parser.parse_args()
    if len(args.threads) != 1:
        parser.error("--threads takes one count here: the server's ONNX Runtime threads")
    args.threads = args.threads[0]
    bodies = payloads(load_modelnet40(args.data).test_x[:64].numpy(), "binary")
    gc.collect()
    gc.freeze()
    info, busy = harness.device_header([args.threads]), busy_cores()
    port = free_port()
    server = start_server(args.artifact, port, "--threads", str(args.threads), quiet=True)
    url = f"http://127.0.0.1:{port}/predict"
    clients = {"httpx": open_loop_httpx, "aiohttp": open_loop}
    rows = []
    try:
        asyncio.run(open_loop(url, bodies, args.rate, 2))  # warm-up
        for rep in range(1, args.repeats + 1):
            for name, run in clients.items():
                row = {"client": name, "run": rep} | asyncio.run(run(url, bodies, args.rate, args.seconds))
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        stop_server(server)
    versions = {"httpx": httpx.__version__, "aiohttp": aiohttp.__version__}
    report = {"cpu": info["cpu"], "device": info, "busy_cores_before": busy, "artifact": str(args.artifact)}
    report |= {"versions": versions, "rows": rows}
    lines = [
        "# Load-generator overhead: httpx vs aiohttp against the same server",
        "",
        f"`{args.artifact}`, binary payloads, open loop at {args.rate:g} requests/s for {args.seconds:g} s per run, "
        f"clients alternating. CPU: {report['cpu']} (client and server share it; busy cores before: {busy:.2f}).",
        "",
        "| client | run | requests | errors | p50 ms | p95 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['client']} {versions[r['client']]} | {r['run']} | {r['requests']} | {r['errors']} | "
            f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    for name in clients:
        med = {q: float(np.median([r[q] for r in rows if r["client"] == name])) for q in ("p50_ms", "p99_ms")}
        lines.append(f"\n{name}: median p50 {med['p50_ms']:.2f} ms, median p99 {med['p99_ms']:.2f} ms.")
    harness.write(args.out or RESULTS, "load_clients", report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
