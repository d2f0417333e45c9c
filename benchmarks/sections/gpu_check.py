"""docs/results.md's section for ``benchmarks/gpu_check.py``'s training step (``<device-id>/train_step.json``)."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import device_dirs, load, num, source, table


def section(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "train_step.json"):
        d = load(root, rel)
        dev = d.get("device", {})
        lines += [f"### Training step on {dev.get('gpu') or dev.get('cpu') or rel.parent.name}", ""]
        rows = []
        for r in d.get("rows", []):
            ok = r.get("status") == "ok"
            rows.append(
                [
                    r.get("model"),
                    r.get("edgeconv"),
                    f"{r.get('batch')} × {r.get('points')}",
                    num(r.get("ms_p50"), 1) if ok else f"failed: {r.get('reason', '')}",
                    num(r.get("clouds_per_s"), 0) if ok else "–",
                ]
            )
        lines += table(["model", "EdgeConv", "batch × points", "ms / step p50", "clouds/s"], rows, "llrrr")
        lines += ["", source(rel), ""]
    return lines
