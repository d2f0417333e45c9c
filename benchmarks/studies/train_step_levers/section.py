"""docs/results.md's section for this study: the campaign's training steps, today's code against an earlier commit,
per device (``<device-id>/train_step_levers.json`` beside this file)."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, device_dirs, load, num, source, table

FOLDER = STUDIES / "train_step_levers"
NAME = "train_step_levers.json"


def results(root: Path) -> list[Path]:
    """This study's result files, one per device, relative to root."""
    return device_dirs(root, NAME, FOLDER)


def fused_knn_clause(rows: dict) -> str:
    """How much faster the fused kNN made each step that has a row with it, against today's dense kNN."""
    gains = []
    for (label, code, centres), r in rows.items():
        current = rows.get((label, "current", centres))
        if code == "fused kNN" and current:
            gains.append(current["ms_p50"] / r["ms_p50"])
    if not gains:
        return ""
    return f"; the fused kNN (`auto`'s choice on CPU) makes steps {min(gains):.2f}–{max(gains):.2f}× faster"


def section(root: Path) -> list[str]:
    lines = []
    for rel in results(root):
        d = load(root, rel)
        h = d.get("host", {})
        lines += [
            f"### Training-step levers: {rel.parent.name}",
            "",
            f"{h.get('cpu', '?')}, {h.get('cores', '?')} cores, {h.get('threads', '?')} threads; batch 32 × "
            f"{h.get('points', '?')} points; median of {h.get('steps', '?')} steps after {h.get('warmup', '?')} "
            f"warm-up; baseline `{h.get('baseline', '?')}`, current `{h.get('current', '?')}`; {h.get('date', '')}.",
            "",
        ]
        base = {r["label"]: r for r in d.get("rows", []) if r.get("code") == "baseline" and r.get("status") == "ok"}
        rows = []
        for r in d.get("rows", []):
            ok = r.get("status") == "ok"
            b = base.get(r["label"])
            vs = ""
            if ok and r.get("code") != "baseline" and b:
                vs = f"{b['ms_p50'] / r['ms_p50']:.2f}× faster"
            rows.append(
                [
                    r["label"],
                    r.get("code", "–"),
                    num(r.get("ms_p50"), 0) if ok else r.get("status"),
                    f"{num(r.get('ms_min'), 0)}–{num(r.get('ms_max'), 0)}" if ok else "–",
                    vs,
                ]
            )
        lines += table(["step", "code", "ms p50", "min–max", "vs baseline"], rows, "llrrr")
        lines += ["", source(rel), ""]
    return lines
