"""Write docs/results.md (and the README's headline block) from the committed result files.

    python scripts/results_doc.py          # rewrite docs/results.md and the block in README.md
    python scripts/results_doc.py --check  # exit 1 if either differs from what the result files give

Reads only JSON under benchmarks/results/ (never the .md beside them, never pointkd itself, whose modules move);
every table names the file it comes from. In a git checkout only the files git tracks count (a record the campaign
has just written counts once it is added). Every source but the campaign summary is optional: a missing file drops
its table. Any number of campaign runs and of device folders (benchmarks/results/<device-id>/) is handled.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("benchmarks/results")
DOC = Path("docs/results.md")
README = Path("README.md")
HEADLINE_START = "<!-- headline numbers: written by scripts/results_doc.py -->"
HEADLINE_END = "<!-- end of headline numbers -->"

# The LSP paper's Table 4 comes with the campaign summary (pointkd/campaign/report.py writes it there), so this
# script holds no copy of it.


# ------------------------------------------------------------------ helpers


_TRACKED: dict[Path, set[Path] | None] = {}


def tracked(root: Path) -> set[Path] | None:
    """The result files git tracks in root (None outside a git checkout: every file counts). A file the campaign or
    a benchmark has just written counts once it is added, so the documents follow what is committed."""
    if root not in _TRACKED:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "ls-files", "-z", "--", str(RESULTS)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            _TRACKED[root] = {Path(p) for p in out.split("\0") if p} if (root / ".git").exists() else None
        except (OSError, subprocess.CalledProcessError):
            _TRACKED[root] = None
    return _TRACKED[root]


def untracked_results(root: Path) -> list[str]:
    """Result JSON files under benchmarks/results/ that git does not track yet: the documents leave them out until
    they are added (empty outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--others", "--exclude-standard", "--", str(RESULTS)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(p for p in out.split("\0") if p.endswith(".json"))


def exists(root: Path, rel: Path | str) -> bool:
    known = tracked(root)
    return (root / rel).is_file() and (known is None or Path(rel) in known)


def glob(root: Path, pattern: str) -> list[Path]:
    """Result files matching pattern under benchmarks/results/, relative to root, sorted."""
    return sorted(p.relative_to(root) for p in (root / RESULTS).glob(pattern) if exists(root, p.relative_to(root)))


def load(root: Path, rel: Path | str) -> Any | None:
    return json.loads((root / rel).read_text()) if exists(root, rel) else None


def link(rel: Path | str) -> str:
    """A Markdown link from docs/ to a file of the repository."""
    return f"[`{rel}`](../{rel})"


def source(*rels: Path | str) -> str:
    return "Source: " + ", ".join(link(r) for r in rels) + "."


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}"


def num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def mean_sd(values: list[float]) -> str:
    """Percent, with the standard deviation when there are several seeds (as the campaign summary writes it)."""
    from pointkd.campaign.report import pct

    return pct(values, empty="–")


def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    """Markdown table; align is one letter per column (l or r), left by default."""
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def device_dirs(root: Path, name: str) -> list[Path]:
    """benchmarks/results/<device-id>/<name>, relative to root, sorted."""
    return glob(root, f"*/{name}")


def run_label(name: str) -> str:
    """A campaign run is named <label>-s<seed>."""
    return name.rsplit("-s", 1)[0]


# ------------------------------------------------------------------ campaign


MAIN_PLAN = "modelnet40"  # the comparison against the paper; other plans get a table of their runs


def campaign_records(root: Path, plan: str = MAIN_PLAN) -> dict[str, dict]:
    records = {p.stem: load(root, p) for p in glob(root, f"campaign/{plan}/records/*.json")}
    return dict(sorted(records.items(), key=lambda kv: (kv[1].get("role") != "teacher", kv[0])))


def campaign_groups(summary: dict) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in summary.get("runs") or []:
        groups.setdefault((run_label(r["name"]), r.get("student") or "?"), []).append(r)
    return groups


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
    lines += section_lsp_target(root)
    lines += section_campaign_runs(root)
    lines += section_other_campaigns(root)
    return lines


PAPER_PLAN = "modelnet40_paper"  # the second campaign: every method at 20 epochs, several seeds (issue #29)


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
                row[0] if row else "–",
                (row[1] or "–") if row else "–",
                signed(statistics.mean(oas) * 100 - row[0]) if row and oas else "–",
            ]
        )
    header = ["run group", "method", "seeds", "epochs", "OA 1024", "mAcc 1024", "OA 512", "paper OA", "paper mAcc"]
    lines += table([*header, "Δ OA vs paper"], rows, "lllrrrrrrr")
    lines += ["", source(rel), ""]
    scratch = [k for k, runs in groups.items() if runs[0].get("method") == "scratch"]
    for base in scratch:
        epochs = groups[base][0].get("epochs")
        same = {k: v for k, v in groups.items() if k == base or v[0].get("epochs") == epochs}
        renamed = {(("scratch" if k == base else k[0]), k[1]): v for k, v in same.items()}
        lines += section_campaign_pairs(renamed, paper_student)
    return lines


PER_CLASS = RESULTS / "per_class.json"  # benchmarks/per_class.py: the served student against its teacher


