"""The documentation cannot drift from the committed results: docs/results.md and the README's headline numbers are
generated from benchmarks/results/ (scripts/results_doc.py --check), the README stays a front door (≤ 120 lines),
and every relative link (and #anchor) in README.md and docs/*.md resolves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scriptload import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "results_doc.py"
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")


def results_doc():
    return load_script(SCRIPT, "results_doc")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {results_doc().slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_generated_docs_match_the_committed_results():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    doc = results_doc()
    assert doc.HEADLINE_START in text and doc.HEADLINE_END in text
    block = text.split(doc.HEADLINE_START, 1)[1].split(doc.HEADLINE_END, 1)[0]
    items = [ln for ln in block.splitlines() if ln.startswith("- ")]
    assert 5 <= len(items) <= 7 and items[0].startswith("- **Shipped models**")  # the shipped models lead
    assert "make demo" in text and "make test" in text
    assert "exec make test" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command


def test_relative_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            path = (page.parent / file_part).resolve() if file_part else page
            if not path.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_generator_handles_any_number_of_runs_and_missing_files(tmp_path):
    doc = results_doc()
    folder = tmp_path / "benchmarks" / "results" / "campaign" / "modelnet40"
    (folder / "records").mkdir(parents=True)
    runs = [
        {"name": f"{m}-s{seed}", "method": m, "seed": seed, "student": "dgcnn_student", "oa_1024": oa, "k_1024": 20}
        for m, seed, oa in [("lsp", 1, 0.90), ("lsp", 2, 0.92), ("kd", 1, 0.89), ("hkd", 1, 0.88)]
    ]
    runs.append({"name": "lsp_fast-s1", "method": "lsp", "seed": 1, "student": "dgcnn_student_fast", "oa_1024": 0.8})
    paper = {
        "student": "dgcnn_student",
        "oa_macc": {"teacher": [92.4, 89.3], "fitnet": [91.1, None], "lsp": [91.9, 88.6]},
    }
    (folder / "summary.json").write_text(json.dumps({"teacher": None, "runs": runs, "paper": paper}))
    (folder / "records" / "lsp-s3.json").write_text(
        json.dumps({"name": "lsp-s3", "role": "student", "epochs": 8, "last": {"evals": {"1024": {"oa": 0.9}}}})
    )
    other = tmp_path / "benchmarks" / "results" / "campaign" / "modelnet40_long" / "records"
    other.mkdir(parents=True)
    evals = {"512": {"oa": 0.9, "k": 20}, "1024": {"oa": 0.89, "k": 40}}
    (other / "teacher_long.json").write_text(
        json.dumps({"name": "teacher_long", "role": "teacher", "epochs": 25, "last": {"evals": evals}})
    )
    text = doc.render(tmp_path)
    assert "### Campaign runs: plan `modelnet40_long`" in text  # another plan: a table of its runs
    assert "| teacher_long | teacher | – | – | 25 | – | 90.00 (k 20) | 89.00 (k 40) |" in text
    assert "campaign summary benchmarks/campaign/modelnet40_long.yaml" in text
    assert "| lsp | dgcnn_student | 1, 2 | 91.00 ± 1.41 (k 20) |" in text
    assert "| fitnet | dgcnn_student | – | not run yet | – | – | 91.1 |" in text  # a paper row not reached yet
    assert "| lsp_fast | dgcnn_student_fast | 1 |" in text and "| hkd | dgcnn_student | 1 |" in text
    assert "Not in summary.json yet: lsp-s3" in text
    assert "## Serving" not in text and "pointkd bench" not in text  # missing optional sources drop their tables
    readme = f"intro\n{doc.HEADLINE_START}\nold\n{doc.HEADLINE_END}\nrest\n"
    (tmp_path / "README.md").write_text(readme)
    assert doc.main(["--check", "--root", str(tmp_path)]) == 1  # docs/results.md missing, README block stale
    assert doc.main(["--root", str(tmp_path)]) == 0
    assert doc.main(["--check", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text().endswith(f"{doc.HEADLINE_END}\nrest\n")
    assert "old" not in (tmp_path / "README.md").read_text()


def test_untracked_result_files_are_named_not_silently_left_out(tmp_path):
    doc = results_doc()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    folder = tmp_path / "benchmarks" / "results" / "campaign"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text("{}")
    (folder / "notes.md").write_text("not a result")
    assert doc.untracked_results(tmp_path) == ["benchmarks/results/campaign/run.json"]
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert doc.untracked_results(tmp_path) == []


def test_paired_table_subtracts_the_scratch_run_of_the_same_seed_only():
    doc = results_doc()
    runs = [
        {"name": "scratch-s1", "seed": 1, "student": "s", "oa_1024": 0.80, "oa_512": 0.81},
        {"name": "scratch-s2", "seed": 2, "student": "s", "oa_1024": 0.70, "oa_512": 0.71},
        {"name": "lsp-s1", "seed": 1, "student": "s", "oa_1024": 0.815, "oa_512": 0.80},
        {"name": "lsp-s2", "seed": 2, "student": "s", "oa_1024": 0.73},  # no 512 figure
        {"name": "lsp-s3", "seed": 3, "student": "s", "oa_1024": 0.99, "oa_512": 0.99},  # no scratch-s3: unpaired
        {"name": "kd-s4", "seed": 4, "student": "s", "oa_1024": 0.5},  # no pair at all: no row
        {"name": "lsp-s1", "seed": 1, "student": "other", "oa_1024": 0.1},  # another student: not compared
    ]
    lines = doc.section_campaign_pairs(doc.campaign_groups({"runs": runs}), "s")
    rows = [line for line in lines if line.startswith("| lsp") or line.startswith("| kd")]
    # two pairs at 1024: mean 2.25, sd 1.06, t(1) = 12.706: 2.25 ± 12.706 * 1.06 / sqrt(2) = 2.25 ± 9.53
    assert rows == ["| lsp | 2 | s1: +1.50 / -1.00; s2: +3.00 / – | +2.25 ± 1.06 | -7.28 to +11.78 | -1.00 | – |"]
    assert doc.section_campaign_pairs(doc.campaign_groups({"runs": runs[2:]}), "s") == []  # no scratch runs


def test_server_headline_shows_the_shipped_students_load_test_on_each_device_and_each_other_point_counts_best(
    tmp_path,
):
    from pointkd.demo import SHIPPED

    doc = results_doc()
    shipped = Path(SHIPPED["student"]).stem
    tests = [("a", "student_old", 512, 7.0), ("b", "student_old", 512, 9.0), ("c", shipped, 1024, 12.0)]
    tests.append(("d", "student_old", 1024, 3.0))  # faster, but not the shipped model: counted among the others
    tests.append(("e", shipped, 1024, 6.0))  # on a faster device: shown, and it does not hide c's miss on "dev"
    for folder, model, points, p99 in tests:
        device = "dev2" if folder == "e" else "dev"
        path = tmp_path / "benchmarks" / "results" / device / f"load_test_student_{folder}" / "load_test.json"
        path.parent.mkdir(parents=True)
        d = {
            "artifact": f"artifacts/{model}-{points}-onnx-fused",
            "model": "dgcnn_student",
            "format": "onnx-fused",
            "num_points": points,
            "server": {"threads": 2},
            "model_only": {"p50_ms": 1.0},
            "goal": {"pooled_p99_ms": {"binary": p99}, "open_loop_requests": 3000, "met": p99 <= 10},
            "rows": [{"payload": "binary", "errors": 0}],
        }
        path.write_text(json.dumps(d))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert doc.served_model({"artifact": f"x/{shipped}-1024-onnx-fused", "num_points": 1024}) == shipped
    [line] = [line for line in doc.headline(tmp_path) if line.startswith("- **Server**")]
    assert "student_old onnx-fused on `dev` at 512 points, 2 thread(s): p99 7.00 ms" in line and "goal met" in line
    fast = f"the shipped {shipped} onnx-fused on `dev2` at 1024 points, 2 thread(s): p99 6.00 ms"
    slow = f"the shipped {shipped} onnx-fused on `dev` at 1024 points, 2 thread(s): p99 12.00 ms"
    assert fast in line and slow in line and line.index(fast) < line.index(slow)
    assert f"#load-test-{shipped}-onnx-fused-1024-points-2-threads-in-devload_test_student_c)" in line
    assert "goal missed" in line and line.endswith(
        "2 other student load test(s) here, other settings or days: p99 3.00–9.00 ms."
    )


def test_serve_tuning_rows_name_their_artifact(tmp_path):
    doc = results_doc()
    path = tmp_path / "benchmarks" / "results" / "dev" / "serve_tuning_two" / "serve_tuning.json"
    path.parent.mkdir(parents=True)
    common = {"format": "onnx-fused", "threads": 1, "spin": True, "requests": 10, "errors": 0, "p50_ms": 1.0}
    common |= {
        "p99_ms": 2.0,
        "worst_round_p99_ms": 2.5,
        "cpu_main_ms_per_request": 1.0,
        "cpu_workers_ms_per_request": 0,
    }
    rows = [{**common, "artifact": "a-512-onnx-fused", "oa": 0.8}, {**common, "artifact": "b-1024-onnx-fused"}]
    path.write_text(
        json.dumps({"device": {"cpu": "X", "cores": 2}, "rate": 50, "rounds": 1, "seconds": 5, "rows": rows})
    )
    lines = doc.section_serve_tuning(tmp_path)
    assert any(line.startswith("| `a-512-onnx-fused` | 80.00 | 1 | on | off |") for line in lines)
    assert any(line.startswith("| `b-1024-onnx-fused` | – | 1 | on | off |") for line in lines)


def test_t_quantiles_match_the_standard_table():
    doc = results_doc()
    table = {1: 12.706, 2: 4.303, 4: 2.776, 11: 2.201, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}
    for df, reference in table.items():
        assert abs(doc.t975(df) - reference) <= 0.0021, df
    with pytest.raises(ValueError):
        doc.t975(0)


def test_load_test_time_split_is_rendered_when_recorded():
    doc = results_doc()
    split = {"latency_mean_ms": 9.0, "model_call_mean_ms": 6.5, "server_rest_mean_ms": 0.75}
    split |= {"http_and_client_mean_ms": 1.75, "clouds_per_call": 1.0}
    [line, blank] = doc.time_split_lines({"time_split": {"binary": split}})
    assert blank == "" and line == (
        "Where an open-loop binary request's time went (means): 9.00 ms = the model's runtime call 6.50 ms "
        "(1.00 clouds per call) + the rest of the server 0.75 ms + HTTP and the client 1.75 ms."
    )
    assert doc.time_split_lines({}) == []  # older load tests did not record it


def test_idle_gap_rows_name_their_artifact(tmp_path):
    doc = results_doc()
    path = tmp_path / "benchmarks" / "studies" / "idle_gap" / "dev" / "idle_gap.json"
    path.parent.mkdir(parents=True)
    timing = {"p50_ms": 1.0, "p99_ms": 2.0, "cpu_ms": 1.0}
    common = {"format": "onnx-fused", "threads": 2, "spin": True, "keep_awake": False, "slowdown_p50": 1.5}
    common |= {"back_to_back": timing, "after_gap": timing}
    rows = [{**common, "artifact": "a-1024-onnx-fused"}, common]  # the second from before artifacts were recorded
    path.write_text(json.dumps({"gap_ms": 20, "rows": rows}))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    lines = doc.part("study:idle_gap").section(tmp_path)
    assert any(line.startswith("| `a-1024-onnx-fused` | onnx-fused | 2 | on | off |") for line in lines)
    assert any(line.startswith("| – | onnx-fused | 2 | on | off |") for line in lines)


def test_paper_style_table_groups_seeds_skips_warm_starts_and_pairs_the_same_budget(tmp_path):
    doc = results_doc()
    folder = tmp_path / "benchmarks" / "results" / "campaign" / doc.PAPER_PLAN
    folder.mkdir(parents=True)
    row = {"student": "dgcnn_student", "epochs": 20}
    runs = [
        {**row, "name": "scratch20-s1", "method": "scratch", "seed": 1, "oa_1024": 0.86, "macc_1024": 0.80},
        {**row, "name": "scratch20-s2", "method": "scratch", "seed": 2, "oa_1024": 0.87, "macc_1024": 0.80},
        {**row, "name": "lsp_med20-s1", "method": "lsp", "seed": 1, "oa_1024": 0.88, "macc_1024": 0.82},
        {**row, "name": "lsp_med20-s2", "method": "lsp", "seed": 2, "oa_1024": 0.88, "macc_1024": 0.82},
        {**row, "name": "lsp_tail-s1", "method": "lsp", "seed": 1, "oa_1024": 0.90, "init": "x.pt", "epochs": 3},
    ]
    paper = {"student": "dgcnn_student", "oa_macc": {"teacher": [92.4, 89.3], "lsp": [91.9, 88.6]}}
    (folder / "summary.json").write_text(json.dumps({"teacher": None, "runs": runs, "paper": paper}))
    # Test-time voting of the ships: both scratch seeds, one LSP seed (the other's ship is missing).
    votes = {"scratch20-s1": 0.87, "scratch20-s2": 0.88, "lsp_med20-s1": 0.89}
    rows = [{"run": name, "voting": {"oa": oa}} for name, oa in votes.items()]
    (folder.parents[1] / "voting.json").write_text(json.dumps({"votes": 10, "points": 1024, "rows": rows}))
    lines = doc.section_paper_campaign(tmp_path)
    text = "\n".join(lines)
    assert "| OA 512 | OA 1024, 10 votes | paper OA |" in text
    lsp_row = "| lsp_med20 | lsp | 1, 2 | 20 | 88.00 ± 0.00 | 82.00 ± 0.00 | – | 89.00 (1 of 2) | 91.9 | 88.6 | -3.90 |"
    assert lsp_row in text
    assert "| scratch20 | scratch | 1, 2 | 20 | 86.50 ± 0.71 | 80.00 ± 0.00 | – | 87.50 ± 0.71 | – | – | – |" in text
    assert "lsp_tail" not in text  # a warm start adds to another run's epochs: not a row of the paper's table
    # paired: s1 +2.00, s2 +1.00 -> mean +1.50 ± 0.71; t(1) 12.706 * 0.707 / sqrt(2) = 6.35
    assert "| lsp_med20 | 2 | s1: +2.00 / –; s2: +1.00 / – | +1.50 ± 0.71 | -4.85 to +7.85 | – | – |" in text


def test_cross_device_table_sets_each_device_s_row_side_by_side(tmp_path):
    doc = results_doc()
    results = tmp_path / "benchmarks" / "results"

    def row(model, fmt, threads, p50, p99):
        return {"model": model, "format": fmt, "threads": threads, "status": "ok", "points": 1024, "oa": 0.9,
                "p50_ms": p50, "p99_ms": p99}  # fmt: skip

    reports = {
        "amd-epyc-unknown-avx2-2c": ({"cpu": "AMD EPYC", "cores": 2}, [row("s", "onnx-fused", 2, 2.75, 3.52)]),
        "amd-epyc-zen5-avx512vnni-2c": (
            {"cpu": "AMD EPYC", "cores": 2, "microarch": "zen5", "family": 26, "model": 2, "stepping": 1,
             "simd": "avx512vnni", "knn_dispatch": "avx512"},
            [row("s", "onnx-fused", 2, 1.95, 2.5), row("s", "torch", 1, 5.12, 6.0),
             {**row("s", "onnx", 2, 0, 0), "status": "failed"}],
        ),
    }  # fmt: skip
    for name, (device, rows) in reports.items():
        (results / name).mkdir(parents=True)
        (results / name / "bench.json").write_text(json.dumps({"device": device, "rows": rows, "created": name}))
    lines = doc.section_cross_device(tmp_path)
    assert "| s | onnx-fused | 1024 | 2 | 2.75 / 3.52 | 1.95 / 2.50 |" in lines
    assert "| s | torch | 1024 | 1 | – | 5.12 / 6.00 |" in lines  # no such row on the AVX2 machine
    assert not any("| s | onnx |" in line for line in lines)  # a failed row is not a latency
    assert "AMD EPYC (zen5, family 26 model 2 stepping 1, avx512vnni, fused kNN avx512), 2 cores" in "\n".join(
        doc.section_bench(tmp_path)
    )
    (results / "amd-epyc-unknown-avx2-2c" / "bench.json").unlink()
    assert doc.section_cross_device(tmp_path) == []  # one device: nothing to set side by side


def test_shipped_models_headline_gives_the_served_students_mce_when_it_was_measured(tmp_path):
    doc = results_doc()
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    model = {"checkpoint": "/x/student_new.pt", "oa": 0.9, "macc": 0.85}
    (results / "per_class.json").write_text(json.dumps({"points": 1024, "teacher": model, "student": model}))
    row = {"model": "student_new.pt", "format": "torch", "clouds": 80, "scores": {"mCE": 0.9214}}
    rows = [{**row, "outlier_filter": "sor", "scores": {"mCE": 1.004}}, {**row, "outlier_filter": "none"}]
    rows.append({**row, "model": "student_old.pt", "outlier_filter": "none", "scores": {"mCE": 1.5}})
    (results / "robustness.json").write_text(json.dumps({"rows": rows}))
    [line] = [line for line in doc.headline(tmp_path) if line.startswith("- **Shipped models**")]
    assert "(80 seeded clouds, no outlier filter) its mCE is 0.921 against the published DGCNN's 1.000" in line
    (results / "robustness.json").write_text(json.dumps({"rows": rows[2:]}))  # the served one never measured
    [line] = [line for line in doc.headline(tmp_path) if line.startswith("- **Shipped models**")]
    assert "mCE" not in line and line.endswith("its-teacher)).")


def test_student_latency_headline_is_the_newest_device_and_names_the_others_fused_latency(tmp_path):
    from pointkd.demo import SHIPPED

    doc = results_doc()
    shipped = Path(SHIPPED["student"]).stem

    def row(fmt: str, p50: float) -> dict:
        common = {"model": shipped, "threads": 2, "status": "ok", "oa": 0.9, "points": 1024}
        return common | {"format": fmt, "p50_ms": p50, "p99_ms": p50 + 1, "size_mb": 0.1 if "int8" in fmt else 0.4}

    for device, created, scale in (("old_dev", "2026-01-01", 1.0), ("new_dev", "2026-02-01", 2.0)):
        path = tmp_path / "benchmarks" / "results" / device / "bench.json"
        path.parent.mkdir(parents=True)
        rows = [row("onnx", 4 * scale), row("onnx-int8", 4 * scale), row("onnx-fused", 1.5 * scale)]
        path.write_text(json.dumps({"created": created, "rows": rows}))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    [line] = [line for line in doc.headline(tmp_path) if line.startswith("- **Student latency**")]
    assert "on `new_dev`): p50 8.00 ms, p99 9.00 ms" in line and "onnx-fused: p50 3.00 ms, p99 4.00" in line
    assert "; onnx-fused on `old_dev` p50 1.50 ms, p99 2.50 ([table](docs/results.md#pointkd-bench-new_dev))" in line


def test_every_heading_of_the_results_document_has_its_own_anchor():
    from pointkd.results import slug

    doc = Path(__file__).parents[1] / "docs" / "results.md"
    anchors = [slug(line.lstrip("#")) for line in doc.read_text().splitlines() if line.startswith("#")]
    assert anchors and len(anchors) == len(set(anchors)), sorted(a for a in anchors if anchors.count(a) > 1)
