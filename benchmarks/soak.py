"""Soak test of `pointkd serve`: valid and hostile traffic together for a set time, watched from outside.

Starts the server on a compiled artifact (``--server-args`` go to ``pointkd serve``), takes one reference answer
per test cloud, then for ``--seconds`` runs at once: valid clients on an open-loop schedule (``--rate`` requests/s,
raw float32, JSON and binary v2 infer in turn), hostile clients (``--hostile-rate``: lying PLY/PCD/NPY/OFF headers,
LZF bombs, deep and huge JSON, bad KServe shapes and binary headers, NaN clouds, oversized bodies, unknown types),
a health probe (``/v2/health/ready`` every ``--health-interval-s``) and an RSS sampler of the server and its
parse workers (every process under it). Reports status counts by traffic kind, the valid requests' p50/p99 and
how many got a wrong class (against the reference), health latency and failures, RSS over time, parse-worker
replacements, and whether the server survived. Writes ``OUT/<device-id>/soak.{json,md}``.

Run: ``python benchmarks/soak.py ARTIFACT_DIR --seconds 600`` (on an idle machine: client and server share it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np

from pointkd.bench import harness
from pointkd.bench.device import device_id
from pointkd.process import descendants
from pointkd.runtime.manifest import read_manifest
from pointkd.timing import on_schedule, percentile
from serving.launch import free_port, start_server, stop_server

RESULTS = Path(__file__).parent / "results"
HEADER = "Inference-Header-Content-Length"


# ------------------------------------------------------------------ traffic


def valid_requests(clouds: np.ndarray, model: str) -> list[tuple[str, bytes, dict]]:
    """``(path, body, headers)`` per cloud and per payload kind, cloud ``i`` at ``3 * i + kind``."""
    out = []
    for c in clouds:
        raw = c.astype("<f4").tobytes()
        out.append(("/predict", raw, {"content-type": "application/octet-stream"}))
        out.append(("/predict", json.dumps({"points": c.tolist()}).encode(), {"content-type": "application/json"}))
        tensor = {"name": "points", "shape": [1, *c.shape], "datatype": "FP32", "parameters": {}}
        tensor["parameters"]["binary_data_size"] = len(raw)
        head = json.dumps({"inputs": [tensor]}).encode()  # JSON output: the class is in its parameters
        out.append((f"/v2/models/{model}/infer", head + raw, {HEADER: str(len(head))}))
    return out


def upload(name: str, data: bytes) -> tuple[str, bytes, dict]:
    boundary = "soakboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return "/predict", body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def hostile_requests(model: str, max_body: int) -> list[tuple[str, bytes, dict]]:
    """One of each kind of hostile request (the soak cycles through them)."""
    infer = f"/v2/models/{model}/infer"
    ply = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\nproperty float x\nproperty float y\n"
    spin = b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
    spin += b"property float z\nelement junk 9223372036854775000\nend_header\n" + bytes(36)
    pcd = b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 900000000\nHEIGHT 1\n"
    pcd += b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 900000000\nDATA binary_compressed\n"
    npy = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 3), }"
    npy = npy.ljust(128 - 1, b" ") + b"\n"
    deep = b'{"points": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    binary_lie = json.dumps(
        {"inputs": [{"name": "points", "shape": [1, 10, 3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    ).encode()
    js = {"content-type": "application/json"}
    grid = np.round(np.random.default_rng(1).normal(size=(500, 3)))  # valid, but fewer distinct points than N
    return [
        upload("lying.ply", ply + b"property float z\nend_header\n" + bytes(64)),
        upload("spin.ply", spin),
        upload("bomb.pcd", pcd + (8).to_bytes(4, "little") + (10**9).to_bytes(4, "little") + bytes(8)),
        upload("lying.npy", npy + bytes(48)),
        upload("huge.off", b"OFF\n99999999 1 0\n0 0 0\n"),
        upload("garbage.xyz", b"1 2 three\n4 5\n" * 20),
        upload("random.pcd", np.random.default_rng(0).bytes(400)),
        ("/predict", deep, js),
        ("/predict", b'{"points": [[' + b"9" * 400 + b", 1, 2]]}", js),
        ("/predict", json.dumps({"points": [[True, 1, 2]] * 20}).encode(), js),
        ("/predict", json.dumps({"points": grid.tolist()}).encode(), js),
        ("/predict", np.full((64, 3), np.nan, "<f4").tobytes(), {"content-type": "application/octet-stream"}),
        ("/predict", bytes(13), {"content-type": "application/octet-stream"}),
        ("/predict", b"hello", {"content-type": "text/plain"}),
        ("/predict", bytes(max_body + 1), {"content-type": "application/octet-stream"}),
        ("/predict", b"--x\r\nbroken", {"content-type": "multipart/form-data; boundary=x"}),
        (infer, v2_json([2**62, 4, 3], [0]), js),
        (infer, v2_json([True, 1, 3], [0] * 3), js),
        (infer, binary_lie + bytes(120), {HEADER: str(len(binary_lie))}),
        (infer, b"{}", {HEADER: "99999999"}),
    ]


def v2_json(shape: list, data: list) -> bytes:
    return json.dumps({"inputs": [{"name": "points", "shape": shape, "datatype": "FP32", "data": data}]}).encode()


# ------------------------------------------------------------------ watching


def process_tree_rss_mb(root: int) -> tuple[float, float, int]:
    """RSS of ``root`` and the summed RSS of every process under it (the parse workers), in MiB; how many."""
    below = descendants(root)
    return rss_mb(root), sum(rss_mb(p) for p in below), len(below)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Soak:
    """The running tallies of one soak."""

    def __init__(self, base: str, server_pid: int, reference: dict[int, str]):
        self.base = base
        self.server_pid = server_pid
        self.reference = reference
        self.status: dict[str, Counter] = {"valid": Counter(), "hostile": Counter()}
        self.valid_ms: list[float] = []
        self.wrong = 0
        self.health_ms: list[float] = []
        self.health_failures = 0
        self.rss: list[dict] = []

    async def send(self, client, kind: str, request: tuple[str, bytes, dict], index: int | None = None) -> None:
        path, body, headers = request
        start = time.perf_counter()
        try:
            async with client.post(self.base + path, data=body, headers=headers) as r:
                payload = await r.read()
                status = str(r.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            status, payload = type(err).__name__, b""
        self.status[kind][status] += 1
        if kind == "valid":
            self.valid_ms.append((time.perf_counter() - start) * 1000)
            if status == "200" and class_of(payload) != self.reference[index // 3]:
                self.wrong += 1

    async def probe_health(self, client, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                async with client.get(self.base + "/v2/health/ready") as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            self.health_ms.append((time.perf_counter() - start) * 1000)
            self.health_failures += not ok
            await asyncio.sleep(interval_s)

    async def sample_rss(self, interval_s: float, t0: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            server, workers, count = process_tree_rss_mb(self.server_pid)
            t = round(time.perf_counter() - t0, 2)
            self.rss.append({"t_s": t, "server_mb": server, "workers_mb": workers, "workers": count})
            await asyncio.sleep(interval_s)


def class_of(payload: bytes) -> str | None:
    doc = json.loads(payload)
    return doc["class"] if "class" in doc else doc["parameters"]["classes"][0]


async def soak(soak_: Soak, valid: list, hostile: list, args: argparse.Namespace) -> float:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128), timeout=timeout) as client:
        stop = asyncio.Event()
        t0 = time.perf_counter()
        watchers = [
            asyncio.create_task(soak_.probe_health(client, args.health_interval_s, stop)),
            asyncio.create_task(soak_.sample_rss(args.sample_s, t0, stop)),
        ]

        def one_valid(i: int):
            return soak_.send(client, "valid", valid[i % len(valid)], i % len(valid))

        def one_hostile(i: int):
            return soak_.send(client, "hostile", hostile[i % len(hostile)])

        await asyncio.gather(
            on_schedule(one_valid, args.rate, args.seconds), on_schedule(one_hostile, args.hostile_rate, args.seconds)
        )
        stop.set()
        await asyncio.gather(*watchers)
        return time.perf_counter() - t0


async def reference_classes(base: str, clouds: np.ndarray) -> dict[int, str]:
    """The class of each cloud, asked one at a time before the soak."""
    async with aiohttp.ClientSession() as client:
        out = {}
        for i, c in enumerate(clouds):
            body = c.astype("<f4").tobytes()
            headers = {"content-type": "application/octet-stream"}
            async with client.post(f"{base}/predict", data=body, headers=headers) as r:
                out[i] = class_of(await r.read())
        return out


# ------------------------------------------------------------------ report


def summarize(s: Soak, elapsed: float, survived: bool, metrics: str) -> dict:
    replacements = [ln for ln in metrics.splitlines() if ln.startswith("pointkd_parse_worker_replacements_total{")]
    statuses = {kind: dict(sorted(c.items())) for kind, c in s.status.items()}
    five_xx = sum(n for c in s.status.values() for st, n in c.items() if st.startswith("5"))
    peak = max(s.rss, key=lambda r: r["server_mb"] + r["workers_mb"]) if s.rss else {}
    return {
        "seconds": elapsed,
        "server_survived": survived,
        "status_counts": statuses,
        "server_errors_5xx": five_xx,
        "valid": {
            "requests": len(s.valid_ms),
            "wrong_class": s.wrong,
            "p50_ms": percentile(s.valid_ms, 50) if s.valid_ms else None,
            "p99_ms": percentile(s.valid_ms, 99) if s.valid_ms else None,
        },
        "health": {
            "probes": len(s.health_ms),
            "failures": s.health_failures,
            "p50_ms": percentile(s.health_ms, 50) if s.health_ms else None,
            "p99_ms": percentile(s.health_ms, 99) if s.health_ms else None,
            "max_ms": max(s.health_ms, default=None),
        },
        "rss_peak": peak,
        "rss_first": s.rss[0] if s.rss else {},
        "rss": s.rss,
        "worker_replacements": replacements,
    }


def markdown(report: dict) -> str:
    v, h, first, peak = report["valid"], report["health"], report["rss_first"], report["rss_peak"]
    lines = [
        "# Soak: `pointkd serve` under valid and hostile traffic",
        "",
        f"Device {report['device_id']} ({report['device']['cpu']}); model {report['model']} ({report['format']}); "
        f"{report['seconds']:.0f} s, valid {report['settings']['rate']:g}/s and hostile "
        f"{report['settings']['hostile_rate']:g}/s; server args: `{' '.join(report['settings']['server_args'])}`.",
        "",
        f"- server survived: **{report['server_survived']}**; 5xx answers: **{report['server_errors_5xx']}**",
        f"- valid requests: {v['requests']}, wrong class: {v['wrong_class']}, p50 {fmt(v['p50_ms'])} ms, "
        f"p99 **{fmt(v['p99_ms'])} ms**",
        f"- health probes: {h['probes']}, failures {h['failures']}, p50 {fmt(h['p50_ms'])} ms, "
        f"p99 {fmt(h['p99_ms'])} ms, max {fmt(h['max_ms'])} ms",
        f"- RSS server / workers (MiB): start {fmt(first.get('server_mb'))} / {fmt(first.get('workers_mb'))}, "
        f"peak {fmt(peak.get('server_mb'))} / {fmt(peak.get('workers_mb'))} at {peak.get('t_s')} s",
        f"- parse worker replacements: {'; '.join(report['worker_replacements']) or 'none'}",
        "",
        "| traffic | " + " | ".join(sorted({st for c in report["status_counts"].values() for st in c})) + " |",
    ]
    statuses = sorted({st for c in report["status_counts"].values() for st in c})
    lines.append("| --- |" + " ---: |" * len(statuses))
    for kind, counts in report["status_counts"].items():
        lines.append(f"| {kind} | " + " | ".join(str(counts.get(st, 0)) for st in statuses) + " |")
    return "\n".join(lines) + "\n"


def fmt(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=20.0, help="valid requests per second")
    parser.add_argument("--hostile-rate", type=float, default=20.0, help="hostile requests per second")
    parser.add_argument("--health-interval-s", type=float, default=0.25)
    parser.add_argument("--sample-s", type=float, default=1.0, help="RSS sampling interval")
    parser.add_argument("--clouds", type=int, default=32, help="test clouds to send")
    parser.add_argument("--data", default=None)
    parser.add_argument("--ready-timeout-s", type=float, default=300.0, help="longest wait for the server to start")
    parser.add_argument("--server-args", nargs=argparse.REMAINDER, default=["--threads", "2"])
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.hostile_rate < 0:
        parser.error("--seconds and --rate must be positive, --hostile-rate non-negative")
    from pointkd.data import load_modelnet40

    manifest = read_manifest(args.artifact)
    model = (manifest.get("model") or {}).get("name") or args.artifact.name
    clouds = load_modelnet40(args.data).test_x[: args.clouds].numpy()
    max_body = 32 << 20
    if "--max-body-mb" in args.server_args:
        max_body = int(float(args.server_args[args.server_args.index("--max-body-mb") + 1]) * (1 << 20))
    port = free_port()
    server = start_server(args.artifact, port, *args.server_args, quiet=True, ready_timeout_s=args.ready_timeout_s)
    base = f"http://127.0.0.1:{port}"
    try:
        s = Soak(base, server.pid, asyncio.run(reference_classes(base, clouds)))
        elapsed = asyncio.run(soak(s, valid_requests(clouds, model), hostile_requests(model, max_body), args))
        survived = server.poll() is None
        metrics = fetch(f"{base}/metrics") if survived else ""
    finally:
        stop_server(server)
    info = harness.device_header()
    report = {"device_id": device_id(info), "device": info, "model": model, "format": manifest["artifact_format"]}
    report["settings"] = {"rate": args.rate, "hostile_rate": args.hostile_rate, "server_args": args.server_args}
    report |= summarize(s, elapsed, survived, metrics)
    out = harness.out_folder(None, info, results=args.out_dir)  # --out-dir: the results root, per device below
    print(markdown(report))
    harness.write(out, "soak", report, markdown(report))
    return out


def fetch(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


if __name__ == "__main__":
    main()