def section_per_class(root: Path) -> list[str]:
    """The served student's accuracy per class beside its teacher's, worst difference first."""
    d = load(root, PER_CLASS)
    if not d:
        return []
    t, s = d["teacher"], d["student"]
    lines = [
        "### Per class: the served student against its teacher",
        "",
        f"`python benchmarks/per_class.py`: the whole test split at {d['points']} points, no voting. Teacher "
        f"`{Path(t['checkpoint']).name}` (k {t['k']}) OA {pct(t['oa'])} / mAcc {pct(t['macc'])}; served student "
        f"`{Path(s['checkpoint']).name}` (k {s['k']}) OA {pct(s['oa'])} / mAcc {pct(s['macc'])}. Sorted by the "
        "difference, the student's worst classes first; with 4 to 100 test clouds a class, read the counts.",
        "",
    ]
    rows = [
        [
            r["class"],
            r["clouds"],
            f"{r['teacher']} ({r['teacher'] / r['clouds'] * 100:.1f} %)",
            f"{r['student']} ({r['student'] / r['clouds'] * 100:.1f} %)",
            signed(r["delta"] * 100),
        ]
        for r in d["rows"]
    ]
    lines += table(["class", "test clouds", "teacher correct", "student correct", "Δ points"], rows, "lrrrr")
    return [*lines, "", source(PER_CLASS), ""]


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


def section_campaign_pairs(groups: dict[tuple[str, str], list[dict]], student: str) -> list[str]:
    """Each method minus scratch, seed by seed (the same seed draws the same initialisation and batches)."""
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
        "### Paired by seed: each method minus scratch",
        "",
        "OA points over the scratch student of the same seed, at 1024 / 512 test points; the means carry the sample",
        "standard deviation of the per-seed differences (the seed-to-seed noise a target such as +1.0 must clear),",
        "and the 95 % confidence interval of the mean difference (paired t, from two pairs on).",
        "",
    ]
    header = ["method", "pairs", "per seed (1024 / 512)", "mean Δ 1024", "95 % CI 1024", "mean Δ 512", "95 % CI 512"]
    lines += table(header, rows, "lrlrrrr")
    return [*lines, ""]


def section_lsp_target(root: Path) -> list[str]:
    """Per layer, how much neighbour structure the teacher's LSP target holds under σ = 1 and the median rule."""
    rel = RESULTS / "lsp_target_shape.json"
    d = load(root, rel)
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
    return [*lines, *table(header, rows, "llrrrrrr"), "", source(rel), ""]


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


# ------------------------------------------------------------------ training speed


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


