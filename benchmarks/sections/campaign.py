"""docs/results.md's campaign sections (``pointkd campaign``, :mod:`pointkd.campaign`): the comparison against the
LSP paper, the paper's table at 20 epochs, each method against scratch paired by seed, and each plan's runs."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from pointkd.results import RESULTS, glob, link, load, mean_sd, num, pct, signed, source, table


def run_label(name: str) -> str:
    """A campaign run is named <label>-s<seed>."""
    return name.rsplit("-s", 1)[0]


MAIN_PLAN = "modelnet40"  # the comparison against the paper; other plans get a table of their runs


def campaign_records(root: Path, plan: str = MAIN_PLAN) -> dict[str, dict]:
    records = {p.stem: load(root, p) for p in glob(root, f"campaign/{plan}/records/*.json")}
    return dict(sorted(records.items(), key=lambda kv: (kv[1].get("role") != "teacher", kv[0])))


def campaign_groups(summary: dict) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in summary.get("runs") or []:
        groups.setdefault((run_label(r["name"]), r.get("student") or "?"), []).append(r)
    return groups


def paper_table(summary: dict[str, Any]) -> tuple[dict[str, tuple[float, float | None]], str]:
    """The LSP paper's Table 4 as the campaign summary carries it: ``({method: (OA, mAcc)}, its student)``."""
    paper = summary.get("paper") or {"oa_macc": {}, "student": "dgcnn_student"}
    table = {m: tuple(v) for m, v in paper["oa_macc"].items()}
    return table, paper["student"]


def section_campaign(root: Path) -> list[str]:
    rel = RESULTS / "campaign" / "modelnet40" / "summary.json"
    s = load(root, rel)
    lines = ["## Campaign against the LSP paper", ""]
    if s is None:
        return [*lines, f"No campaign summary yet ({link(rel)})."]
    lines += [
        "The ModelNet40 campaign (`pointkd campaign run benchmarks/campaign/modelnet40.yaml`): every run at its last "
        "epoch (no selection on the test split), evaluated on the 2468 test clouds at 1024 points (k scaled with the "
        "point count) and at 512. Paper: Yang et al., CVPR 2020, Table 4 (1024 points, trained far longer). OA and "
        "mAcc in %; several seeds give mean ± standard deviation.",
        "",
    ]
    rows = []
    t = s.get("teacher")
    paper, paper_student = paper_table(s)
    pt = paper.get("teacher", (None, None))
    if t:
        oa = t.get("last_epoch_oa_1024", t.get("oa_1024"))
        macc = t.get("last_epoch_macc_1024", t.get("macc_1024"))
        rows.append(
            [
                f"teacher (`{t['name']}`, {t['epochs']} epochs)",
                "dgcnn_teacher",
                "–",
                f"{pct(oa)} (k {t.get('k_1024', '–')})",
                pct(macc),
                pct(t.get("oa_512")),
                pt[0],
                pt[1],
                signed(None if oa is None else oa * 100 - pt[0]),
            ]
        )
    else:
        rows.append(["teacher", "dgcnn_teacher", "–", "not run yet", "–", "–", pt[0], pt[1], "–"])
    groups = campaign_groups(s)
    paper_order = [m for m in paper if m != "teacher"]
    keys = [k for m in paper_order for k in groups if k == (m, paper_student)]
    keys += [k for k in groups if k not in keys]
    for m in paper_order:  # the paper's rows the campaign has not reached yet
        if (m, paper_student) not in groups:
            keys.append((m, paper_student))
    for label, student in keys:
        runs = groups.get((label, student), [])
        paper_row = paper.get(label) if student == paper_student else None
        oas = [r["oa_1024"] for r in runs if r.get("oa_1024") is not None]
        ks = sorted({r.get("k_1024") for r in runs if r.get("k_1024") is not None})
        delta = "–"
        if paper_row and oas:
            delta = signed(statistics.mean(oas) * 100 - paper_row[0])
        rows.append(
            [
                label,
                student,
                ", ".join(str(r.get("seed")) for r in runs) or "–",
                (mean_sd(oas) + (f" (k {', '.join(map(str, ks))})" if ks else "")) if runs else "not run yet",
                mean_sd([r["macc_1024"] for r in runs if r.get("macc_1024") is not None]),
                mean_sd([r["oa_512"] for r in runs if r.get("oa_512") is not None]),
                paper_row[0] if paper_row else "–",
                (paper_row[1] or "–") if paper_row else "–",
                delta,
            ]
        )
    header = ["method", "model", "seeds", "OA 1024", "mAcc 1024", "OA 512", "paper OA", "paper mAcc", "Δ OA vs paper"]
    lines += table(header, rows, "lllrrrrrr")
    lines += ["", source(rel), ""]
    lines += section_campaign_pairs(groups, paper_student)
    return lines


