"""docs/results.md's section for this study: what the LSP loss costs per implementation and per distillation step."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, load, num, source, table

RESULT = STUDIES / "lsp_cost" / "lsp_cost.json"


def section(root: Path) -> list[str]:
    d = load(root, RESULT)
    if not d:
        return []
    h = d.get("host", {})
    lines = [
        "### LSP loss cost",
        "",
        f"{h.get('cpu', '?')}, {h.get('threads', '?')} threads; batch {h.get('batch_size', '?')} × "
        f"{h.get('points', '?')} points, {len(h.get('layer_pairs', []))} layer pairs, forward + backward.",
        "",
    ]
    rows = []
    for r in d.get("rows", []):
        diff = r.get("max_abs_diff_vs_dense")
        what = "LSP implementation" if r["kind"] == "lsp_impl" else "distillation step"
        rows.append([what, r["name"], num(r.get("ms_p50"), 0), "–" if diff is None else f"{diff:.1e}"])
    return [*lines, *table(["kind", "name", "ms p50", "max abs diff vs dense"], rows, "llrr"), "", source(RESULT), ""]