def section_train_speed(root: Path) -> list[str]:
    lines = ["## Training-step speed", ""]
    found = False
    for rel in device_dirs(root, "train_step_levers.json"):
        d = load(root, rel)
        h = d.get("host", {})
        found = True
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
    rel = RESULTS / "train_speed.json"
    d = load(root, rel)
    if d:
        found = True
        h = d.get("host", {})
        lines += [
            "### EdgeConv, kNN backend and allocator",
            "",
            f"{h.get('cpu_model', '?')}, {h.get('threads', '?')} threads; batch {h.get('batch_size', '?')} × "
            f"{h.get('points', '?')} points; median of {h.get('steps', '?')} steps; {h.get('date', '')}.",
            "",
        ]
        rows = [
            [
                r["model"],
                r["edgeconv"],
                r["knn"],
                r["allocator"],
                num(r.get("ms_p50"), 0),
                num(r.get("clouds_per_s"), 1),
                num(r.get("peak_rss_mb"), 0),
            ]
            for r in d.get("rows", [])
            if r.get("status") == "ok"
        ]
        header = ["model", "EdgeConv", "kNN", "allocator", "ms / step p50", "clouds/s", "peak RSS MB"]
        lines += [*table(header, rows, "llllrrr"), "", source(rel), ""]
    for rel in device_dirs(root, "train_step.json"):
        d = load(root, rel)
        found = True
        dev = d.get("device", {})
        lines += [f"### Training step on {dev.get('gpu') or dev.get('cpu') or rel.parent.name}", ""]
        rows = []
        for r in d.get("rows", []):
            ok = r.get("status") == "ok"
            rows.append(
                [
                    r.get("model"),
                    r.get("edgeconv"),
                    f"{r.get('batch')} × {r.get('points')}",
                    num(r.get("ms_p50"), 1) if ok else f"failed: {r.get('reason', '')}",
                    num(r.get("clouds_per_s"), 0) if ok else "–",
                ]
            )
        lines += table(["model", "EdgeConv", "batch × points", "ms / step p50", "clouds/s"], rows, "llrrr")
        lines += ["", source(rel), ""]
    rel = RESULTS / "lsp_cost.json"
    d = load(root, rel)
    if d:
        found = True
        h = d.get("host", {})
        lines += [
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
        lines += [*table(["kind", "name", "ms p50", "max abs diff vs dense"], rows, "llrr"), "", source(rel), ""]
    return lines if found else []


# ------------------------------------------------------------------ latency


def cpu_identity(dev: dict) -> str:
    """`` (zen5, family 26 model 2 stepping 1, avx512vnni, fused kNN avx512)`` from a device header that records
    them ('' for a header written before they were)."""
    if not dev.get("simd"):
        return ""
    fms = f"family {dev.get('family')} model {dev.get('model')} stepping {dev.get('stepping')}"
    return f" ({dev.get('microarch')}, {fms}, {dev['simd']}, fused kNN {dev.get('knn_dispatch', '?')})"


def bench_rows(d: dict) -> dict[tuple[str, str, int | None], dict]:
    """A bench report's measured rows by (model, format, threads)."""
    return {(r["model"], r["format"], r.get("threads")): r for r in d.get("rows", []) if r.get("status") == "ok"}


def section_cross_device(root: Path) -> list[str]:
    """p50 / p99 (ms, batch 1) of every (model, format, threads) measured by a committed bench.json, one column per
    device folder, so the same model and format sit side by side."""
    reports = {rel.parent.name: bench_rows(load(root, rel)) for rel in device_dirs(root, "bench.json")}
    if len(reports) < 2:
        return []
    devices = sorted(reports)
    keys = sorted({k for rows in reports.values() for k in rows}, key=lambda k: (k[0], k[1], k[2] or 0))
    rows = []
    for model, fmt, threads in keys:
        cells = []
        for dev in devices:
            r = reports[dev].get((model, fmt, threads))
            cells.append(f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if r else "–")
        points = next(
            reports[d][(model, fmt, threads)].get("points", "–") for d in devices if (model, fmt, threads) in reports[d]
        )
        rows.append([model, fmt, points, threads or "–", *cells])
    header = ["model", "format", "points", "threads", *(f"{d} p50 / p99" for d in devices)]
    return [
        "### Across devices",
        "",
        "Batch-1 latency (ms, p50 / p99) of the same model and format on each device that has a `pointkd bench` "
        "report; – where that device's report has no such row. The device sections below give each one's settings "
        "and OA.",
        "",
        *table(header, rows, "llrr" + "r" * len(devices)),
        "",
        source(*device_dirs(root, "bench.json")),
        "",
    ]


def section_bench(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "bench.json"):
        d = load(root, rel)
        dev = d.get("device", {})
        v = dev.get("versions", {})
        lines += [
            f"### `pointkd bench`: {rel.parent.name}",
            "",
            f"{dev.get('cpu', '?')}{cpu_identity(dev)}, {dev.get('cores', '?')} cores, "
            f"GPU {dev.get('gpu') or 'none'}; torch "
            f"{v.get('torch', '?')}, onnxruntime {v.get('onnxruntime', '?')}, tensorrt {v.get('tensorrt', '?')}; "
            f"{d.get('created', '')}. Batch 1 latency (ms), batch-32 throughput, OA on the whole test split.",
            "",
        ]
        rows = []
        failed: dict[str, list[str]] = {}
        for r in d.get("rows", []):
            if r.get("status") == "failed":
                failed.setdefault(r.get("reason") or "failed", []).append(f"{r['model']} {r['format']}")
                continue
            rows.append(
                [
                    r["model"],
                    r["format"],
                    r.get("points", "–"),
                    r.get("threads", "–"),
                    "ok" if r.get("status") == "ok" else r.get("status"),
                    pct(r.get("oa")),
                    num(r.get("size_mb"), 3),
                    num(r.get("p50_ms")),
                    num(r.get("p95_ms")),
                    num(r.get("p99_ms")),
                    num(r.get("clouds_per_s"), 0),
                    num(r.get("peak_mb"), 0),
                ]
            )
        header = ["model", "format", "points", "threads", "status", "OA %", "MB", "p50", "p95", "p99", "clouds/s"]
        lines += table([*header, "peak MB"], rows, "llrrlrrrrrrr")
        for reason, which in failed.items():
            lines += ["", f"Not run ({reason}): {', '.join(which)}."]
        lines += ["", source(rel), ""]
    return lines


def section_latency(root: Path) -> list[str]:
    rel = RESULTS / "latency.json"
    d = load(root, rel)
    if not d:
        return []
    lines = [
        "### Export variants (`benchmarks/latency.py`)",
        "",
        f"{d.get('cpu', '?')}; batch 1; torch eager, the naive ONNX export, the rewritten ONNX and int8; "
        f"{d.get('created', '')}.",
        "",
    ]
    rows = [
        [
            f"{r['model']}@{r['points']}",
            r["format"],
            r["threads"],
            num(r.get("p50_ms")),
            num(r.get("p95_ms")),
            num(r.get("p99_ms")),
            num(r["size_bytes"] / 1024, 0) if r.get("size_bytes") else "–",
        ]
        for r in d.get("rows", [])
        if r.get("batch") == 1
    ]
    lines += table(["model@points", "format", "threads", "p50", "p95", "p99", "KiB"], rows, "llrrrrr")
    targets = d.get("targets") or []
    if targets:
        lines += ["", "Targets:", ""]
        lines += [f"- {t['target']}: {t['measured']} ({'met' if t.get('met') else 'missed'})" for t in targets]
    return [*lines, "", source(rel), ""]


def section_topk(root: Path) -> list[str]:
    lines = []
    rel = RESULTS / "seeded_topk.json"
    d = load(root, rel)
    if d:
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
        lines += [
            "### Seeded TopK",
            "",
            f"{d.get('cpu', '?')}; ONNX Runtime's TopK on a student's real score rows.",
            "",
        ]
        header = ["points", "k", "threads", "layer", "plain ms", "seeded ms", "seeded / plain", "mismatched rows"]
        lines += [*table(header, rows, "rrrrrrrr"), "", source(rel), ""]
    for rel in device_dirs(root, "knn_op.json"):
        d = load(root, rel)
        lines += [f"### Fused kNN operator: {rel.parent.name}", "", f"Batch 1, {d.get('checkpoint', '?')}.", ""]
        rows = []
        for r in d.get("rows", []):
            t = r.get("target")
            rows.append(
                [
                    r["points"],
                    r["threads"],
                    num(r["stock"]["p50_ms"], 3),
                    num(r["knn_only"]["p50_ms"], 3) if "knn_only" in r else "–",
                    num(r["fused"]["p50_ms"], 3),
                    f"{r.get('speedup_p50', 0):.2f}×",
                    "" if t is None else f"{'met' if t.get('met') else 'missed'} ({t.get('text', '')})",
                ]
            )
        header = ["points", "threads", "stock p50 ms", "kNN only p50 ms", "fused p50 ms", "speedup", "target"]
        lines += table(header, rows, "rrrrrrl")
        for points, par in (d.get("parity") or {}).items():
            lines += [
                "",
                f"Parity at {points} points: {par.get('rows_with_different_neighbours')} of {par.get('rows')} rows "
                f"with a different neighbour set over {par.get('clouds')} clouds, max |Δlogit| "
                f"{par.get('max_abs_dlogit', 0):.1e}.",
            ]
        lines += ["", source(rel), ""]
    rel = RESULTS / "knn_backends.json"
    d = load(root, rel)
    if d:
        h = d.get("host", {})
        lines += ["### kNN backends", "", f"{h.get('cpu', '?')}, {h.get('threads', '?')} threads, k {h.get('k')}.", ""]
        rows = [
            [
                " × ".join(map(str, r["shape"])),
                num(r.get("dense_ms")),
                num(r.get("cluster_ms")),
                r.get("auto"),
                num(r.get("same_sets"), 5),
            ]
            for r in d.get("rows", [])
        ]
        header = ["input", "dense ms", "torch-cluster ms", "auto picks", "same neighbour sets"]
        lines += [*table(header, rows, "lrrlr"), "", source(rel), ""]
    return lines


def section_artifacts(root: Path) -> list[str]:
    rels = glob(root, "**/manifest.json")
    if not rels:
        return []
    rows = []
    for rel in rels:
        m = json.loads((root / rel).read_text())
        acc, par = m.get("accuracy") or {}, m.get("parity") or {}
        shape = (m.get("input") or {}).get("shape") or [None, "–"]
        rows.append(
            [
                f"[`{rel.parent.relative_to(RESULTS)}`](../{rel})",
                m.get("artifact_format", "–"),
                shape[1],
                pct(acc.get("oa")),
                num(acc.get("oa_drop_pt")),
                f"{par.get('off_clouds', '–')} / {par.get('clouds', '–')}",
                "–" if par.get("max_diff_same_graphs") is None else f"{par['max_diff_same_graphs']:.1e}",
            ]
        )
    header = ["artifact", "format", "points", "OA %", "OA drop pt", "clouds off (kNN ties)", "max Δlogit, same graphs"]
    return [
        "### Compiled artifacts",
        "",
        "Each artifact's manifest: test OA after compile and the tie-aware parity check.",
        "",
        *table(header, rows, "llrrrrr"),
        "",
        "Source: each row's `manifest.json`.",
        "",
    ]


# ------------------------------------------------------------------ serving


def load_test_files(root: Path) -> list[Path]:
    return glob(root, "load_test.json") + glob(root, "*/load_test.json") + glob(root, "*/*/load_test.json")


def binary_p99(d: dict) -> float:
    return ((d.get("goal") or {}).get("pooled_p99_ms") or {}).get("binary", float("inf"))


def served_model(d: dict) -> str:
    """The checkpoint a load test served: its artifact folder is ``<checkpoint stem>-<points>-<format>``."""
    return Path(d.get("artifact") or "").name.split(f"-{d.get('num_points')}-")[0]


def server_clause(d: dict, shipped: str) -> str:
    """One load test for the headline: what it served, its open-loop binary p99 against the goal, the model alone."""
    srv, g = d.get("server") or {}, d.get("goal") or {}
    errors = sum(r.get("errors", 0) for r in d.get("rows", []) if r.get("payload") == "binary")
    model = served_model(d)
    what = f"the shipped {model}" if model == shipped else model
    return (
        f"{what} {d.get('format')} at {d.get('num_points')} points, {srv.get('threads')} thread(s): p99 "
        f"{binary_p99(d):.2f} ms over {g.get('open_loop_requests')} requests, {errors} errors, goal "
        f"{'met' if g.get('met') else 'missed'}, the model alone p50 "
        f"{(d.get('model_only') or {}).get('p50_ms', float('nan')):.2f} ms in the same run "
        f"([table](docs/results.md#{slug(load_test_title(d))}))"
    )


def other_load_tests(tests: list[dict]) -> str:
    """The binary p99 range of the student's other load tests (other settings, code or host days), so the headline's
    best runs are read beside them."""
    others = sorted(binary_p99(t) for t in tests)
    if not others:
        return ""
    span = f"{others[0]:.2f}–{others[-1]:.2f}"
    return f"; {len(others)} other student load test(s) here, other settings or days: p99 {span} ms"


def load_test_title(d: dict) -> str:
    srv = d.get("server") or {}
    what = f"{d.get('format', '?')}, {d.get('num_points', '?')} points, {srv.get('threads', '?')} threads"
    if srv.get("http") == "h11":
        what += f", {srv.get('loop')} + h11"
    if srv.get("keep_awake"):
        what += ", keep-awake"
    name = Path(d.get("artifact") or "").name
    model = served_model(d) if f"-{d.get('num_points')}-" in name else d.get("model", "?")
    return f"Load test: {model} ({what})"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def time_split_lines(d: dict) -> list[str]:
    """Where an open-loop request's time went (load tests that recorded it), one line per payload."""
    out = []
    for kind, t in (d.get("time_split") or {}).items():
        out += [
            f"Where an open-loop {kind} request's time went (means): {num(t['latency_mean_ms'])} ms = the model's "
            f"runtime call {num(t['model_call_mean_ms'])} ms ({num(t['clouds_per_call'])} clouds per call) + the "
            f"rest of the server {num(t['server_rest_mean_ms'])} ms + HTTP and the client "
            f"{num(t['http_and_client_mean_ms'])} ms.",
            "",
        ]
    return out


def section_load(root: Path) -> list[str]:
    lines = []
    for rel in load_test_files(root):
        d = load(root, rel)
        g, srv = d.get("goal") or {}, d.get("server") or {}
        runs = ", ".join(num(x) for x in g.get("open_loop_p99_ms_per_run", []))
        pooled = g.get("pooled_p99_ms") or {}
        lines += [
            f"### {load_test_title(d)}",
            "",
            f"{d.get('cpu', '?')}; `pointkd serve` with {srv.get('threads', '?')} threads, max batch "
            f"{srv.get('max_batch', '?')}, {srv.get('parse_workers', 'no')} parse worker processes; "
            + (
                f"the model alone, batch 1, p50 {num(d['model_only']['p50_ms'])} ms in the same run; "
                if "model_only" in d
                else ""
            )
            + f"{d.get('cloud_points_sent', '?')}-point clouds sent on 127.0.0.1; client "
            f"{g.get('client', '?')} on the same cores. Goal: {g.get('target', '?')}: "
            f"**{'met' if g.get('met') else 'missed'}**, pooled p99 over {g.get('open_loop_requests', '?')} requests "
            + ", ".join(f"{k} {num(v)} ms" for k, v in pooled.items())
            + f" (binary per run: {runs}).",
            "",
        ]
        rows = [
            [
                r["payload"],
                r["mode"],
                r.get("concurrency") or "–",
                r["requests"],
                r["errors"],
                num(r.get("throughput_rps"), 0),
                num(r.get("p50_ms")),
                num(r.get("p95_ms")),
                num(r.get("p99_ms")),
                f"{num(r['server_p50_ms'])} / {num(r['server_p99_ms'])}" if "server_p50_ms" in r else "–",
            ]
            for r in d.get("rows", [])
        ]
        header = ["payload", "mode", "concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"]
        header.append("server p50 / p99 ms")
        lines += [*table(header, rows, "llrrrrrrrr"), "", *time_split_lines(d), source(rel), ""]
    rel = RESULTS / "load_clients.json"
    d = load(root, rel)
    if d:
        rows = [
            [r["client"], r["run"], r["requests"], r["errors"], num(r["p50_ms"]), num(r["p95_ms"]), num(r["p99_ms"])]
            for r in d.get("rows", [])
        ]
        lines += ["### Load-test clients", "", "The same open-loop load sent by two clients on the same cores.", ""]
        header = ["client", "run", "requests", "errors", "p50 ms", "p95 ms", "p99 ms"]
        lines += [*table(header, rows, "lrrrrrr"), "", source(rel), ""]
    lines += section_serve_tuning(root)
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


def section_serve_tuning(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "serve_tuning.json") + glob(root, "*/serve_tuning*/serve_tuning.json"):
        d = load(root, rel)
        dev = d.get("device") or {}
        lines += [
            f"### Server settings under load: {rel.parent.name}",
            "",
            f"{dev.get('cpu', '?')}, {dev.get('cores', '?')} cores shared by client and server; raw float32 clouds to "
            f"`/predict` at {num(d.get('rate'), 0)} requests/s, {d.get('rounds')} interleaved rounds of "
            f"{num(d.get('seconds'), 0)} s per setting. CPU ms: the server's CPU time per request (its workers' and "
            "keep-awake spinners' under workers). Stack: uvicorn on uvloop + httptools (c) or asyncio + h11.",
            "",
        ]
        rows = [
            [
                f"`{r.get('artifact', '?')}`",
                pct(r.get("oa")),
                r["threads"],
                "on" if r["spin"] else "off",
                "on" if r.get("keep_awake") else "off",
                r.get("stack", "–"),
                r.get("parse_workers", "?"),
                r["requests"],
                r["errors"],
                num(r["p50_ms"]),
                num(r["p99_ms"]),
                num(r["worst_round_p99_ms"]),
                num(r["cpu_main_ms_per_request"]),
                num(r["cpu_workers_ms_per_request"]),
            ]
            for r in d.get("rows", [])
        ]
        header = ["artifact", "OA %", "threads", "spin", "keep awake", "stack", "parse workers", "requests", "errors"]
        header += ["p50 ms", "p99 ms", "worst round p99", "CPU main ms", "CPU workers ms"]
        lines += [*table(header, rows, "lrrlllrrrrrrrr"), "", source(rel), ""]
    for rel in device_dirs(root, "idle_gap.json"):
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


# ------------------------------------------------------------------ distillation and demo


def section_distill_compare(root: Path) -> list[str]:
    lines = []
    for name, what in (("distill_compare_e1", "1 epoch at 512 points"), ("distill_smoke", "100-step smoke test")):
        rel = RESULTS / name / "distill_compare.json"
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


def section_house(root: Path) -> list[str]:
    rel = RESULTS / "house.json"
    d = load(root, rel)
    if not d or not d.get("measurements"):
        return []
    ms = d["measurements"]

    def dup(m: dict) -> str:
        x = m.get("duplicates")
        if not x:
            return "–"
        return f"{x.get('pairs')}" + (f" ({x['files_read']} files read, incomplete)" if x.get("incomplete") else "")

    def imports(m: dict) -> str:
        si = m.get("server_imports") or {}
        if not si.get("ok"):
            return "import failed"
        return f"{len(si.get('heavy_modules', []))} ({', '.join(si.get('heavy_modules', [])) or 'none'})"

    rows = [
        [
            "revision",
            *(
                f"{m.get('rev')} (`{str(m.get('commit'))[:7]}`{' + changes' if m.get('dirty') else ''})"
                for m in ms.values()
            ),
        ],
        ["functions in pointkd/, serving/, calibration/", *(m.get("functions") for m in ms.values())],
        ["functions over 80 lines", *(m.get("functions_over_80_lines") for m in ms.values())],
        [
            "longest function",
            *(
                f"{f[0]['lines']} lines (`{f[0]['name']}`)" if (f := m.get("longest_functions")) else "–"
                for m in ms.values()
            ),
        ],
        ["README.md lines", *(m.get("readme_lines") for m in ms.values())],
        ["training / compile modules `import serving.app` loads", *(imports(m) for m in ms.values())],
        ["duplicate pairs (`duplicates --most 200 --seconds 60`)", *(dup(m) for m in ms.values())],
    ]
    return [
        "## House",
        "",
        "The code's own measurements (`benchmarks/house.py`), per revision; nothing timed.",
        "",
        *table(["", *ms], rows, "l" + "r" * len(ms)),
        "",
        source(rel),
        "",
    ]


CORRUPTIONS = ("scale", "jitter", "rotate", "dropout_global", "dropout_local", "add_global", "add_local")


def section_robustness(root: Path) -> list[str]:
    rel, cost_rel = RESULTS / "robustness.json", RESULTS / "robustness_prep_cost.json"
    d = load(root, rel)
    if not d or not d.get("rows"):
        return []
    pub = d.get("published") or {}
    rows = []
    for r in d["rows"]:
        sc, vs = r["scores"], (r.get("scores_vs") or {}).get("teacher")
        rows.append(
            [
                r["model"],
                r["outlier_filter"],
                pct(r["clean_oa"], 1),
                pct(sc["mOA"], 1),
                num(sc["mCE"], 3),
                num(sc["RmCE"], 3),
                "–" if vs is None else num(vs["mCE"], 3),
                *(pct(sc["corruptions"][c]["oa"], 1) for c in CORRUPTIONS),
            ]
        )
    ref = pub.get("dgcnn_oa")
    for name, mce in (pub.get("mce") or {}).items():
        per = [pct(ref[c], 1) for c in CORRUPTIONS] if ref and name == "DGCNN" else ["–"] * len(CORRUPTIONS)
        clean = pct(ref["clean"], 1) if ref and name == "DGCNN" else "–"
        moa = pct(statistics.mean(ref[c] for c in CORRUPTIONS), 1) if ref and name == "DGCNN" else "–"
        rmce = "1.000" if name == "DGCNN" else "–"
        rows.append([f"{name} (published)", "–", clean, moa, num(mce, 3), rmce, "–", *per])
    lines = [
        "## Robustness (ModelNet-C, regenerated)",
        "",
        f"The seven ModelNet-C corruptions at 5 levels, regenerated from the test split with the published parameters "
        f"(`pointkd.data.corruptions`; not the official files, so comparable in kind, not digit for digit), on a "
        f"seeded sample of {d['clouds']} test clouds (the same for every row; at that size one OA carries about "
        "+-3 points of sampling noise), torch on the CPU. Every corrupted cloud is prepared by `prepare_cloud` to "
        "the model's 1024 points, as a served upload. mCE and RmCE are against the published DGCNN; "
        "'vs teacher' against the shipped teacher measured here with the same filter. Filter `sor`: statistical "
        "outlier removal before the normalisation (`pointkd eval/serve --outlier-filter sor`). Columns after "
        "RmCE: mean OA over the 5 levels, %.",
        "",
        *table(
            ["model", "filter", "clean OA %", "mOA %", "mCE", "RmCE", "mCE vs teacher", *CORRUPTIONS],
            rows,
            "ll" + "r" * (5 + len(CORRUPTIONS)),
        ),
        "",
        source(rel),
        "",
    ]
    cost = load(root, cost_rel)
    if cost:
        lines += [
            "Cost of the filter (median ms per cloud, 1 thread, campaign paused, other work still on the cores):",
            "",
            *table(["case", "median ms"], [[k, num(v["median_ms"])] for k, v in cost.items()], "lr"),
            "",
            source(cost_rel),
            "",
        ]
    return lines


def section_demo(root: Path) -> list[str]:
    rel = RESULTS / "demo" / "demo.json"
    d = load(root, rel)
    if not d:
        return []
    st = d.get("stages", {})
    comp, serve = st.get("compile", {}), st.get("serve", {})
    rows = []
    for name in ("teacher", "student"):
        if name in st:
            rows.append([name, f"OA {pct(st[name].get('oa'))} %", num(st[name].get("seconds"), 0)])
    for fmt in ("onnx", "onnx-int8"):
        if fmt in comp:
            c = comp[fmt]
            rows.append([f"compile {fmt}", f"OA {pct(c.get('oa'))} %, {num(c.get('size_kib'), 0)} KiB", "–"])
    if comp:
        rows.append(["compile (both)", "", num(comp.get("seconds"), 0)])
    if "bench" in st:
        rows.append(["bench", "", num(st["bench"].get("seconds"), 0)])
    if serve:
        rows.append(
            [
                "serve",
                f"{serve.get('requests', 0) - serve.get('errors', 0)}/{serve.get('requests')} answered, accuracy "
                f"{pct(serve.get('accuracy'))} %, client p50 {num(serve.get('client_p50_ms'))} ms",
                num(serve.get("seconds"), 0),
            ]
        )
    rows.append(["**total**", "", f"**{num(d.get('total_seconds'), 0)}** ({num(d['total_seconds'] / 60, 1)} min)"])
    return [
        "## `pointkd demo`",
        "",
        "`make demo` on the shared ModelNet40: a small, short-trained teacher and LSP student (it shows the "
        "pipeline, not the method's gain).",
        "",
        *table(["stage", "result", "seconds"], rows, "llr"),
        "",
        source(rel),
        "",
    ]


# ------------------------------------------------------------------ headline numbers (README)


def paper_table(summary: dict[str, Any]) -> tuple[dict[str, tuple[float, float | None]], str]:
    """The LSP paper's Table 4 as the campaign summary carries it: ``({method: (OA, mAcc)}, its student)``."""
    paper = summary.get("paper") or {"oa_macc": {}, "student": "dgcnn_student"}
    table = {m: tuple(v) for m, v in paper["oa_macc"].items()}
    return table, paper["student"]


def int8_clause(root: Path, rows: dict, label: str, device: str) -> str:
    """int8 against fp32 ONNX for ``label``: size, accuracy and p50 speed-up at each thread count from the bench,
    and the per-op profile's bound on what int8 could gain (empty parts where a source is missing)."""
    fp, q = rows[(label, "onnx", 2)], rows[(label, "onnx-int8", 2)]
    drop = (fp["oa"] - q["oa"]) * 100
    accuracy = f"for {drop:.2f} OA points" if drop >= 0 else f"and {-drop:.2f} OA points more accurate"
    speedups = [
        rows[(label, "onnx", t)]["p50_ms"] / rows[(label, "onnx-int8", t)]["p50_ms"]
        for t in (1, 2)
        if (label, "onnx", t) in rows and (label, "onnx-int8", t) in rows
    ]
    speed = f"; fp32/int8 p50 {min(speedups):.2f}–{max(speedups):.2f}× at 1–2 threads" if speedups else ""
    text = f"int8 is {fp['size_mb'] / q['size_mb']:.1f}× smaller {accuracy}{speed}"
    rel = RESULTS / device / "int8_profile.json"
    d = load(root, rel)
    if d and d.get("settings"):
        bound = max(s["quantized_layers"]["bound_if_free"] for s in d["settings"])
        text += (
            f" (at {d.get('points')} points the quantized layers could gain at most {bound:.2f}× even at no cost: "
            f"the kNN stays float, [profile]({rel.with_suffix('.md')}))"
        )
    return text


def fused_clause(row: dict | None) -> str:
    """The fused-operator artifact's latency, when the bench measured it."""
    if not row:
        return ""
    ms = f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f}"
    return f" (with the fused kNN and gather-max operators, onnx-fused: {ms})"


