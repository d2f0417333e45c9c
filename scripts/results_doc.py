"""Write docs/results.md (and the README's headline block) from the committed result files.

    python scripts/results_doc.py          # rewrite docs/results.md and the block in README.md
    python scripts/results_doc.py --check  # exit 1 if either differs from what the result files give

The document is assembled from sections (:data:`LAYOUT`, in the document's order): each benchmark or study renders
its own, ``section(root) -> list[str]``, beside its code: a study's in ``benchmarks/studies/<name>/section.py``, a
maintained benchmark's or a command's in ``benchmarks/sections/<name>.py`` (kept apart from the scripts, which import
torch); the README's headline block is ``benchmarks/sections/headline.py``. The shared pieces (which files count,
links, tables) are :mod:`pointkd.results`. The robustness section is still rendered here (its hook in the layout).

Reads only JSON under benchmarks/results/ and benchmarks/studies/ (never the .md beside them; the studies' index
quotes each study README's question); every table names the file it comes from. In a git checkout only the files
git tracks count (a record the campaign has just written counts once it is added). Every source but the campaign
summary is optional: a missing file drops its table. Any number of campaign runs and of device folders
(benchmarks/results/<device-id>/) is handled.
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from pointkd.results import (  # noqa: F401 (re-exported: sections written here, tests)
    RESULTS,
    STUDIES,
    device_dirs,
    exists,
    glob,
    link,
    load,
    mean_sd,
    num,
    pct,
    section_module,
    signed,
    slug,
    source,
    table,
    tracked,
    untracked_results,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = Path("docs/results.md")
README = Path("README.md")
HEADLINE_START = "<!-- headline numbers: written by scripts/results_doc.py -->"
HEADLINE_END = "<!-- end of headline numbers -->"


def part(name: str) -> ModuleType:
    """A section module of this checkout: ``benchmarks/sections/<name>.py``, or ``study:<name>`` for
    ``benchmarks/studies/<name>/section.py`` (:func:`pointkd.results.section_module`)."""
    return section_module(ROOT, name)


campaign, bench = part("campaign"), part("bench")
levers = part("study:train_step_levers")
# The campaign's statistics and tables, which the headline and the tests use by these names.
MAIN_PLAN, PAPER_PLAN = campaign.MAIN_PLAN, campaign.PAPER_PLAN
campaign_groups, paper_table, seed_deltas = campaign.campaign_groups, campaign.paper_table, campaign.seed_deltas
mean_delta, delta_interval, t975 = campaign.mean_delta, campaign.delta_interval, campaign.t975
section_campaign_pairs, section_paper_campaign = campaign.section_campaign_pairs, campaign.section_paper_campaign
section_cross_device, section_bench, bench_rows = bench.section_cross_device, bench.section_bench, bench.bench_rows
section_serve_tuning = part("serve_tuning").section
PER_CLASS = part("per_class").RESULT
load_test = part("load_test")  # benchmarks/load_test.py, load_clients.py
section_load, served_model, time_split_lines = load_test.section, load_test.served_model, load_test.time_split_lines
headline = part("headline").headline  # the README's block


# ------------------------------------------------------------------ robustness (benchmarks/robustness.py)


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


# ------------------------------------------------------------------ headline numbers (README)


# ------------------------------------------------------------------ assembly

INTRO = [
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

Section = Callable[[Path], list[str]]

# The document's order: (a "## " heading over the group, written only when one of its sections has lines, or None;
# the sections).
LAYOUT: list[tuple[str | None, list[Section]]] = [
    (
        None,
        [
            campaign.section_campaign,
            part("study:lsp_target_shape").section,
            campaign.section_runs,
            section_paper_campaign,
            part("per_class").section,
        ],
    ),
    (
        "## Training-step speed",
        [levers.section, part("train_speed").section, part("gpu_check").section, part("study:lsp_cost").section],
    ),
    (
        "## Latency per device and format",
        [
            section_cross_device,
            section_bench,
            part("latency").section,
            part("study:seeded_topk").section,
            part("knn_op").section,
            part("study:knn_backends").section,
            bench.section_artifacts,
        ],
    ),
    ("## Serving", [section_load, section_serve_tuning, part("study:idle_gap").section, part("soak").section]),
    (
        None,
        [
            part("study:distill_compare").section,
            section_robustness,  # the robustness hook: benchmarks/robustness.py's renderers are called from it
            part("demo").section,
            part("house").section,
            part("studies").section,  # the index of benchmarks/studies/
        ],
    ),
]


def render(root: Path) -> str:
    lines = list(INTRO)
    for heading, sections in LAYOUT:
        body = [line for section in sections for line in section(root)]
        if body and heading:
            body = [heading, "", *body]
        lines += body
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
