"""Attacks on a real ``python -m pointkd serve`` subprocess on 127.0.0.1 (bounded in count and time): slowloris
headers, a slow body, an idle flood past the connection limit, huge and many headers, slow uploads past the global
body budget, missing and wrong keys, and TLS with a certificate the test makes. Each attack must end in a bounded
time with a clear status while health keeps answering. The deadlines are shortened (1-2 s) to keep the suite short;
benchmarks/edge_attacks.py measures the defaults."""

from __future__ import annotations

import contextlib
import os
import platform
import select
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from serving.launch import free_port, start_server, stop_server

KEY = "edge-test-key"
LIMITS = {
    "--idle-timeout-s": "1",
    "--header-timeout-s": "2",
    "--body-timeout-s": "1",
    "--min-body-rate-kib": "64",
    "--max-header-kib": "8",
    "--max-header-fields": "50",
    "--max-connections": "120",
    "--body-budget-mb": "3",
    "--max-body-mb": "2",
}
SERVE = ("--threads", "1", "--parse-workers", "0", "--api-key", KEY, *(x for kv in LIMITS.items() for x in kv))


@pytest.fixture(scope="module")
def server(tiny_artifact):
    port = free_port()
    proc = start_server(tiny_artifact, port, *SERVE, quiet=True, ready_timeout_s=600)
    try:
        yield port, proc
    finally:
        stop_server(proc)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # close with RST: no TIME_WAIT pile-up
    return s