def shipped_models_line(root: Path) -> list[str]:
    """The shipped teacher and served student as evaluated by benchmarks/per_class.py (empty without it)."""
    d = load(root, PER_CLASS)
    s = load(root, RESULTS / "campaign" / "modelnet40" / "summary.json") or {}
    if not d:
        return []
    paper, _ = paper_table(s)
    pt, ps = paper.get("teacher", ("–", "–")), paper.get("lsp", ("–", "–"))
    t, st = d["teacher"], d["student"]
    return [
        f"- **Shipped models** (ModelNet40 test split, {d['points']} points, last epoch, no voting): teacher "
        f"`{Path(t['checkpoint']).stem}` {pct(t['oa'])} % OA / {pct(t['macc'])} % mAcc (paper {pt[0]} / {pt[1]}); "
        f"served student `{Path(st['checkpoint']).stem}` {pct(st['oa'])} / {pct(st['macc'])} (the paper's LSP "
        f"student {ps[0]} / {ps[1]}) ([per class](docs/results.md#per-class-the-served-student-against-its-teacher))."
    ]


def method_lines(root: Path) -> list[str]:
    """LSP against scratch at 20 epochs (plan modelnet40_paper, paired by seed) and every method at 8 epochs."""
    out = []
    s20 = load(root, RESULTS / "campaign" / PAPER_PLAN / "summary.json") or {}
    groups20 = campaign_groups({"runs": [r for r in s20.get("runs") or [] if not r.get("init")]})
    scratch = {r.get("seed"): r for r in groups20.get(("scratch20", "dgcnn_student"), [])}
    lsp = groups20.get(("lsp_med20", "dgcnn_student"), [])
    deltas = seed_deltas(lsp, scratch, "oa_1024")
    if deltas:
        ci = delta_interval(deltas)
        out.append(
            f"- **LSP against scratch at 20 epochs** (median-σ LSP, {len(deltas)} seed pair(s), 1024 test points): "
            f"{mean_sd([r['oa_1024'] for r in lsp])} % against {mean_sd([r['oa_1024'] for r in scratch.values()])} "
            f"%, {mean_delta(deltas)} points{f' (95 % CI {ci})' if ci != '–' else ''} "
            "([table](docs/results.md#the-papers-table-at-20-epochs-plan-modelnet40_paper))."
        )
    s = load(root, RESULTS / "campaign" / "modelnet40" / "summary.json")
    if s:
        paper, paper_student = paper_table(s)
        order = list(paper)
        groups = sorted(campaign_groups(s).items(), key=lambda kv: order.index(kv[0][0]) if kv[0][0] in order else 99)
        students = []
        for (label, student), runs in groups:
            oas = [r["oa_1024"] for r in runs if r.get("oa_1024") is not None]
            if student == paper_student and oas:
                students.append(f"{label} {statistics.mean(oas) * 100:.2f} %")
        if students:
            out.append(
                "- **Every method at 8 epochs** (the paper's student, 1024 test points, mean over seeds): "
                f"{', '.join(students)} ([table](docs/results.md#campaign-against-the-lsp-paper))."
            )
    return out


