"""Hostile clients against `pointkd serve` on 127.0.0.1 with its default edge limits (issue #30): how many
connections each attack held, how long the server took to close them, the status it answered, whether health
answered during the attack, and the server's RSS before, at its peak and after.

Attacks (modest counts: the machine has 2 cores): slowloris headers (a header byte every second, never finished),
a slow body (10 bytes a second after complete headers), an idle flood (connections that send nothing), one 64 MiB
header, 200 header fields, and slow large uploads (8 MiB declared each, sent at a crawl) against the global body
budget. Run: ``python benchmarks/edge_attacks.py ARTIFACT_DIR`` -> ``benchmarks/results/edge_attacks.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket
import threading
import time
from pathlib import Path

import httpx
import psutil

from pointkd.bench import harness
from serving.launch import free_port, start_server, stop_server

RESULTS = Path(__file__).parent / "results"
KEY = "bench-key"


class RssWatch:
    """The peak RSS of a process (sampled every 50 ms) while in a ``with`` block."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = self.before = self.rss()
        self._stop = threading.Event()

    def rss(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    return s


def status_of(s: socket.socket) -> int | None:
    data = b""
    with contextlib.suppress(OSError):
        while chunk := s.recv(65536):
            data += chunk
            if len(data) > 4096:
                break
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def run_attack(port: int, socks: list[socket.socket], drip: bytes | None, period_s: float, limit_s: float) -> dict:
    """Keep dripping ``drip`` into every open socket until the server answers or closes each; time each close."""
    start = time.monotonic()
    live, closed_at, statuses, health = list(socks), {}, {}, []
    next_drip = start + period_s
    while live and time.monotonic() - start < limit_s:
        readable, _, _ = select.select(live, [], [], 0.1)
        for s in readable:
            statuses[s] = status_of(s)
            closed_at[s] = time.monotonic() - start
            live.remove(s)
        if drip is not None and time.monotonic() >= next_drip:
            next_drip += period_s
            for s in live:
                with contextlib.suppress(OSError):
                    s.sendall(drip)
        if len(health) < (time.monotonic() - start):  # about once a second
            try:
                health.append(httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code)
            except httpx.HTTPError:
                health.append(None)
    for s in socks:
        s.close()
    times = sorted(closed_at.values())
    counts: dict[str, int] = {}
    for st in statuses.values():
        counts[str(st)] = counts.get(str(st), 0) + 1
    return {
        "connections": len(socks),
        "still_open_at_limit": len(live),
        "statuses": counts,
        "close_s_median": round(times[len(times) // 2], 2) if times else None,
        "close_s_max": round(times[-1], 2) if times else None,
        "health_ok": sum(h == 200 for h in health),
        "health_checks": len(health),
    }


def attacks(port: int, n: int) -> dict:
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/octet-stream\r\n"

    def opened(count: int, first: bytes) -> list[socket.socket]:
        socks = []
        for _ in range(count):
            s = connect(port)
            if first:
                s.sendall(first)
            socks.append(s)
        return socks

    return {
        "slowloris headers": lambda: run_attack(port, opened(n, b"GET /v2 HTTP/1.1\r\nHost: x\r\n"), b"X", 1.0, 60),
        "slow body": lambda: run_attack(
            port, opened(n // 4, (head + "Content-Length: 1000000\r\n\r\n").encode()), b"\0" * 10, 1.0, 60
        ),
        "idle flood": lambda: run_attack(port, opened(n, b""), None, 1.0, 60),
        "one 64 MiB header": lambda: run_attack(
            port, opened(1, b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Huge: "), b"z" * (1 << 20), 0.01, 30
        ),
        "200 header fields": lambda: run_attack(
            port,
            opened(n // 4, b"GET /v2 HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))),
            None,
            1,
            30,
        ),
        "slow 8 MiB uploads": lambda: run_attack(
            port,
            opened(n // 4, (head + "Content-Length: 8388608\r\n\r\n").encode() + b"\0" * 65536),
            b"\0" * 4096,
            0.5,
            60,
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--connections", type=int, default=200)
    harness.add_common_args(
        ap, out="DIR/NAME: writes DIR/NAME.{json,md} (default benchmarks/results/edge_attacks)", threads=None
    )
    args = ap.parse_args()
    info = harness.device_header([1])
    port = free_port()
    server = start_server(args.artifact, port, "--api-key", KEY, "--threads", "1", quiet=True, ready_timeout_s=600)
    rows = {}
    try:
        watch_pid = server.pid
        for name, attack in attacks(port, args.connections).items():
            with RssWatch(watch_pid) as w:
                row = attack()
            time.sleep(1.0)
            row |= {
                "rss_before_mb": round(w.before, 1),
                "rss_peak_mb": round(w.peak, 1),
                "rss_after_mb": round(w.rss(), 1),
            }
            rows[name] = row
            print(name, row, flush=True)
    finally:
        stop_server(server)
    report = {"device": info, "connections": args.connections, "attacks": rows}
    lines = [
        "# Edge attacks on `pointkd serve` (default limits, 127.0.0.1)",
        "",
        f"`python benchmarks/edge_attacks.py {args.artifact} --connections {args.connections}`; the server's default "
        "deadlines: idle 5 s, headers 10 s, body 10 s grace + 256 KiB/s; 16 KiB / 100 header fields; 128 MiB body "
        "budget. RSS is the server process's (its parse workers apart).",
        "",
        "| attack | connections | statuses | close median s | close max s | open at limit | health ok | "
        "RSS before / peak / after MB |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['connections']} | {r['statuses']} | {r['close_s_median']} | {r['close_s_max']} | "
            f"{r['still_open_at_limit']} | {r['health_ok']}/{r['health_checks']} | "
            f"{r['rss_before_mb']} / {r['rss_peak_mb']} / {r['rss_after_mb']} |"
        )
    harness.write(*harness.out_stem(args.out, RESULTS / "edge_attacks"), report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
