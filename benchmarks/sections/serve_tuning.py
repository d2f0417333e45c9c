"""docs/results.md's section for ``benchmarks/serve_tuning.py``: server settings under open-loop load, per device and
per named run (``<device-id>/serve_tuning*/serve_tuning.json``)."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import device_dirs, glob, load, num, pct, source, table


def section(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "serve_tuning.json") + glob(root, "*/serve_tuning*/serve_tuning.json"):
        d = load(root, rel)
        dev = d.get("device") or {}
        lines += [
            f"### Server settings under load: {rel.parent.name}",
            "",
            f"{dev.get('cpu', '?')}, {dev.get('cores', '?')} cores shared by client and server; raw float32 clouds to "
            f"`/predict` at {num(d.get('rate'), 0)} requests/s, {d.get('rounds')} interleaved rounds of "
            f"{num(d.get('seconds'), 0)} s per setting. CPU ms: the server's CPU time per request (its workers' and "
            "keep-awake spinners' under workers). Stack: uvicorn on uvloop + httptools (c) or asyncio + h11.",
            "",
        ]
        rows = [
            [
                f"`{r.get('artifact', '?')}`",
                pct(r.get("oa")),
                r["threads"],
                "on" if r["spin"] else "off",
                "on" if r.get("keep_awake") else "off",
                r.get("stack", "–"),
                r.get("parse_workers", "?"),
                r["requests"],
                r["errors"],
                num(r["p50_ms"]),
                num(r["p99_ms"]),
                num(r["worst_round_p99_ms"]),
                num(r["cpu_main_ms_per_request"]),
                num(r["cpu_workers_ms_per_request"]),
            ]
            for r in d.get("rows", [])
        ]
        header = ["artifact", "OA %", "threads", "spin", "keep awake", "stack", "parse workers", "requests", "errors"]
        header += ["p50 ms", "p99 ms", "worst round p99", "CPU main ms", "CPU workers ms"]
        lines += [*table(header, rows, "lrrlllrrrrrrrr"), "", source(rel), ""]
    return lines