def headline(root: Path) -> list[str]:
    """Five headline numbers, each linking into docs/results.md; a missing source drops its line."""
    from pointkd.demo import SHIPPED

    shipped_student = Path(SHIPPED["student"]).stem
    out = shipped_models_line(root)
    out += method_lines(root)
    levers = sorted(device_dirs(root, "train_step_levers.json"), key=lambda rel: load(root, rel).get("created", ""))
    d = load(root, levers[-1]) if levers else None
    if d:
        dev = levers[-1].parent.name
        rows = {(r["label"], r["code"], r.get("centres")): r for r in d.get("rows", []) if r.get("status") == "ok"}
        tb, tc = rows.get(("teacher", "baseline", None)), rows.get(("teacher", "current", None))
        lsp, scratch = rows.get(("LSP, 128 centres", "current", 128)), rows.get(("scratch student", "current", None))
        if tb and tc and lsp and scratch:
            out.append(
                f"- **Training step** (batch 32 × 512, on `{dev}`): teacher {tb['ms_p50']:.0f} → {tc['ms_p50']:.0f} "
                f"ms; an LSP step costs {lsp['ms_p50'] / scratch['ms_p50']:.2f}× a scratch-student step"
                f"{fused_knn_clause(rows)} ([table](docs/results.md#{slug(f'Training-step levers: {dev}')}))."
            )
    # the newest device report that measured the shipped student (an older report: the newest of all)
    benches = sorted(device_dirs(root, "bench.json"), key=lambda rel: load(root, rel).get("created", ""))
    shipped_benches = [rel for rel in benches if (shipped_student, "onnx", 2) in bench_rows(load(root, rel))]
    chosen = (shipped_benches or benches)[-1:] or [None]
    d = load(root, chosen[0]) if chosen[0] else None
    if d:
        dev = chosen[0].parent.name
        rows = bench_rows(d)
        # the shipped campaign student, else (an older report) the CPU-budget one
        campaign = (shipped_student, "student_lsp_long")  # the shipped one, then its predecessor
        label = next((m for m in (*campaign, "student_lsp") if (m, "onnx", 2) in rows), "student_lsp")
        fp, q = rows.get((label, "onnx", 2)), rows.get((label, "onnx-int8", 2))
        what = "the shipped LSP paper student" if label in campaign else "the LSP paper student"
        source = f"at its {fp['points']} points" if fp and label in campaign else "from a CPU-budget run"
        if fp and q:
            out.append(
                f"- **Student latency** ({what}, {fp['oa'] * 100:.2f} % OA {source}; "
                f"ONNX Runtime, batch 1, {fp['points']} points, 2 threads, on `{dev}`): p50 {fp['p50_ms']:.2f} ms, "
                f"p99 {fp['p99_ms']:.2f} ms{fused_clause(rows.get((label, 'onnx-fused', 2)))}; "
                f"{int8_clause(root, rows, label, dev)} ([table](docs/results.md#{slug(f'`pointkd bench`: {dev}')}))."
            )
    student_tests = [load(root, rel) for rel in glob(root, "*/load_test_student*/load_test.json")]
    best = {}  # each point count's best serving setting measured for the student
    for d in sorted(student_tests, key=binary_p99):
        best.setdefault(d.get("num_points"), d)
    if best:
        shown = [best[n] for n in sorted(best, key=lambda n: n or 0)]
        clauses = "; ".join(server_clause(d, shipped_student) for d in shown)
        others = [t for t in student_tests if all(t is not d for d in shown)]
        out.append(
            "- **Server** (`pointkd serve`, 50 requests/s of binary bodies, client on the same 2 cores, goal p99 ≤ "
            f"10 ms): {clauses}{other_load_tests(others)}."
        )
    d = load(root, RESULTS / "demo" / "demo.json")
    if d:
        serve = d.get("stages", {}).get("serve", {})
        out.append(
            f"- **`make demo`** end to end on ModelNet40: {d['total_seconds'] / 60:.1f} min on 2 cores, "
            f"{serve.get('requests', 0) - serve.get('errors', 0)}/{serve.get('requests')} HTTP answers "
            "([table](docs/results.md#pointkd-demo))."
        )
    return out


