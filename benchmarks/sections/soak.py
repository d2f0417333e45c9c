"""docs/results.md's section for ``benchmarks/soak.py``: valid and hostile traffic together, per device."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import device_dirs, load, num, source, table


def section(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "soak.json"):
        d = load(root, rel)
        v, h = d.get("valid") or {}, d.get("health") or {}
        first, peak = d.get("rss_first") or {}, d.get("rss_peak") or {}
        st = d.get("settings") or {}
        lines += [
            f"### Soak: {rel.parent.name}",
            "",
            f"{d.get('model', '?')} ({d.get('format', '?')}), {num(d.get('seconds'), 0)} s of valid "
            f"({st.get('rate', '?')}/s) and hostile ({st.get('hostile_rate', '?')}/s) traffic together.",
            "",
        ]
        rows = [
            ["server survived", d.get("server_survived")],
            ["5xx answers", d.get("server_errors_5xx")],
            ["valid requests / wrong class", f"{v.get('requests')} / {v.get('wrong_class')}"],
            ["valid p50 / p99 ms", f"{num(v.get('p50_ms'))} / {num(v.get('p99_ms'))}"],
            ["health probes / failures", f"{h.get('probes')} / {h.get('failures')}"],
            ["health p99 / max ms", f"{num(h.get('p99_ms'))} / {num(h.get('max_ms'))}"],
            [
                "RSS server / workers MiB, start → peak",
                f"{num(first.get('server_mb'), 0)} / {num(first.get('workers_mb'), 0)} → "
                f"{num(peak.get('server_mb'), 0)} / {num(peak.get('workers_mb'), 0)}",
            ],
            ["parse-worker replacements", "; ".join(d.get("worker_replacements") or []) or "none"],
        ]
        lines += table(["what", "value"], rows, "lr")
        counts = d.get("status_counts") or {}
        statuses = sorted({s for c in counts.values() for s in c})
        if statuses:
            lines += [
                "",
                *table(
                    ["traffic", *statuses],
                    [[kind, *(c.get(s, 0) for s in statuses)] for kind, c in counts.items()],
                    "l" + "r" * len(statuses),
                ),
            ]
        lines += ["", source(rel), ""]
    return lines
