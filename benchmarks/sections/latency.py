"""docs/results.md's section for ``benchmarks/latency.py``: export variants per model, format and thread count."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import RESULTS, load, num, source, table


def section(root: Path) -> list[str]:
    rel = RESULTS / "latency.json"
    d = load(root, rel)
    if not d:
        return []
    lines = [
        "### Export variants (`benchmarks/latency.py`)",
        "",
        f"{d.get('cpu', '?')}; batch 1; torch eager, the naive ONNX export, the rewritten ONNX and int8; "
        f"{d.get('created', '')}.",
        "",
    ]
    rows = [
        [
            f"{r['model']}@{r['points']}",
            r["format"],
            r["threads"],
            num(r.get("p50_ms")),
            num(r.get("p95_ms")),
            num(r.get("p99_ms")),
            num(r["size_bytes"] / 1024, 0) if r.get("size_bytes") else "–",
        ]
        for r in d.get("rows", [])
        if r.get("batch") == 1
    ]
    lines += table(["model@points", "format", "threads", "p50", "p95", "p99", "KiB"], rows, "llrrrrr")
    targets = d.get("targets") or []
    if targets:
        lines += ["", "Targets:", ""]
        lines += [f"- {t['target']}: {t['measured']} ({'met' if t.get('met') else 'missed'})" for t in targets]
    return [*lines, "", source(rel), ""]