PAPER_PLAN = "modelnet40_paper"  # the second campaign: every method at 20 epochs, several seeds (issue #29)


VOTING = RESULTS / "voting.json"  # benchmarks/voting.py: single pass against test-time voting per committed ship


def voting_cell(runs: list[dict], voting: dict[str, float]) -> str:
    """Mean ± sd OA with test-time voting over the group's runs that have a measured ship, and how many when not
    all of them do (a ship lost with its machine has no voting figure)."""
    oas = [voting[r["name"]] for r in runs if r.get("name") in voting]
    cell = mean_sd(oas)
    return cell if len(oas) in (0, len(runs)) else f"{cell} ({len(oas)} of {len(runs)})"


def section_paper_campaign(root: Path, plan: str = PAPER_PLAN) -> list[str]:
    """The paper's Table 4 layout from one plan's summary: a row per method label (mean ± sd over its seeds), the
    paper's figures beside it, then each group against the scratch group of the same epochs, seed by seed."""
    rel = RESULTS / "campaign" / plan / "summary.json"
    s = load(root, rel)
    if not s or not s.get("runs"):
        return []
    paper, paper_student = paper_table(s)
    cold = {"runs": [r for r in s["runs"] if not r.get("init")]}  # warm starts: in the plan's runs table
    groups = campaign_groups(cold)
    votes = load(root, VOTING) or {"rows": []}
    voting = {r["run"]: r["voting"]["oa"] for r in votes["rows"]}
    pt = paper.get("teacher", (None, None))
    lines = [
        f"### The paper's table at 20 epochs: plan `{plan}`",
        "",
        f"`pointkd campaign run benchmarks/campaign/{plan}.yaml`: every method distilled from the same teacher with "
        "the same recipe and budget, several seeds each; last epoch, 2468 test clouds at 1024 points (k 20) and 512 "
        f"(k 10). Paper: Yang et al., CVPR 2020, Table 4 (teacher {pt[0]} / {pt[1]}), trained far longer. OA and "
        "mAcc in %, mean ± standard deviation over seeds. Warm-started runs (the served student's path) are in "
        "the plan's runs table below.",
        "",
    ]
    rows = []
    for (label, student), runs in groups.items():
        method = runs[0].get("method", "scratch")
        row = paper.get(method) if student == paper_student else None
        oas = [r["oa_1024"] for r in runs if r.get("oa_1024") is not None]
        rows.append(
            [
                label,
                method,
                ", ".join(str(r.get("seed")) for r in runs),
                runs[0].get("epochs", "–"),
                mean_sd(oas),
                mean_sd([r["macc_1024"] for r in runs if r.get("macc_1024") is not None]),
                mean_sd([r["oa_512"] for r in runs if r.get("oa_512") is not None]),
                voting_cell(runs, voting),
                row[0] if row else "–",
                (row[1] or "–") if row else "–",
                signed(statistics.mean(oas) * 100 - row[0]) if row and oas else "–",
            ]
        )
    header = ["run group", "method", "seeds", "epochs", "OA 1024", "mAcc 1024", "OA 512"]
    header += [f"OA 1024, {votes.get('votes', '–')} votes", "paper OA", "paper mAcc", "Δ OA vs paper"]
    lines += table(header, rows, "lllrrrrrrrr")
    lines += ["", f"The votes column is test-time voting of each run's fp16 ship ({link(VOTING)}), never the headline."]
    lines += ["", source(rel, VOTING) if votes["rows"] else source(rel), ""]
    scratch = [k for k, runs in groups.items() if runs[0].get("method") == "scratch"]
    for base in scratch:
        epochs = groups[base][0].get("epochs")
        same = {k: v for k, v in groups.items() if k == base or v[0].get("epochs") == epochs}
        renamed = {(("scratch" if k == base else k[0]), k[1]): v for k, v in same.items()}
        lines += section_campaign_pairs(renamed, paper_student, f" at {epochs} epochs")
    return lines


def mean_delta(deltas: list[tuple[int, float]]) -> str:
    """The mean per-seed difference, with the sample standard deviation of the differences when there are several."""
    if not deltas:
        return "–"
    values = [d for _, d in deltas]
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return signed(statistics.mean(values)) + spread


# Student's t 97.5 % quantiles for 1-10 degrees of freedom (standard tables; scipy is not a dependency for one
# number). Above 10, the Cornish-Fisher expansion around the normal quantile, within 0.002 of the exact value.


