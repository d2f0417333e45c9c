"""docs/results.md's section for this study: the model after an idle gap, per device
(``<device-id>/idle_gap.json`` beside this file)."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, device_dirs, load, num, source, table

FOLDER = STUDIES / "idle_gap"


def section(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "idle_gap.json", FOLDER):
        d = load(root, rel)
        lines += [
            f"### The model after an idle gap: {rel.parent.name}",
            "",
            f"Batch-1 runs back to back vs each after a {num(d.get('gap_ms'), 0)} ms sleep (a server at 50 "
            "requests/s); CPU ms per run, the gap included.",
            "",
        ]
        rows = [
            [
                f"`{r['artifact']}`" if "artifact" in r else "–",  # older runs did not record it
                r["format"],
                r["threads"],
                "on" if r["spin"] else "off",
                "on" if r.get("keep_awake") else "off",
                num(r["back_to_back"]["p50_ms"]),
                num(r["after_gap"]["p50_ms"]),
                f"{r['slowdown_p50']:.2f}×",
                num(r["after_gap"]["p99_ms"]),
                num(r["back_to_back"]["cpu_ms"]),
                num(r["after_gap"]["cpu_ms"]),
            ]
            for r in d.get("rows", [])
        ]
        header = ["artifact", "format", "threads", "spin", "keep awake", "p50 back to back", "p50 after gap"]
        header += ["slowdown", "p99 after gap", "CPU ms back to back", "CPU ms with gap"]
        lines += [*table(header, rows, "llrllrrrrrr"), "", source(rel), ""]
    return lines
