"""The README's headline numbers (between the markers ``scripts/results_doc.py`` rewrites): five to seven lines, each
linking into docs/results.md, each from the committed result files the sections read."""

from __future__ import annotations

import statistics
from pathlib import Path

from pointkd.results import RESULTS, device_dirs, glob, load, mean_sd, pct, section_module, slug

CODE = Path(__file__).resolve().parents[2]  # this checkout: the sections' code
campaign, bench, load_test = (section_module(CODE, n) for n in ("campaign", "bench", "load_test"))
levers = section_module(CODE, "study:train_step_levers")
PER_CLASS = section_module(CODE, "per_class").RESULT
paper_table, campaign_groups, PAPER_PLAN = campaign.paper_table, campaign.campaign_groups, campaign.PAPER_PLAN
seed_deltas, delta_interval, mean_delta = campaign.seed_deltas, campaign.delta_interval, campaign.mean_delta
bench_rows = bench.bench_rows
binary_p99, server_clause, other_load_tests = load_test.binary_p99, load_test.server_clause, load_test.other_load_tests
served_model, ran_on = load_test.served_model, load_test.ran_on


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
        f"student {ps[0]} / {ps[1]}) ([per class](docs/results.md#per-class-the-served-student-against-its-teacher))"
        f"{robustness_clause(root, Path(st['checkpoint']).name)}."
    ]


def robustness_clause(root: Path, student: str) -> str:
    """The served student's mCE under ModelNet-C (torch, no filter) from benchmarks/results/robustness.json."""
    d = load(root, RESULTS / "robustness.json") or {}
    rows = [r for r in d.get("rows", []) if r.get("model") == student and r.get("format", "torch") == "torch"]
    row = next((r for r in rows if r.get("outlier_filter") == "none"), None)
    if row is None:
        return ""
    return (
        f"; under the ModelNet-C corruptions ({row['clouds']} seeded clouds, no outlier filter) its mCE is "
        f"{row['scores']['mCE']:.3f} against the published DGCNN's 1.000 "
        f"([table](docs/results.md#{slug('Robustness (ModelNet-C, regenerated)')}))"
    )


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


def other_devices_clause(reports: dict[str, dict], label: str) -> str:
    """The shipped student's onnx-fused latency on other devices, from their bench rows by device folder."""
    clauses = []
    for dev, rows in reports.items():
        row = rows.get((label, "onnx-fused", 2))
        if row:
            clauses.append(f"on `{dev}` p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f}")
    return f"; onnx-fused {'; '.join(clauses)}" if clauses else ""


def server_tests(tests: list[tuple[dict, Path]], shipped: str) -> list[tuple[dict, Path]]:
    """The load tests the headline quotes: each point count's best serving setting (the shipped student's, where
    it has one), then the shipped student's best on every other device that load-tested it, so a device where it
    misses the goal is not hidden behind a faster one."""
    best: dict = {}
    mine = sorted((t for t in tests if served_model(t[0]) == shipped), key=lambda t: binary_p99(t[0]))
    for d, rel in mine + sorted(tests, key=lambda t: binary_p99(t[0])):
        best.setdefault(d.get("num_points"), (d, rel))
    shown = [best[n] for n in sorted(best, key=lambda n: n or 0)]
    devices = {ran_on(rel) for d, rel in shown if served_model(d) == shipped}
    for d, rel in mine:
        if ran_on(rel) not in devices:
            devices.add(ran_on(rel))
            shown.append((d, rel))
    return shown


def training_step_line(root: Path) -> list[str]:
    """The newest training-step study: the teacher's step before and after its levers, LSP against scratch."""
    runs = sorted(levers.results(root), key=lambda rel: load(root, rel).get("created", ""))
    d = load(root, runs[-1]) if runs else None
    if not d:
        return []
    dev = runs[-1].parent.name
    rows = {(r["label"], r["code"], r.get("centres")): r for r in d.get("rows", []) if r.get("status") == "ok"}
    tb, tc = rows.get(("teacher", "baseline", None)), rows.get(("teacher", "current", None))
    lsp, scratch = rows.get(("LSP, 128 centres", "current", 128)), rows.get(("scratch student", "current", None))
    if not (tb and tc and lsp and scratch):
        return []
    return [
        f"- **Training step** (batch 32 × 512, on `{dev}`): teacher {tb['ms_p50']:.0f} → {tc['ms_p50']:.0f} "
        f"ms; an LSP step costs {lsp['ms_p50'] / scratch['ms_p50']:.2f}× a scratch-student step"
        f"{levers.fused_knn_clause(rows)} ([table](docs/results.md#{slug(f'Training-step levers: {dev}')}))."
    ]


