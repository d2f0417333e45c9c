"""docs/results.md's section for this study: dense kNN against torch-cluster's KD-tree, per input shape."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, load, num, source, table

RESULT = STUDIES / "knn_backends" / "knn_backends.json"


def section(root: Path) -> list[str]:
    d = load(root, RESULT)
    if not d:
        return []
    h = d.get("host", {})
    lines = ["### kNN backends", "", f"{h.get('cpu', '?')}, {h.get('threads', '?')} threads, k {h.get('k')}.", ""]
    rows = [
        [
            " × ".join(map(str, r["shape"])),
            num(r.get("dense_ms")),
            num(r.get("cluster_ms")),
            r.get("auto"),
            num(r.get("same_sets"), 5),
        ]
        for r in d.get("rows", [])
    ]
    header = ["input", "dense ms", "torch-cluster ms", "auto picks", "same neighbour sets"]
    return [*lines, *table(header, rows, "lrrlr"), "", source(RESULT), ""]
