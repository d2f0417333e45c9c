"""docs/results.md's section for ``benchmarks/knn_op.py``: stock ONNX against the fused operators, per device."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import device_dirs, load, num, source, table


def section(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "knn_op.json"):
        d = load(root, rel)
        lines += [f"### Fused kNN operator: {rel.parent.name}", "", f"Batch 1, {d.get('checkpoint', '?')}.", ""]
        rows = []
        for r in d.get("rows", []):
            t = r.get("target")
            rows.append(
                [
                    r["points"],
                    r["threads"],
                    num(r["stock"]["p50_ms"], 3),
                    num(r["knn_only"]["p50_ms"], 3) if "knn_only" in r else "–",
                    num(r["fused"]["p50_ms"], 3),
                    f"{r.get('speedup_p50', 0):.2f}×",
                    "" if t is None else f"{'met' if t.get('met') else 'missed'} ({t.get('text', '')})",
                ]
            )
        header = ["points", "threads", "stock p50 ms", "kNN only p50 ms", "fused p50 ms", "speedup", "target"]
        lines += table(header, rows, "rrrrrrl")
        for points, par in (d.get("parity") or {}).items():
            lines += [
                "",
                f"Parity at {points} points: {par.get('rows_with_different_neighbours')} of {par.get('rows')} rows "
                f"with a different neighbour set over {par.get('clouds')} clouds, max |Δlogit| "
                f"{par.get('max_abs_dlogit', 0):.1e}.",
            ]
        lines += ["", source(rel), ""]
    return lines
