"""docs/results.md's section for this study: ONNX Runtime's TopK against the seeded TopK on real score rows."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, load, num, source, table

RESULT = STUDIES / "seeded_topk" / "seeded_topk.json"


def section(root: Path) -> list[str]:
    d = load(root, RESULT)
    if not d:
        return []
    by: dict[tuple, dict[str, float]] = {}
    bad: dict[tuple, int] = {}
    for r in d.get("rows", []):
        key = (r["points"], r["k"], r["threads"], r["layer"])
        by.setdefault(key, {})[r["variant"]] = r["p50_ms"]
        bad[key] = bad.get(key, 0) + r.get("mismatched_rows", 0)
    rows = []
    for key, v in by.items():
        ratio = v["seeded"] / v["plain"] if "seeded" in v and "plain" in v else None
        rows.append([*key, num(v.get("plain"), 3), num(v.get("seeded"), 3), num(ratio), bad[key]])
    lines = [
        "### Seeded TopK",
        "",
        f"{d.get('cpu', '?')}; ONNX Runtime's TopK on a student's real score rows.",
        "",
    ]
    header = ["points", "k", "threads", "layer", "plain ms", "seeded ms", "seeded / plain", "mismatched rows"]
    return [*lines, *table(header, rows, "rrrrrrrr"), "", source(RESULT), ""]