def answer(s: socket.socket) -> tuple[int | None, bytes]:
    """The status and raw bytes the server sent before it closed ``s`` (None: closed without an answer)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    return status, data


def drip(socks: list[socket.socket], data: bytes, period_s: float, rounds: int) -> None:
    """Send ``data`` to each socket every ``period_s``, stopping on a socket once the server has answered it."""
    live = list(socks)
    for _ in range(rounds):
        time.sleep(period_s)
        answered, _, _ = select.select(live, [], [], 0)
        live = [s for s in live if s not in answered]
        if not live:
            return
        for s in live:
            with contextlib.suppress(OSError):
                s.sendall(data)


def healthy(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200


def rss_mb(proc) -> float:
    return psutil.Process(proc.pid).memory_info().rss / 2**20


def test_slowloris_headers_get_408_within_the_header_deadline(server):
    port, _ = server
    socks = [connect(port) for _ in range(40)]
    start = time.monotonic()
    for s in socks:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    drip(socks, b"X", 0.5, 6)  # a header byte every 0.5 s: the idle timer alone would never fire
    assert healthy(port)
    results = [answer(s) for s in socks]
    took = time.monotonic() - start
    assert all(status == 408 for status, _ in results), {r[0] for r in results}
    assert b'{"error": "request headers not received within 2 s"}' in results[0][1]
    assert took < 2 + 3, took


def test_a_slow_body_gets_408_within_grace_plus_its_rate(server):
    port, _ = server
    s = connect(port)
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/octet-stream\r\n"
    s.sendall(head.encode() + b"Content-Length: 1200000\r\n\r\n")
    start = time.monotonic()
    drip([s], b"\0" * 10, 0.2, 20)  # 10 bytes every 0.2 s: far under 64 KiB/s
    status, data = answer(s)
    assert status == 408 and b"request body not received within 1 s" in data
    assert time.monotonic() - start < 1 + 2.5
    assert healthy(port)


def test_an_idle_flood_is_closed_and_the_connection_limit_answers_503(server):
    port, proc = server
    before = rss_mb(proc)
    start = time.monotonic()
    socks = [connect(port) for _ in range(100)]
    assert healthy(port)  # 101 connections of 120
    extra = [connect(port) for _ in range(40)]
    refused = [answer(s) for s in extra[-15:]]  # past 120: answered at once, then closed
    assert all(status == 503 and b"retry-after: 1" in data for status, data in refused), refused[:1]
    closed = [answer(s)[0] for s in socks]  # idle 1 s: closed without an answer
    took = time.monotonic() - start
    assert closed == [None] * len(socks) and took < 1 + 3, took
    assert healthy(port) and rss_mb(proc) - before < 30


@pytest.mark.parametrize(
    ("headers", "what"),
    [
        (b"X-Big: " + b"a" * (64 << 10) + b"\r\n", b"bytes"),
        (b"".join(b"X-%d: 1\r\n" % i for i in range(200)), b"over 50 header fields"),
        (b"X-Piece: " + b"b" * 5000 + b"\r\nX-Piece2: " + b"c" * 5000 + b"\r\n", b"bytes"),
    ],
    ids=["one 64 KiB header", "200 fields", "two 5 KB headers"],
)
def test_huge_and_many_headers_are_431(server, headers, what):
    port, _ = server
    s = connect(port)
    with contextlib.suppress(OSError):
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    status, data = answer(s)
    assert status == 431 and what in data, data[:200]


def test_a_64_mib_header_is_refused_before_it_is_held(server):
    port, proc = server
    before = rss_mb(proc)
    s = connect(port)
    sent = 0
    try:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        piece = b"z" * (1 << 20)
        for _ in range(64):
            s.sendall(piece)
            sent += len(piece)
    except OSError:
        pass
    status, _ = answer(s)
    assert status in (431, None) and sent < 16 << 20, sent
    assert rss_mb(proc) - before < 20 and healthy(port)


def test_slow_uploads_past_the_body_budget_are_503_and_rss_stays_bounded(server):
    port, proc = server
    before = rss_mb(proc)
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/octet-stream\r\n"
    socks, statuses = [], []
    for _ in range(4):  # 4 x 1.2 MB declared against a 3 MiB budget: the third and fourth are refused at once
        s = connect(port)
        s.sendall(head.encode() + b"Content-Length: 1200000\r\n\r\n" + b"\0" * 100_000)
        socks.append(s)
    time.sleep(0.3)
    for s in socks[2:]:
        status, data = answer(s)
        statuses.append(status)
        assert b"retry-after: 1" in data
    assert statuses == [503, 503] and healthy(port)
    for s in socks[:2]:
        s.close()
    time.sleep(0.3)  # the budget is given back with the connections
    cloud = np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32)
    r = httpx.post(
        f"http://127.0.0.1:{port}/predict",
        content=cloud.tobytes(),
        headers={"content-type": "application/octet-stream", "x-api-key": KEY},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert rss_mb(proc) - before < 40


def test_missing_and_wrong_keys_are_401(server):
    port, _ = server
    url = f"http://127.0.0.1:{port}"
    cloud = np.random.default_rng(1).standard_normal((100, 3)).astype(np.float32)
    raw = {"content-type": "application/octet-stream"}
    for headers in ({}, {"x-api-key": "nope"}, {"authorization": f"Bearer {KEY}0"}):
        r = httpx.post(f"{url}/predict", content=cloud.tobytes(), headers={**raw, **headers})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
        assert "error" in r.json()
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {KEY}"}).status_code == 200
    r = httpx.post(f"{url}/predict", content=cloud.tobytes(), headers={**raw, "x-api-key": KEY}, timeout=30)
    assert r.status_code == 200 and r.json()["top_k"], r.text


def test_tls_with_a_certificate_the_test_makes(tiny_artifact, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    port = free_port()
    args = ("--threads", "1", "--parse-workers", "0", "--api-key", KEY, "--ssl-certfile", str(tmp_path / "server.pem"))
    proc = start_server(tiny_artifact, port, *args, quiet=True, ready_timeout_s=600, tls_verify=client_ctx)
    try:
        url = f"https://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v2/health/ready", verify=client_ctx).status_code == 200
        assert httpx.get(f"{url}/v2", verify=client_ctx).status_code == 401
        r = httpx.get(f"{url}/v2", verify=client_ctx, headers={"x-api-key": KEY})
        assert r.status_code == 200 and r.json()["name"] == "pointkd"
        with pytest.raises(httpx.ConnectError):  # a certificate nobody vouches for
            httpx.get(f"{url}/v2/health/ready", verify=ssl.create_default_context())
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port
            httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
    finally:
        stop_server(proc)


# ------------------------------------------------------------------ memory given back after a burst


def test_a_drained_burst_trims_the_heap_once_per_interval(monkeypatch):
    """BodyBudget calls the trim (in a thread, TRIM_DELAY_S later) when its bytes drain after a large burst, not
    after a small one; a burst that drains within TRIM_EVERY_S of the last trim is trimmed when the interval ends
    (not skipped), and several such bursts share that one trim."""
    import asyncio

    import serving.edge as edge

    monkeypatch.setattr(edge, "TRIM_EVERY_S", 1.0)

    async def scenario() -> tuple[list[float], int]:
        calls: list[float] = []
        budget = edge.BodyBudget(64 << 20, trim_after=16 << 20, trim=lambda: calls.append(time.monotonic()) or 1)
        start = time.monotonic()
        budget.take(1 << 20)
        budget.give(1 << 20)  # a small burst: no trim
        for n in (10 << 20, 10 << 20):  # 20 MiB held at the peak, released in two steps
            budget.take(n)
        budget.give(10 << 20)
        assert budget.trims == 0  # not drained yet
        budget.give(10 << 20)
        await asyncio.sleep(edge.TRIM_DELAY_S + 0.2)
        assert len(calls) == 1
        for _ in range(2):  # drained twice more at once: one trim, at the end of the interval
            budget.take(20 << 20)
            budget.give(20 << 20)
        await asyncio.sleep(0.2)
        assert len(calls) == 1  # not yet: rate-limited
        await asyncio.sleep(edge.TRIM_EVERY_S)
        return [t - start for t in calls], budget.trims

    calls, trims = asyncio.run(scenario())
    assert trims == 2 and len(calls) == 2
    assert calls[0] >= edge.TRIM_DELAY_S and calls[1] >= calls[0] + edge.TRIM_EVERY_S - 0.1


def test_malloc_trim_is_glibcs_where_there_is_one():
    from serving.heap import malloc_trim

    trim = malloc_trim()
    if platform.libc_ver()[0] == "glibc":
        assert trim is not None and trim() in (0, 1)
    else:
        assert trim is None


ROOT = Path(__file__).resolve().parents[1]
MMAPPED_AFTER_A_LARGE_FREE = """
import ctypes, sys
import numpy as np
from serving.heap import set_mmap_threshold

class Mallinfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "fixed":
    assert set_mmap_threshold(1 << 20)
big = np.ones(4 << 20, np.uint8)  # 4 MiB: mapped (glibc's first threshold is 128 KiB), then freed
del big
held = np.ones(2 << 20, np.uint8)  # 2 MiB: mapped only if the threshold did not rise to 4 MiB
print(libc.mallinfo2().hblkhd >= (2 << 20))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_fixed_mmap_threshold_keeps_large_blocks_out_of_the_heap_after_a_large_free():
    """glibc raises its mmap threshold to the largest block freed: a 2 MiB block after a freed 4 MiB one comes from
    the heap, where its pages outlive it; with set_mmap_threshold(1 MiB) it is mapped on its own (unmapped at free)."""
    run = [sys.executable, "-c", MMAPPED_AFTER_A_LARGE_FREE]
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}  # a served test may have set it
    out = {
        m: subprocess.run([*run, m], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
        for m in ("dynamic", "fixed")
    }
    assert [o.stdout.strip() for o in out.values()] == ["False", "True"], [o.stderr for o in out.values()]


def test_set_mmap_threshold_checks_its_range_and_names_it_for_child_processes(monkeypatch):
    from serving import heap

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    for bad in (0, -1, heap.MAX_MMAP_THRESHOLD + 1):
        with pytest.raises(ValueError, match="mmap threshold"):
            heap.set_mmap_threshold(bad)
    monkeypatch.setattr(heap, "_glibc", lambda: None)
    assert heap.set_mmap_threshold(1 << 20) is False and "MALLOC_MMAP_THRESHOLD_" not in os.environ


# ------------------------------------------------------------------ large bodies spill to disk


@pytest.mark.parametrize("spool", [0, 100])
def test_a_body_past_the_spool_size_goes_through_a_temporary_file_intact(spool, monkeypatch):
    """In-process: BodyLimit writes a body past ``spool`` bytes to a temporary file (as it arrives, the chunks
    before the threshold included) and hands the app the same bytes; below it, or with spool 0, no file."""
    import asyncio
    import tempfile

    from serving.middleware import BodyLimit

    opened = []
    real = tempfile.TemporaryFile

    def counting(*args, **kwargs):
        f = real(*args, **kwargs)
        opened.append(f)
        return f

    monkeypatch.setattr(tempfile, "TemporaryFile", counting)
    chunks = [bytes([i]) * 40 for i in range(1, 8)]  # 280 bytes in 7 chunks

    def run(parts: list[bytes]) -> bytes:
        seen = []

        async def app(scope, receive, send):
            seen.append((await receive())["body"])

        messages = [{"type": "http.request", "body": c, "more_body": i < len(parts) - 1} for i, c in enumerate(parts)]

        async def receive():
            return messages.pop(0)

        async def send(message):
            raise AssertionError("no answer expected")

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
        asyncio.run(BodyLimit(app, limit=1 << 20, spool=spool)(scope, receive, send))
        return seen[0]

    assert run(chunks) == b"".join(chunks)
    assert len(opened) == (1 if spool else 0) and all(f.closed for f in opened)
    assert run(chunks[:2]) == b"".join(chunks[:2]) and len(opened) == (1 if spool else 0)  # 80 bytes: in memory


def test_a_spooled_upload_is_answered_like_any_other(tiny_artifact):
    """A real server with a 64 KiB spool: a 1.2 MiB raw body (spooled) and the same cloud as JSON get the same
    answer as a small body of the same points would."""
    port = free_port()
    proc = start_server(tiny_artifact, port, "--threads", "1", "--spool-body-mb", "0.0625", quiet=True)
    try:
        cloud = np.random.default_rng(5).standard_normal((100_000, 3)).astype("<f4")
        raw = {"content-type": "application/octet-stream"}
        url = f"http://127.0.0.1:{port}/predict"
        r = httpx.post(url, content=cloud.tobytes(), headers=raw, timeout=60)
        assert r.status_code == 200 and r.json()["points_received"] == 100_000, r.text
        r = httpx.post(url, json={"points": cloud[:20_000].tolist()}, timeout=60)
        assert r.status_code == 200 and r.json()["points_received"] == 20_000, r.text
    finally:
        stop_server(proc)
