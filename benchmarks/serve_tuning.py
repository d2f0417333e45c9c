"""Which ``pointkd serve`` settings meet the latency goal on this machine? Open-loop binary load per setting.

For each setting (artifact format x ONNX Runtime threads x spinning x keep-awake spinners x uvicorn's stack: uvloop
+ httptools, or asyncio + h11), the server is started on 127.0.0.1 and sent
real test clouds (1024 points, raw float32 to ``/predict``) on a fixed schedule (``--rate`` requests/s for
``--seconds``), as ``benchmarks/load_test.py``'s open loop does. The settings are interleaved over ``--rounds``
rounds (A B C .. A B C ..), so that a drift of the machine falls on all of them. Per setting it reports the pooled
p50/p95/p99 of all rounds, the worst round's p99, errors, and the CPU time the server's processes used per request
(its main process and its parse workers, with ``--keep-awake`` its spinners too; from /proc: robust to other load,
unlike wall time).

Why spinning matters here: an ONNX Runtime pool thread that busy-waits between runs keeps a core busy through the
whole gap between requests (on 2 cores: half the machine) -- the CPU the event loop, the parse workers and the
client need. -> ``benchmarks/results/<device-id>/serve_tuning.{json,md}``.

    python benchmarks/serve_tuning.py ARTIFACT [ARTIFACT ...]   # pause any background job first
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import sys
from pathlib import Path

import numpy as np

from pointkd.bench import harness
from pointkd.data import load_modelnet40
from pointkd.process import busy_cores, descendants
from pointkd.runtime.manifest import read_manifest
from pointkd.timing import percentile
from serving.launch import free_port, start_server, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import closed_loop, open_loop, payloads  # the load test's client, beside this file

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process of ``pids``."""
    out = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def one_round(artifact: Path, setting: dict, bodies: list, rate: float, seconds: float) -> dict:
    """Start a server with ``setting``, warm it, run one open loop; latencies and CPU per request."""
    port = free_port()
    args = ["--threads", str(setting["threads"]), "--parse-workers", str(setting["parse_workers"])]
    args += ["--spin" if setting["spin"] else "--no-spin"]
    args += ["--keep-awake" if setting.get("keep_awake") else "--no-keep-awake"]
    args += ["--loop", "asyncio", "--http", "h11"] if setting.get("stack") == "python" else []
    server = start_server(artifact, port, *args, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/predict"
        asyncio.run(closed_loop(url, bodies, 2, 100, 5))  # warm-up
        pids = [server.pid, *descendants(server.pid)]  # the server, its parse workers and spinners
        before = cpu_seconds(pids)
        latencies: list[float] = []
        row = asyncio.run(open_loop(url, bodies, rate, seconds, latencies))
        after = cpu_seconds(pids)
    finally:
        stop_server(server)
    main_ms = (after.get(server.pid, 0) - before.get(server.pid, 0)) * 1000
    worker_ms = sum(after[p] - before.get(p, after[p]) for p in after if p != server.pid) * 1000
    n = max(row["requests"], 1)
    return {**row, "latencies": latencies, "cpu_main_ms": main_ms / n, "cpu_workers_ms": worker_ms / n}


def pooled(rounds: list[dict]) -> dict:
    lat = [x for r in rounds for x in r["latencies"]]
    return {
        "requests": len(lat),
        "errors": sum(r["errors"] for r in rounds),
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "worst_round_p99_ms": max(r["p99_ms"] for r in rounds),
        "round_p99_ms": [r["p99_ms"] for r in rounds],
        "cpu_main_ms_per_request": float(np.median([r["cpu_main_ms"] for r in rounds])),
        "cpu_workers_ms_per_request": float(np.median([r["cpu_workers_ms"] for r in rounds])),
    }


def _name(row: dict) -> str:
    """The artifact folder and its format (older reports named the format only)."""
    return f"{row['artifact']} ({row['format']})" if "artifact" in row else row["format"]


def _percent(oa: float | None) -> str:
    return "–" if oa is None else f"{oa * 100:.2f}"


def markdown(report: dict) -> str:
    lines = [
        "# `pointkd serve` settings under open-loop load",
        "",
        f"{report['device']['cpu']}, {report['device']['cores']} cores (client and server share them; busy cores "
        f"before: {report['busy_cores_before']:.2f}). Raw float32 1024-point test clouds to `/predict` at "
        f"{report['rate']:g} requests/s, {report['seconds']:g} s per round, {report['rounds']} interleaved rounds "
        "per setting. CPU ms: the server's CPU time per request (main process; parse "
        "workers and keep-awake spinners). Stack: uvicorn on uvloop + httptools (C) or asyncio + h11 (Python).",
        "",
        "| artifact | format | OA % | threads | spin | keep awake | stack | parse workers | requests | errors | p50 ms "
        "| p95 ms | p99 ms | worst round p99 | CPU main | CPU workers |",
        "| --- | --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r.get('artifact', '–')} | {r['format']} | {_percent(r.get('oa'))} | {r['threads']} | "
            f"{'on' if r['spin'] else 'off'} | {'on' if r.get('keep_awake') else 'off'} | {r.get('stack', 'c')} | "
            f"{r['parse_workers']} | {r['requests']} | {r['errors']} | "
            f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['worst_round_p99_ms']:.2f} | "
            f"{r['cpu_main_ms_per_request']:.2f} | {r['cpu_workers_ms_per_request']:.2f} |"
        )
    best = min(report["rows"], key=lambda r: r["p99_ms"])
    lines += [
        "",
        f"Lowest pooled p99: {_name(best)}, {best['threads']} thread(s), spinning {'on' if best['spin'] else 'off'}"
        f"{', keep-awake' if best.get('keep_awake') else ''}"
        f"{', asyncio + h11' if best.get('stack') == 'python' else ''}"
        f", {best['parse_workers']} parse workers: {best['p99_ms']:.2f} ms "
        "(goal: p99 <= 10 ms at 50 requests/s).",
        "",
        f"Command: `python benchmarks/serve_tuning.py {report['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifacts", type=Path, nargs="+")
    parser.add_argument("--spin", choices=["on", "off", "both"], default="both")
    parser.add_argument("--parse-workers", type=int, nargs="+", default=[2], help="0: parse in server threads")
    parser.add_argument("--keep-awake", choices=["on", "off", "both"], default="off", help="idle-priority spinners")
    parser.add_argument(
        "--stack", choices=["c", "python", "both"], default="c", help="uvloop + httptools (c) or asyncio + h11"
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--data", default=None)
    harness.add_common_args(parser, threads=[1, 2], rounds=3)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--rounds, --rate and --seconds must be positive")
    try:
        manifests = {a: read_manifest(a) for a in args.artifacts}  # refuse a bad folder before any load
    except ValueError as err:
        parser.error(str(err))
    both = {"on": [True], "off": [False], "both": [True, False]}
    stacks = {"c": ["c"], "python": ["python"], "both": ["c", "python"]}[args.stack]
    grid = itertools.product(
        args.artifacts, args.threads, both[args.spin], both[args.keep_awake], stacks, args.parse_workers
    )
    settings = [
        {"artifact": a, "threads": t, "spin": s, "keep_awake": k, "stack": st, "parse_workers": w}
        for a, t, s, k, st, w in grid
    ]
    bodies = payloads(load_modelnet40(args.data).test_x[:64].numpy(), "binary")
    gc.collect()
    gc.freeze()  # the client's torch heap: a full collection would stall it and be charged to the server
    info = harness.device_header([max(args.threads)])
    busy = busy_cores()
    results: dict[int, list[dict]] = {i: [] for i in range(len(settings))}
    for rnd in range(args.rounds):
        for i, s in enumerate(settings):
            r = one_round(s["artifact"], s, bodies, args.rate, args.seconds)
            results[i].append(r)
            print(
                f"round {rnd + 1} {s['artifact'].name} threads {s['threads']} spin {s['spin']} keep-awake "
                f"{s['keep_awake']} stack {s['stack']}: p50 "
                f"{r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms, CPU {r['cpu_main_ms']:.2f}+{r['cpu_workers_ms']:.2f}"
                " ms/request",
                flush=True,
            )
    rows = []
    for i, s in enumerate(settings):
        rows.append(
            {
                "artifact": s["artifact"].name,
                "model": manifests[s["artifact"]]["model"]["name"],
                "format": manifests[s["artifact"]]["artifact_format"],
                "oa": manifests[s["artifact"]]["accuracy"]["oa"],
                **{k: s[k] for k in ("threads", "spin", "keep_awake", "stack", "parse_workers")},
                **pooled(results[i]),
            }
        )
    report = {
        "device": info,
        "busy_cores_before": busy,
        "rate": args.rate,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "artifacts": [str(a) for a in args.artifacts],
        "command": " ".join(sys.argv[1:] if argv is None else argv),
        "rows": rows,
    }
    harness.write(harness.out_folder(args.out, info), "serve_tuning", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