def latency_line(root: Path, shipped: str) -> list[str]:
    """The newest device report that measured the shipped student (an older report: the newest of all), with the
    other devices' onnx-fused figures."""
    reports = {rel: load(root, rel) for rel in device_dirs(root, "bench.json")}
    benches = sorted(reports, key=lambda rel: reports[rel].get("created", ""))
    rows_of = {rel: bench_rows(reports[rel]) for rel in benches}
    shipped_benches = [rel for rel in benches if (shipped, "onnx", 2) in rows_of[rel]]
    chosen = (shipped_benches or benches)[-1:]
    if not chosen:
        return []
    dev, rows = chosen[0].parent.name, rows_of[chosen[0]]
    others = {rel.parent.name: rows_of[rel] for rel in shipped_benches[:-1]}
    campaign = (shipped, "student_lsp_long")  # the shipped one, then its predecessor (an older report)
    label = next((m for m in (*campaign, "student_lsp") if (m, "onnx", 2) in rows), "student_lsp")
    fp, q = rows.get((label, "onnx", 2)), rows.get((label, "onnx-int8", 2))
    if not (fp and q):
        return []
    what = "the shipped LSP paper student" if label in campaign else "the LSP paper student"
    source = f"at its {fp['points']} points" if label in campaign else "from a CPU-budget run"
    return [
        f"- **Student latency** ({what}, {fp['oa'] * 100:.2f} % OA {source}; "
        f"ONNX Runtime, batch 1, {fp['points']} points, 2 threads, on `{dev}`): p50 {fp['p50_ms']:.2f} ms, "
        f"p99 {fp['p99_ms']:.2f} ms{fused_clause(rows.get((label, 'onnx-fused', 2)))}; "
        f"{int8_clause(root, rows, label, dev)}{other_devices_clause(others, label)} "
        f"([table](docs/results.md#{slug(f'`pointkd bench`: {dev}')}))."
    ]


def server_line(root: Path, shipped: str) -> list[str]:
    """The load tests :func:`server_tests` picks, and the span of the others."""
    tests = [(load(root, rel), rel) for rel in glob(root, "*/load_test_student*/load_test.json")]
    shown = server_tests(tests, shipped)
    if not shown:
        return []
    clauses = "; ".join(server_clause(d, rel, shipped) for d, rel in shown)
    others = [d for d, rel in tests if all(rel != r for _, r in shown)]
    return [
        "- **Server** (`pointkd serve`, 50 requests/s of binary bodies, client on the same 2 cores, goal p99 ≤ "
        f"10 ms): {clauses}{other_load_tests(others)}."
    ]


def demo_line(root: Path) -> list[str]:
    d = load(root, RESULTS / "demo" / "demo.json")
    if not d:
        return []
    serve = d.get("stages", {}).get("serve", {})
    return [
        f"- **`make demo`** end to end on ModelNet40: {d['total_seconds'] / 60:.1f} min on 2 cores, "
        f"{serve.get('requests', 0) - serve.get('errors', 0)}/{serve.get('requests')} HTTP answers "
        "([table](docs/results.md#pointkd-demo))."
    ]


def headline(root: Path) -> list[str]:
    """Five headline numbers, each linking into docs/results.md; a missing source drops its line."""
    from pointkd.demo import SHIPPED

    shipped = Path(SHIPPED["student"]).stem
    lines = shipped_models_line(root) + method_lines(root) + training_step_line(root)
    return lines + latency_line(root, shipped) + server_line(root, shipped) + demo_line(root)
