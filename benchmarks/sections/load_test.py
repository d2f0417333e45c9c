"""docs/results.md's load-test sections (``benchmarks/load_test.py``, ``benchmarks/load_clients.py``), and the
clauses the README's headline quotes from them."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import RESULTS, glob, load, num, slug, source, table


def load_test_files(root: Path) -> list[Path]:
    return glob(root, "load_test.json") + glob(root, "*/load_test.json") + glob(root, "*/*/load_test.json")


def binary_p99(d: dict) -> float:
    return ((d.get("goal") or {}).get("pooled_p99_ms") or {}).get("binary", float("inf"))


def served_model(d: dict) -> str:
    """The checkpoint a load test served: its artifact folder is ``<checkpoint stem>-<points>-<format>``."""
    return Path(d.get("artifact") or "").name.split(f"-{d.get('num_points')}-")[0]


def ran_on(rel: Path) -> str | None:
    """The device folder a load test's report lies in (``<results>/<device-id>/<test>/load_test.json``), if any."""
    parts = rel.relative_to(RESULTS).parts
    return parts[0] if len(parts) == 3 else None


def server_clause(d: dict, rel: Path, shipped: str) -> str:
    """One load test for the headline: what it served and where, its open-loop binary p99 against the goal, the
    model alone."""
    srv, g = d.get("server") or {}, d.get("goal") or {}
    errors = sum(r.get("errors", 0) for r in d.get("rows", []) if r.get("payload") == "binary")
    model = served_model(d)
    what = f"the shipped {model}" if model == shipped else model
    device = ran_on(rel)
    where = f" on `{device}`" if device else ""
    return (
        f"{what} {d.get('format')}{where} at {d.get('num_points')} points, {srv.get('threads')} thread(s): p99 "
        f"{binary_p99(d):.2f} ms over {g.get('open_loop_requests')} requests, {errors} errors, goal "
        f"{'met' if g.get('met') else 'missed'}, the model alone p50 "
        f"{(d.get('model_only') or {}).get('p50_ms', float('nan')):.2f} ms in the same run "
        f"([table](docs/results.md#{slug(load_test_title(d, rel))}))"
    )


def other_load_tests(tests: list[dict]) -> str:
    """The binary p99 range of the student's other load tests (other settings, code or host days), so the headline's
    best runs are read beside them."""
    others = sorted(binary_p99(t) for t in tests)
    if not others:
        return ""
    span = f"{others[0]:.2f}–{others[-1]:.2f}"
    return f"; {len(others)} other student load test(s) here, other settings or days: p99 {span} ms"


def load_test_title(d: dict, rel: Path) -> str:
    """The section heading: what was served, how, and the report's folder (one model's tests on several devices, or
    with several settings, each get their own heading and anchor)."""
    srv = d.get("server") or {}
    what = f"{d.get('format', '?')}, {d.get('num_points', '?')} points, {srv.get('threads', '?')} threads"
    if srv.get("http") == "h11":
        what += f", {srv.get('loop')} + h11"
    if srv.get("keep_awake"):
        what += ", keep-awake"
    name = Path(d.get("artifact") or "").name
    model = served_model(d) if f"-{d.get('num_points')}-" in name else d.get("model", "?")
    folder = rel.parent.relative_to(RESULTS)
    return f"Load test: {model} ({what})" + (f" in {folder}" if folder.parts else "")


def time_split_lines(d: dict) -> list[str]:
    """Where an open-loop request's time went (load tests that recorded it), one line per payload."""
    out = []
    for kind, t in (d.get("time_split") or {}).items():
        out += [
            f"Where an open-loop {kind} request's time went (means): {num(t['latency_mean_ms'])} ms = the model's "
            f"runtime call {num(t['model_call_mean_ms'])} ms ({num(t['clouds_per_call'])} clouds per call) + the "
            f"rest of the server {num(t['server_rest_mean_ms'])} ms + HTTP and the client "
            f"{num(t['http_and_client_mean_ms'])} ms.",
            "",
        ]
    return out


def section(root: Path) -> list[str]:
    """The load tests (``benchmarks/load_test.py``) and the two load clients compared (``load_clients.py``)."""
    lines = []
    for rel in load_test_files(root):
        d = load(root, rel)
        g, srv = d.get("goal") or {}, d.get("server") or {}
        runs = ", ".join(num(x) for x in g.get("open_loop_p99_ms_per_run", []))
        pooled = g.get("pooled_p99_ms") or {}
        lines += [
            f"### {load_test_title(d, rel)}",
            "",
            f"{d.get('cpu', '?')}; `pointkd serve` with {srv.get('threads', '?')} threads, max batch "
            f"{srv.get('max_batch', '?')}, {srv.get('parse_workers', 'no')} parse worker processes; "
            + (
                f"the model alone, batch 1, p50 {num(d['model_only']['p50_ms'])} ms in the same run; "
                if "model_only" in d
                else ""
            )
            + f"{d.get('cloud_points_sent', '?')}-point clouds sent on 127.0.0.1; client "
            f"{g.get('client', '?')} on the same cores. Goal: {g.get('target', '?')}: "
            f"**{'met' if g.get('met') else 'missed'}**, pooled p99 over {g.get('open_loop_requests', '?')} requests "
            + ", ".join(f"{k} {num(v)} ms" for k, v in pooled.items())
            + f" (binary per run: {runs}).",
            "",
        ]
        rows = [
            [
                r["payload"],
                r["mode"],
                r.get("concurrency") or "–",
                r["requests"],
                r["errors"],
                num(r.get("throughput_rps"), 0),
                num(r.get("p50_ms")),
                num(r.get("p95_ms")),
                num(r.get("p99_ms")),
                f"{num(r['server_p50_ms'])} / {num(r['server_p99_ms'])}" if "server_p50_ms" in r else "–",
            ]
            for r in d.get("rows", [])
        ]
        header = ["payload", "mode", "concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"]
        header.append("server p50 / p99 ms")
        lines += [*table(header, rows, "llrrrrrrrr"), "", *time_split_lines(d), source(rel), ""]
    rel = RESULTS / "load_clients.json"
    d = load(root, rel)
    if d:
        rows = [
            [r["client"], r["run"], r["requests"], r["errors"], num(r["p50_ms"]), num(r["p95_ms"]), num(r["p99_ms"])]
            for r in d.get("rows", [])
        ]
        lines += ["### Load-test clients", "", "The same open-loop load sent by two clients on the same cores.", ""]
        header = ["client", "run", "requests", "errors", "p50 ms", "p95 ms", "p99 ms"]
        lines += [*table(header, rows, "lrrrrrr"), "", source(rel), ""]
    return lines
