"""docs/results.md's section for this study: every distillation method under the CPU budget
(``distill_compare_e1/`` and ``distill_smoke/`` beside this file)."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import STUDIES, load, mean_sd, source, table

FOLDER = STUDIES / "distill_compare"
RUNS = (("distill_compare_e1", "1 epoch at 512 points"), ("distill_smoke", "100-step smoke test"))


def section(root: Path) -> list[str]:
    lines = []
    for name, what in RUNS:
        rel = FOLDER / name / "distill_compare.json"
        d = load(root, rel)
        if not d:
            continue
        groups: dict[tuple, list[dict]] = {}
        for r in d.get("runs", []):
            key = (r["method"], r.get("kernel") or "–", r.get("student_model") or "–", r.get("lsp_lambda"))
            groups.setdefault(key, []).append(r)
        rows = [
            [
                method,
                kernel,
                student,
                "–" if lam is None else f"{lam:g}",
                ", ".join(str(r.get("seed")) for r in runs),
                mean_sd([r["oa"] for r in runs if r.get("oa") is not None]),
                mean_sd([r["macc"] for r in runs if r.get("macc") is not None]),
            ]
            for (method, kernel, student, lam), runs in groups.items()
        ]
        lines += [
            f"### Distillation comparison: {what}",
            "",
            f"Every method from the budget teacher `{d.get('teacher', '?')}`; test OA at 512 points.",
            "",
        ]
        lines += table(["method", "kernel", "student", "λ", "seeds", "OA %", "mAcc %"], rows, "llllrrr")
        lines += ["", source(rel), ""]
    if lines:
        lines = ["## Distillation under the CPU budget", "", *lines]
    return lines
