"""docs/results.md's section for ``benchmarks/train_speed.py``: EdgeConv implementation, kNN backend and allocator."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import RESULTS, load, num, source, table

RESULT = RESULTS / "train_speed.json"


def section(root: Path) -> list[str]:
    d = load(root, RESULT)
    if not d:
        return []
    h = d.get("host", {})
    lines = [
        "### EdgeConv, kNN backend and allocator",
        "",
        f"{h.get('cpu_model', '?')}, {h.get('threads', '?')} threads; batch {h.get('batch_size', '?')} × "
        f"{h.get('points', '?')} points; median of {h.get('steps', '?')} steps; {h.get('date', '')}.",
        "",
    ]
    rows = [
        [
            r["model"],
            r["edgeconv"],
            r["knn"],
            r["allocator"],
            num(r.get("ms_p50"), 0),
            num(r.get("clouds_per_s"), 1),
            num(r.get("peak_rss_mb"), 0),
        ]
        for r in d.get("rows", [])
        if r.get("status") == "ok"
    ]
    header = ["model", "EdgeConv", "kNN", "allocator", "ms / step p50", "clouds/s", "peak RSS MB"]
    return [*lines, *table(header, rows, "llllrrr"), "", source(RESULT), ""]