# ------------------------------------------------------------------ assembly


def render(root: Path) -> str:
    lines = [
        "# Results",
        "",
        "<!-- Generated by scripts/results_doc.py from the committed JSON under benchmarks/results/: do not edit; "
        "run `python scripts/results_doc.py` after adding results. -->",
        "",
        "Every table is generated from a committed result file, named under it. Times are wall-clock on the device "
        "named: its results folder benchmarks/results/<device-id>/ names the CPU model, microarchitecture, SIMD level "
        "and cores (`pointkd.bench.device.device_id`); the 2-core machines are shared with other work, so single runs "
        "vary by several per cent.",
        "",
    ]
    lines += section_campaign(root)
    lines += section_paper_campaign(root)
    lines += section_per_class(root)
    lines += section_train_speed(root)
    latency = (
        section_cross_device(root)
        + section_bench(root)
        + section_latency(root)
        + section_topk(root)
        + section_artifacts(root)
    )
    if latency:
        lines += ["## Latency per device and format", "", *latency]
    serving = section_load(root)
    if serving:
        lines += ["## Serving", "", *serving]
    lines += section_distill_compare(root)
    lines += __import__("pointkd.bench.robustness_doc").bench.robustness_doc.render_robustness(root, load)
    lines += section_demo(root)
    lines += section_house(root)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def readme_with_headline(readme: str, root: Path) -> str:
    """README text with the block between the markers replaced (unchanged when the markers are absent)."""
    if HEADLINE_START not in readme or HEADLINE_END not in readme:
        return readme
    head, rest = readme.split(HEADLINE_START, 1)
    _, tail = rest.split(HEADLINE_END, 1)
    return head + HEADLINE_START + "\n" + "\n".join(headline(root)) + "\n" + HEADLINE_END + tail


def outputs(root: Path) -> dict[Path, str]:
    out = {DOC: render(root)}
    if (root / README).is_file():
        out[README] = readme_with_headline((root / README).read_text(), root)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file differs from its sources")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in outputs(args.root).items():
        path = args.root / rel
        old = path.read_text() if path.is_file() else ""
        if old == text:
            continue
        if args.check:
            stale.append(rel)
            diff = difflib.unified_diff(
                old.splitlines(), text.splitlines(), str(rel), f"{rel} (generated)", lineterm=""
            )
            print("\n".join(list(diff)[:60]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {rel}")
    left_out = untracked_results(args.root)
    if left_out:
        print(
            f"left out, not added to git: {', '.join(left_out)}; `git add` them and run this again",
            file=sys.stderr,
        )
    if stale:
        print(f"stale: {', '.join(map(str, stale))}; run `python scripts/results_doc.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
