"""Write docs/results.md (and the README's headline block) from the committed result files.

    python scripts/results_doc.py          # rewrite docs/results.md and the block in README.md
    python scripts/results_doc.py --check  # exit 1 if either differs from what the result files give

The document is assembled from sections (:data:`LAYOUT`, in the document's order): each benchmark or study renders
its own, ``section(root) -> list[str]``, beside its code: a study's in ``benchmarks/studies/<name>/section.py``, a
maintained benchmark's or a command's in ``benchmarks/sections/<name>.py`` (kept apart from the scripts, which import
torch). The shared pieces (which files count, links, tables) are :mod:`pointkd.results`. The load tests' and the
robustness sections, and the README's headline, are still rendered here.

Reads only JSON under benchmarks/results/ and benchmarks/studies/ (never the .md beside them); every table names the
file it comes from. In a git checkout only the files git tracks count (a record the campaign has just written counts
once it is added). Every source but the campaign summary is optional: a missing file drops its table. Any number of
campaign runs and of device folders (benchmarks/results/<device-id>/) is handled.
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
    load_section,
    mean_sd,
    num,
    pct,
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
    """The section module of a maintained benchmark or command (``benchmarks/sections/<name>.py``) or, as
    ``study:<name>``, of a study (``benchmarks/studies/<name>/section.py``)."""
    if name.startswith("study:"):
        study = name.split(":", 1)[1]
        return load_section(ROOT / STUDIES / study / "section.py", f"results_study_{study}")
    return load_section(ROOT / "benchmarks" / "sections" / f"{name}.py", f"results_section_{name}")


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


# ------------------------------------------------------------------ serving (benchmarks/load_test.py, load_clients.py)


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
    """The load tests (``benchmarks/load_test.py``) and the two load clients compared (``load_clients.py``)."""
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
    return lines


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
    runs = sorted(levers.results(root), key=lambda rel: load(root, rel).get("created", ""))
    d = load(root, runs[-1]) if runs else None
    if d:
        dev = runs[-1].parent.name
        rows = {(r["label"], r["code"], r.get("centres")): r for r in d.get("rows", []) if r.get("status") == "ok"}
        tb, tc = rows.get(("teacher", "baseline", None)), rows.get(("teacher", "current", None))
        lsp, scratch = rows.get(("LSP, 128 centres", "current", 128)), rows.get(("scratch student", "current", None))
        if tb and tc and lsp and scratch:
            out.append(
                f"- **Training step** (batch 32 × 512, on `{dev}`): teacher {tb['ms_p50']:.0f} → {tc['ms_p50']:.0f} "
                f"ms; an LSP step costs {lsp['ms_p50'] / scratch['ms_p50']:.2f}× a scratch-student step"
                f"{levers.fused_knn_clause(rows)} ([table](docs/results.md#{slug(f'Training-step levers: {dev}')}))."
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
