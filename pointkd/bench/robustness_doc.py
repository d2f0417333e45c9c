"""docs/results.md's robustness section (issue #31), rendered from the committed result files of
``benchmarks/robustness.py`` and ``benchmarks/knn_ties.py``; ``scripts/results_doc.py`` calls
:func:`render_robustness` with its own loader (which sees only files git tracks).

Every sentence with a number reads it from those files: the rows by model, format and outlier filter; the cost of
each compiled format and of graph reuse under corruption against its cost on the clean clouds; the kNN ties of the
short corrupted clouds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.corruptions import CORRUPTION_NAMES
from ..demo import SHIPPED

RESULTS = Path("benchmarks/results")
ROBUSTNESS, COST, TIES = RESULTS / "robustness.json", RESULTS / "robustness_prep_cost.json", RESULTS / "knn_ties.json"
PLOT = RESULTS / "robustness_levels.png"
PLAN, PLAN_RECORDS = Path("benchmarks/campaign/robustness.yaml"), RESULTS / "campaign" / "robustness"
PLAN2 = Path("benchmarks/campaign/robustness_outliers.yaml")
PLAN2_RECORDS = RESULTS / "campaign" / "robustness_outliers"
# The format and graph-reuse comparisons were measured on this pair (every format of its 2-graph copy), the served
# student when they ran; they answer what a compilation step costs under corruption, whichever model is served now.
COMPARED, COMPARED_FULL = "student_lsp_tail1024_g02.pt", "student_lsp_tail1024.pt"
# The teacher of "mCE vs teacher", the one whose rows were measured (the shipped teacher_tail1024b is its 8-epoch
# tail, 91.41 against 91.05 % clean); benchmarks/robustness.py references every other row to it.
REFERENCE_TEACHER = "teacher_tail1024.pt"

Loader = Callable[[Path, Any], Any]  # (root, relative path) -> the parsed JSON, or None when absent / untracked


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}"


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _signed(x: float) -> str:
    return f"{x * 100:+.1f}"


def _table(header: list[str], rows: list[list[Any]], align: str) -> list[str]:
    marks = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows
    ]


def _link(rel: Path) -> str:
    return f"[`{rel}`](../{rel})"


def _rows_by_key(d: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["model"], r.get("format", "torch"), r["outlier_filter"]): r for r in d["rows"]}


def main_table(d: dict[str, Any]) -> list[str]:
    """Every measured row, then the published ones."""
    rows = []
    for r in d["rows"]:
        sc, vs = r["scores"], (r.get("scores_vs") or {}).get("teacher")
        rows.append(
            [
                r["model"],
                r.get("format", "torch"),
                r["outlier_filter"],
                _pct(r["clean_oa"]),
                _pct(sc["mOA"]),
                _num(sc["mCE"]),
                _num(sc["RmCE"]),
                "–" if vs is None else _num(vs["mCE"]),
                *(_pct(sc["corruptions"][c]["oa"]) for c in CORRUPTION_NAMES),
            ]
        )
    pub = d.get("published") or {}
    ref = pub.get("dgcnn_oa")
    for name, mce in (pub.get("mce") or {}).items():
        dgcnn = bool(ref) and name == "DGCNN"
        per = [_pct(ref[c]) for c in CORRUPTION_NAMES] if dgcnn else ["–"] * len(CORRUPTION_NAMES)
        clean = _pct(ref["clean"]) if dgcnn else "–"
        moa = _pct(statistics.mean(ref[c] for c in CORRUPTION_NAMES)) if dgcnn else "–"
        rows.append([f"{name} (published)", "–", "–", clean, moa, _num(mce), "1.000" if dgcnn else "–", "–", *per])
    header = ["model", "format", "filter", "clean OA %", "mOA %", "mCE", "RmCE", "mCE vs teacher", *CORRUPTION_NAMES]
    return _table(header, rows, "lll" + "r" * (5 + len(CORRUPTION_NAMES)))


COMPARISONS: tuple[tuple[str, tuple[str, str], tuple[str, str]], ...] = (
    ("graph reuse (2 kNN graphs of 4)", (COMPARED_FULL, "torch"), (COMPARED, "torch")),
    ("ONNX fp32 export", (COMPARED, "torch"), (COMPARED, "onnx")),
    ("int8 (onnx-int8 against onnx fp32)", (COMPARED, "onnx"), (COMPARED, "onnx-int8")),
    ("served int8 against the torch checkpoint", (COMPARED, "torch"), (COMPARED, "onnx-int8")),
    ("fused kNN operators (onnx-fused against onnx)", (COMPARED, "onnx"), (COMPARED, "onnx-fused")),
)
"""(what, base row, changed row): each changed row's OA minus its base row's, clean and under corruption."""


def deltas(d: dict[str, Any]) -> list[dict[str, Any]]:
    """For each comparison of :data:`COMPARISONS` and filter where both rows were measured: the change in clean
    OA, in mOA, and per corruption (fractions, changed minus base)."""
    rows = _rows_by_key(d)
    out = []
    for what, base, changed in COMPARISONS:
        for f in ("none", "sor"):
            a, b = rows.get((*base, f)), rows.get((*changed, f))
            if a is None or b is None:
                continue
            out.append(
                {
                    "what": what,
                    "filter": f,
                    "clean": b["clean_oa"] - a["clean_oa"],
                    "mOA": b["scores"]["mOA"] - a["scores"]["mOA"],
                    "per": {
                        c: b["scores"]["corruptions"][c]["oa"] - a["scores"]["corruptions"][c]["oa"]
                        for c in CORRUPTION_NAMES
                    },
                    "identical": a["clean_oa"] == b["clean_oa"] and a["oa"] == b["oa"],
                }
            )
    return out


def delta_lines(d: dict[str, Any]) -> list[str]:
    """The table of :func:`deltas` and the answer it gives: does a format cost more under corruption than clean?"""
    ds = deltas(d)
    if not ds:
        return []
    lines = [
        "What each compilation step and graph reuse costs, clean and under corruption (OA points, the changed row "
        "minus its base row, same clouds, same filter; on 80 clouds one clean cloud is 1.25 points, while mOA "
        "averages 35 corrupted versions of each cloud):",
        "",
        *_table(
            ["change", "filter", "Δ clean OA", "Δ mOA", *(f"Δ {c}" for c in CORRUPTION_NAMES)],
            [
                [x["what"], x["filter"], _signed(x["clean"]), _signed(x["mOA"])]
                + [_signed(x["per"][c]) for c in CORRUPTION_NAMES]
                for x in ds
            ],
            "ll" + "r" * (2 + len(CORRUPTION_NAMES)),
        ),
        "",
    ]
    answers = []
    for x in ds:
        if x["identical"]:
            answers.append(f"{x['what']} ({x['filter']}): the same OA as its base at every corruption and level")
            continue
        if x["mOA"] >= -0.01:
            words = "no loss under corruption beyond one point of mOA"
        elif x["mOA"] < x["clean"] - 0.01:
            words = "a loss under corruption larger than on the clean clouds"
        else:
            words = "a loss under corruption, but no larger than on the clean clouds"
        low = min(CORRUPTION_NAMES, key=lambda c: x["per"][c])
        answers.append(
            f"{x['what']} ({x['filter']}): {_signed(x['clean'])} clean, {_signed(x['mOA'])} mOA: {words} "
            f"(largest change {_signed(x['per'][low])}, {low})"
        )
    question = "Does a compiled format or graph reuse cost more under corruption than on clean clouds? "
    return [*lines, question + "; ".join(answers) + ".", ""]


def ties_lines(t: dict[str, Any]) -> list[str]:
    """The kNN-ties result: the table and what it says."""
    preps = list(t["rows"][0]["oa"])
    rows = [
        [
            r["corruption"],
            r["level"],
            r["points"],
            _pct(r["copied_rows"]),
            _pct(r["tied_rows"]),
            f"{r['distinct_in_k']:.1f}",
            *(_pct(r["oa"][p]) for p in preps),
            r["k_native"],
        ]
        for r in t["rows"]
    ]
    short = [r for r in t["rows"] if r["corruption"] != "clean"]
    mean = {p: statistics.mean(r["oa"][p] for r in short) for p in preps}
    tied = max(r["tied_rows"] for r in short)
    flip = max(abs(r["oa"][preps[1]] - r["oa"][preps[0]]) for r in short)
    return [
        "### kNN ties in short corrupted clouds",
        "",
        f"A corrupted cloud of fewer than {t['num_points']} points reaches the model with every point repeated in "
        "order, so kNN rows tie: a row is tied when its k-th and (k+1)-th nearest distances are equal. "
        f"`benchmarks/knn_ties.py` measures it for `{t['model']}` (torch, k {t['k']}) on the same "
        f"{t['clouds']} clouds as the table above, and compares the served repeat with its repeats moved by 1e-6 "
        "(no exact tie left, the same duplicated geometry) and with the cloud fed at its own size with k scaled "
        f"(no duplicates; the official ModelNet-C way; a torch model only). Up to {_pct(tied)} % of the rows tie, "
        "but where the point count divides 1024 (512, 256 points) none do, since k is a multiple of the copies; "
        "the tied candidates are copies of one point, with the same features at every layer, so the choice "
        "among them changes nothing: breaking the ties by jitter moves OA by at most "
        f"{flip * 100:.1f} points. What the repeats do change is the neighbourhood: a row's k nearest hold only "
        "about k / copies distinct points (column 'distinct in k'), the same count as the native cloud with k "
        f"scaled. Mean OA over the levels: {', '.join(f'{p} {_pct(v)} %' for p, v in mean.items())}.",
        "",
        *_table(
            ["corruption", "level", "points", "copied rows %", "tied rows %", "distinct in k"]
            + [f"OA {p} %" for p in preps]
            + ["k native"],
            rows,
            "l" + "r" * (5 + len(preps) + 1),
        ),
        "",
        f"Source: {_link(TIES)}.",
        "",
    ]


def render_robustness(root: Path, load: Loader) -> list[str]:
    """The section's lines (empty when the robustness result is absent)."""
    d = load(root, ROBUSTNESS)
    if not d or not d.get("rows"):
        return []
    formats = sorted({r.get("format", "torch") for r in d["rows"]})
    lines = [
        "## Robustness (ModelNet-C, regenerated)",
        "",
        "The seven ModelNet-C corruptions at 5 levels, regenerated from the test split with the published parameters "
        "(`pointkd.data.corruptions`; not the official files, so comparable in kind, not digit for digit), on a "
        f"seeded sample of {d['clouds']} test clouds (the same for every row; at that size one OA carries about "
        f"+-3 points of sampling noise), 1 thread on the CPU, formats {', '.join(formats)} (`torch`: the checkpoint; "
        f"the others: `pointkd compile` artifacts run by ONNX Runtime; those of `{COMPARED}` compiled with "
        "their parity and int8 checks on a seeded 240-cloud test subset: manifests in "
        "`benchmarks/results/compile/student_g02-1024-*`). Every corrupted "
        "cloud is prepared by `prepare_cloud` to the model's 1024 points, as a served upload. mCE and RmCE are "
        f"against the published DGCNN; 'vs teacher' against `{REFERENCE_TEACHER}` measured here with the same "
        "filter. Filter `sor`: statistical outlier removal before the normalisation (`pointkd eval/serve "
        "--outlier-filter sor`). Columns after 'mCE vs teacher': mean OA over the 5 levels, %.",
        "",
        *main_table(d),
        "",
        f"Source: {_link(ROBUSTNESS)}.",
        "",
    ]
    if (root / PLOT).is_file():
        lines += [f"OA by level, every row: ![OA under each corruption by level](../{PLOT}) ({_link(PLOT)}).", ""]
    lines += delta_lines(d)
    cost = load(root, COST)
    if cost:
        lines += [
            "Cost of the filter (median ms per cloud, 1 thread, campaign paused, other work still on the cores):",
            "",
            *_table(["case", "median ms"], [[k, f"{v['median_ms']:.2f}"] for k, v in cost["rows"].items()], "lr"),
            "",
            f"Source: {_link(COST)}.",
            "",
        ]
    ties = load(root, TIES)
    if ties and ties.get("rows"):
        lines += ties_lines(ties)
    if (root / PLAN).is_file():
        state, state2 = _plan_state(root, PLAN_RECORDS), _plan_state(root, PLAN2_RECORDS)
        lines += [
            "### Training on corrupted clouds (plan)",
            "",
            "`TrainAugment` has corruption-style augmentations, off by default (so every other config trains as "
            "before): `data.stretch` (per-axis scale, then the unit sphere), `data.outliers` (points replaced by "
            "uniform points in the unit ball), `data.drop_global` and `data.drop_local` (points dropped, the rest "
            "repeated back to the training size, as served). In distillation the teacher and the student see the same "
            "augmented batch, so LSP's target is the teacher's local structure on the corrupted cloud. "
            f"{_link(PLAN)} fine-tunes the shipped student with and without them (same recipe and seed; its header "
            f"lists the evaluation commands): {state}. {_link(PLAN2)} repeats lsp_fast2_tail-s1's fine-tune (its "
            "control, the campaign's most accurate student) with `data.outliers` only, on a random share of each "
            f"batch (`data.corrupt_fraction` 0.5 and 0.25): {state2}. outliers_quarter-s1 is the served student, "
            f"`{SHIPPED['student']}`.",
            "",
        ]
    return lines


def _plan_state(root: Path, records: Path) -> str:
    done = sorted(p.stem for p in (root / records / "records").glob("*.json"))
    return f"finished runs: {', '.join(done)}" if done else "not run yet"