T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("a t quantile needs at least 1 degree of freedom")
    if df <= len(T975):
        return T975[df - 1]
    z = statistics.NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def delta_interval(deltas: list[tuple[int, float]]) -> str:
    """The 95 % confidence interval of the mean per-seed difference (paired t), or "–" under two pairs."""
    values = [d for _, d in deltas]
    if len(values) < 2:
        return "–"
    half = t975(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    mean = statistics.mean(values)
    return f"{signed(mean - half)} to {signed(mean + half)}"


def seed_deltas(runs: list[dict], baseline: dict[int, dict], key: str) -> list[tuple[int, float]]:
    """``(seed, OA points over the baseline run of the same seed)`` for each seed both have."""
    out = []
    for r in sorted(runs, key=lambda r: r.get("seed") or 0):
        b = baseline.get(r.get("seed"))
        if b is not None and r.get(key) is not None and b.get(key) is not None:
            out.append((r["seed"], (r[key] - b[key]) * 100))
    return out


def section_campaign_pairs(groups: dict[tuple[str, str], list[dict]], student: str, where: str = "") -> list[str]:
    """Each method minus scratch, seed by seed (the same seed draws the same initialisation and batches); ``where``
    ends the heading, so each campaign's table has its own anchor."""
    baseline = {r.get("seed"): r for r in groups.get(("scratch", student), [])}
    rows = []
    for (label, model), runs in groups.items():
        if model != student or label == "scratch":
            continue
        d1024, d512 = seed_deltas(runs, baseline, "oa_1024"), seed_deltas(runs, baseline, "oa_512")
        if not d1024:
            continue
        at_512 = dict(d512)
        per_seed = "; ".join(f"s{seed}: {signed(d)} / {signed(at_512.get(seed))}" for seed, d in d1024)
        rows.append(
            [
                label,
                len(d1024),
                per_seed,
                mean_delta(d1024),
                delta_interval(d1024),
                mean_delta(d512),
                delta_interval(d512),
            ]
        )
    if not rows:
        return []
    lines = [
        f"### Paired by seed: each method minus scratch{where}",
        "",
        "OA points over the scratch student of the same seed, at 1024 / 512 test points; the means carry the sample",
        "standard deviation of the per-seed differences (the seed-to-seed noise a target such as +1.0 must clear),",
        "and the 95 % confidence interval of the mean difference (paired t, from two pairs on).",
        "",
    ]
    header = ["method", "pairs", "per seed (1024 / 512)", "mean Δ 1024", "95 % CI 1024", "mean Δ 512", "95 % CI 512"]
    lines += table(header, rows, "lrlrrrr")
    return [*lines, ""]


def section_other_campaigns(root: Path) -> list[str]:
    """A runs table per campaign plan other than the comparison (e.g. the long teacher and student)."""
    plans = sorted({p.parts[-3] for p in glob(root, "campaign/*/records/*.json")} - {MAIN_PLAN})
    return [line for plan in plans for line in section_campaign_runs(root, plan)]


def section_campaign_runs(root: Path, plan: str = MAIN_PLAN) -> list[str]:
    records = campaign_records(root, plan)
    if not records:
        return []
    folder = RESULTS / "campaign" / plan / "records"
    rows = []
    for name, rec in records.items():
        evals = (rec.get("last") or {}).get("evals") or {}
        e512, e1024 = evals.get("512") or {}, evals.get("1024") or {}
        model = ((rec.get("config") or {}).get("model") or {}).get("name", "–")
        method = ((rec.get("config") or {}).get("distill") or {}).get("method") if rec.get("role") != "teacher" else "–"
        seconds = rec.get("seconds")
        rows.append(
            [
                name,
                rec.get("role", "–"),
                model,
                method or "–",
                rec.get("epochs", "–"),
                num(None if seconds is None else seconds / 60, 1),
                f"{pct(e512.get('oa'))} (k {e512.get('k', '–')})",
                f"{pct(e1024.get('oa'))} (k {e1024.get('k', '–')})",
                f"`{str(rec.get('train_commit') or '–')[:7]}`",
                rec.get("device", "–"),
            ]
        )
    header = ["run", "role", "model", "method", "epochs", "train min", "OA 512", "OA 1024", "commit", "device"]
    summary = load(root, RESULTS / "campaign" / plan / "summary.json") or {}
    teachers = summary.get("teachers") or [summary.get("teacher") or {}]
    summarised = {r["name"] for r in summary.get("runs") or []} | {t.get("name") for t in teachers}
    newer = [n for n in records if n not in summarised]
    title = "Campaign runs" if plan == MAIN_PLAN else f"Campaign runs: plan `{plan}`"
    lines = [f"### {title}", "", "One row per finished run (its record), last epoch.", ""]
    lines += table(header, rows, "llllrrrrll")
    if newer:
        lines += [
            "",
            f"Not in summary.json yet: {', '.join(newer)} "
            f"(`pointkd campaign summary benchmarks/campaign/{plan}.yaml`).",
        ]
    lines += ["", f"Source: {link(str(folder) + '/')} (one JSON record per run).", ""]
    return lines


def section_runs(root: Path) -> list[str]:
    """The runs table of the comparison plan, then one per other plan."""
    return section_campaign_runs(root) + section_other_campaigns(root)
