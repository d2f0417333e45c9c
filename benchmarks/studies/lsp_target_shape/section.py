"""docs/results.md's section for this study: the LSP target per layer, σ = 1 against the median rule."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, load, num, source, table

RESULT = STUDIES / "lsp_target_shape" / "lsp_target_shape.json"


def section(root: Path) -> list[str]:
    """Per layer, how much neighbour structure the teacher's LSP target holds under σ = 1 and the median rule."""
    d = load(root, RESULT)
    if not d:
        return []
    lines = [
        "### The LSP target per layer: σ = 1 against the median rule",
        "",
        f"The campaign's teacher (`{d['teacher']}`) on {d['clouds']} training clouds × {d['points']} points, with a "
        "fresh student: the spread (standard deviation) of the teacher's RBF values K over each node's other "
        "neighbours, the share of them below 0.01, and the student's gradient norm from that layer's "
        f"λ·L_LSP (λ = {d['lambda']:g}).",
        "",
    ]
    rows = [
        [
            f"{r['teacher_layer']}, {r['student_layer']}",
            r["rule"],
            num(r["sigma"], 2),
            num(r["k_spread_others"], 3),
            f"{r['k_below_1e-2_others'] * 100:.1f} %",
            f"{r['entropy_over_log_u']:.3f}",
            f"{r['lsp']:.2e}",
            num(r["grad_norm"], 2),
        ]
        for r in d["rows"]
    ]
    header = ["layers (t, s)", "rule", "σ", "std K", "K < 0.01", "entropy / log \\|U\\|", "L_LSP", "grad norm"]
    return [*lines, *table(header, rows, "llrrrrrr"), "", source(RESULT), ""]
