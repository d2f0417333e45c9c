"""The campaign's status table and its summary (``summary.json`` + ``summary.md`` beside the LSP paper's Table 4)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .plan import Plan
from .state import RunState, plan_states

# Yang et al., CVPR 2020, Table 4 (ModelNet40, 1024 points): OA / mAcc in %; the student is their 0.1 M DGCNN.
PAPER_STUDENT = "dgcnn_student"
PAPER_TABLE4 = {
    "teacher": (92.4, 89.3),
    "scratch": (91.2, None),
    "fitnet": (91.1, None),
    "at": (91.6, None),
    "kd": (91.6, None),
    "lsp": (91.9, 88.6),
}
PAPER = {
    "source": "Yang et al., CVPR 2020, Table 4 (ModelNet40, 1024 points)",
    "student": PAPER_STUDENT,
    "oa_macc": {method: list(values) for method, values in PAPER_TABLE4.items()},
}


def _eta_seconds(st: RunState, states: list[RunState], plan: Plan) -> float | None:
    if st.state == "done":
        return 0.0
    per_epoch = st.seconds_per_epoch or _similar_epoch_seconds(st, states)
    epochs = st.epochs or _configured_epochs(plan, st)
    if per_epoch is None or epochs is None:
        return None
    return per_epoch * (epochs - st.epochs_done)


def _similar_epoch_seconds(st: RunState, states: list[RunState]) -> float | None:
    """Median seconds per epoch of the timed runs with the same config, model and method; failing those, of the
    runs with the same config and model (another method's step is a rougher guess, but a guess)."""

    def key(s: RunState, method: bool) -> tuple:
        o = s.spec.overrides
        return (s.spec.config, o.get("model.name")) + ((o.get("distill.method"),) if method else ())

    for method in (True, False):
        same = [s.seconds_per_epoch for s in states if s.seconds_per_epoch and key(s, method) == key(st, method)]
        if same:
            return statistics.median(same)
    return None


def _configured_epochs(plan: Plan, st: RunState) -> int | None:
    from ..config import load_config

    config = plan.resolve(st.spec.config)
    try:
        return load_config(config if config.is_file() else st.spec.config, st.spec.set_args()).train.epochs
    except ValueError:
        return None


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def status_table(plan: Plan) -> str:
    """One line per run: state, epochs done, latest test OA, time left; then the total time left."""
    states = plan_states(plan)
    rows = [f"campaign {plan.name}: runs in {plan.runs_dir}, records in {plan.records}", ""]
    w = max([22, *(len(st.spec.name) for st in states)])
    rows.append(f"{'run':<{w}} {'state':<8} {'epochs':>7} {'test OA':>8} {'left':>12}")
    total, unknown = 0.0, 0
    for st in states:
        eta = _eta_seconds(st, states, plan)
        epochs = f"{st.epochs_done}/{st.epochs or _configured_epochs(plan, st) or '?'}"
        oa = f"{st.last_oa * 100:.2f}" if st.last_oa is not None else "-"
        rows.append(f"{st.spec.name:<{w}} {st.state:<8} {epochs:>7} {oa:>8} {_clock(eta):>12}")
        if eta is None:
            unknown += 1
        else:
            total += eta
    done = sum(st.state == "done" for st in states)
    tail = f" (+ {unknown} runs not yet timed)" if unknown else ""
    rows += ["", f"{done}/{len(states)} done; about {_clock(total)} of training left{tail}"]
    return "\n".join(rows)


def _student_row(record: dict[str, Any]) -> dict[str, Any]:
    cfg = record["config"]
    distill = cfg.get("distill") or {}
    evals = record["last"]["evals"]
    return {
        "name": record["name"],
        "method": distill.get("method", "scratch"),
        "kernel": distill.get("kernel") if "lsp" in distill.get("method", "") else None,
        "seed": cfg.get("seed"),
        "student": cfg["model"]["name"],
        "epochs": record["epochs"],
        "init": (cfg.get("train") or {}).get("init"),  # a warm start: its epochs add to another run's
        "oa_1024": evals.get("1024", {}).get("oa"),
        "macc_1024": evals.get("1024", {}).get("macc"),
        "k_1024": evals.get("1024", {}).get("k"),
        "oa_512": evals.get("512", {}).get("oa"),
        "best_epoch": record["best"]["epoch"],
    }


def summary(plan: Plan) -> dict[str, Any]:
    """``{"teacher": {...}, "teachers": [...], "runs": [...]}`` from the committed records, in plan order (the
    issue's schema, plus every teacher run when a plan has several)."""
    order = {spec.name: i for i, spec in enumerate(plan.runs)}
    records = [json.loads(p.read_text()) for p in (plan.records / "records").glob("*.json")]
    records.sort(key=lambda rec: (order.get(rec["name"], len(order)), rec["name"]))  # plan order
    teachers = [_teacher_row(rec) for rec in records if rec["role"] == "teacher"]
    runs = [_student_row(rec) for rec in records if rec["role"] != "teacher"]
    # "teacher": the plan's first teacher, the one its comparison distils from; "teachers": every teacher run
    return {"teacher": teachers[0] if teachers else None, "teachers": teachers, "runs": runs, "paper": PAPER}


def _teacher_row(rec: dict[str, Any]) -> dict[str, Any]:
    last = rec["last"]["evals"]
    best_1024 = rec["best"].get("evals", {}).get("1024", last.get("1024", {}))
    return {
        "name": rec["name"],
        "epochs": rec["epochs"],
        "oa_1024": best_1024.get("oa"),
        "macc_1024": best_1024.get("macc"),
        "k_1024": last.get("1024", {}).get("k"),
        "oa_512": last.get("512", {}).get("oa"),
        "best_epoch": rec["best"]["epoch"],
        "last_epoch_oa_1024": last.get("1024", {}).get("oa"),
        "last_epoch_macc_1024": last.get("1024", {}).get("macc"),
    }


def pct(values: list[float], empty: str = "-") -> str:
    """Percent, with the standard deviation when there are several seeds; ``empty`` for none."""
    if not values:
        return empty
    if len(values) == 1:
        return f"{values[0] * 100:.2f}"
    return f"{statistics.mean(values) * 100:.2f} ± {statistics.stdev(values) * 100:.2f}"


def _given(*values: float | None) -> list[float]:
    return [v for v in values if v is not None]


def summary_markdown(s: dict[str, Any]) -> str:
    lines = ["# Campaign summary", "", "Last-epoch models (no selection on the test split); OA in %.", ""]
    for t in s["teachers"]:
        lines += [
            f"Teacher `{t['name']}` ({t['epochs']} epochs): 1024 points (k {t['k_1024'] or '-'}) OA "
            f"{pct(_given(t['last_epoch_oa_1024']))} / mAcc {pct(_given(t['last_epoch_macc_1024']))}; 512 points "
            f"{pct(_given(t['oa_512']))}; paper {PAPER_TABLE4['teacher'][0]} / {PAPER_TABLE4['teacher'][1]}.",
            "",
        ]
    lines += ["| method | student | seeds | OA 1024 | mAcc 1024 | OA 512 | paper OA |", "|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in s["runs"]:
        groups.setdefault((r["student"], r["name"].rsplit("-s", 1)[0]), []).append(r)  # a run name is <label>-s<seed>
    for (student, label), rows in groups.items():
        method = rows[0]["method"]  # the paper's row of the group's method, for the paper's own student only
        paper = PAPER_TABLE4.get(method, (None,))[0] if student == PAPER_STUDENT else None
        lines.append(
            f"| {label} | {student} | {', '.join(str(r['seed']) for r in rows)} "
            f"| {pct(_given(*(r['oa_1024'] for r in rows)))} | {pct(_given(*(r['macc_1024'] for r in rows)))} "
            f"| {pct(_given(*(r['oa_512'] for r in rows)))} | {paper or '-'} |"
        )
    return "\n".join(lines) + "\n"


def write_summary(plan: Plan) -> Path:
    s = summary(plan)
    plan.records.mkdir(parents=True, exist_ok=True)
    (plan.records / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
    path = plan.records / "summary.md"
    path.write_text(summary_markdown(s))
    return path
