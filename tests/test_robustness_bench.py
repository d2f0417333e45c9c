"""benchmarks/robustness.py's merge of rows by (model, format, filter) and its plot; benchmarks/knn_ties.py's
tie and neighbour counts; pointkd.plotting.line_panels."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from scriptload import ROOT, load_script

from pointkd.bench.robustness import scores
from pointkd.data.corruptions import CORRUPTION_NAMES
from pointkd.plotting import line_panels

rob = load_script(ROOT / "benchmarks" / "robustness.py", "robustness_bench")
ties = load_script(ROOT / "benchmarks" / "knn_ties.py", "knn_ties_bench")


def _row(model: str, fmt: str | None, filt: str, oa: float) -> dict:
    levels = {c: [oa] * 5 for c in CORRUPTION_NAMES}
    row = {"model": model, "outlier_filter": filt, "clean_oa": 0.9, "oa": levels, "points": {}, "clouds": 2}
    row["scores"] = scores(0.9, levels)
    return row if fmt is None else {**row, "format": fmt}


def test_render_keys_rows_by_format_and_scores_artifacts_against_the_teacher(tmp_path):
    base = {"clouds": 2, "seed": 0, "indices": [3, 5]}
    teacher = [_row(rob.TEACHER, None, "none", 0.8), _row(rob.TEACHER, None, "sor", 0.85)]
    (tmp_path / "r.json").write_text(json.dumps({**base, "rows": [*teacher, _row("s_g02.pt", None, "none", 0.7)]}))
    extra = [_row("s_g02.pt", "onnx-int8", "none", 0.6), _row("s_g02.pt", "onnx-int8", "sor", 0.75)]
    (tmp_path / "x.json").write_text(json.dumps({**base, "rows": extra}))
    rob.render(argparse.Namespace(out=str(tmp_path / "r"), merge=[str(tmp_path / "x.json")]))
    out = json.loads((tmp_path / "r.json").read_text())
    assert [rob.key(r) for r in out["rows"]] == [
        (rob.TEACHER, "torch", "none"),
        (rob.TEACHER, "torch", "sor"),
        ("s_g02.pt", "torch", "none"),
        ("s_g02.pt", "onnx-int8", "none"),
        ("s_g02.pt", "onnx-int8", "sor"),
    ]
    int8_sor = out["rows"][-1]
    assert int8_sor["scores_vs"]["teacher"]["mCE"] == pytest.approx((1 - 0.75) / (1 - 0.85))  # teacher with sor
    assert "scores_vs" not in out["rows"][0]
    assert "| s_g02.pt | onnx-int8 | sor |" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r_levels.png").stat().st_size > 1000
    (tmp_path / "y.json").write_text(json.dumps({**base, "indices": [3, 6], "rows": extra}))
    with pytest.raises(SystemExit, match="another sample"):
        rob.render(argparse.Namespace(out=str(tmp_path / "r"), merge=[str(tmp_path / "y.json")]))


def test_tied_rows_and_distinct_neighbours_of_a_repeated_cloud():
    line = np.array([[0, 0, 0], [1, 0, 0], [3, 0, 0]], dtype=np.float32)
    twice = line[np.arange(6) % 3]  # every point twice, as prepare_cloud repeats a 3-point cloud to 6
    # row 0's sorted squared distances: 0, 0, 1, 1, 9, 9
    assert ties.tied_rows(twice, 3) == 1.0  # the 3rd and 4th nearest are the two copies of one point
    assert ties.tied_rows(twice, 2) == 0.0  # k = 2 stops between distance 0 and 1 on every row
    assert ties.tied_rows(line, 1) == 0.0
    assert ties.distinct_neighbours(twice, 2) == 1.0  # the point and its own copy
    assert ties.distinct_neighbours(twice, 4) == 2.0
    assert ties.distinct_neighbours(line, 2) == 2.0
    moved = ties.jitter_copies(twice, 3, seed=0)
    assert np.array_equal(moved[:3], twice[:3]) and not np.array_equal(moved[3:], twice[3:])
    assert np.abs(moved - twice).max() < 1e-5 and ties.tied_rows(moved, 3) == 0.0


def test_line_panels_draws_one_panel_per_name_and_one_legend():
    panels = {c: {"a": [1, 2, 3], "b": [3, 2, 1]} for c in ("p", "q", "r")}
    fig = line_panels(panels, range(3), "level", "OA", "t", references={"p": 2.0}, reference_label="ref", columns=2)
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == ["p", "q", "r"]
    assert len(visible[0].lines) == 3 and len(visible[1].lines) == 2  # the reference only where given
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "ref"]


def test_render_robustness_answers_from_the_rows(tmp_path):
    from pointkd.bench import robustness_doc as doc

    rows = [
        _row(doc.COMPARED_FULL, None, "none", 0.70),
        _row(doc.COMPARED, None, "none", 0.68),
        _row(doc.COMPARED, "onnx", "none", 0.68),
        _row(doc.COMPARED, "onnx-int8", "none", 0.60),
    ]
    rows[3]["clean_oa"] = 0.9  # int8: nothing lost clean, 8 points lost under corruption
    (tmp_path / doc.RESULTS).mkdir(parents=True)
    (tmp_path / doc.ROBUSTNESS).write_text(json.dumps({"clouds": 2, "seed": 0, "indices": [1, 2], "rows": rows}))
    tie_row = {
        "corruption": "dropout_global",
        "level": 0,
        "points": 768,
        "k_native": 15,
        "copied_rows": 0.25,
        "tied_rows": 0.25,
        "distinct_in_k": 15.0,
        "oa": {"repeat": 0.9, "repeat + 1e-6 jitter": 0.9, "native (k scaled)": 0.8875},
    }
    ties_result = {"model": doc.COMPARED, "clouds": 2, "k": 20, "num_points": 1024, "rows": [tie_row]}
    (tmp_path / doc.TIES).write_text(json.dumps(ties_result))

    def load(root, rel):
        path = root / rel
        return json.loads(path.read_text()) if path.is_file() else None

    text = "\n".join(doc.render_robustness(tmp_path, load))
    assert "| graph reuse (2 kNN graphs of 4) | none | +0.0 | -2.0 |" in text
    assert "| int8 (onnx-int8 against onnx fp32) | none | +0.0 | -8.0 |" in text
    assert "int8 (onnx-int8 against onnx fp32) (none): +0.0 clean, -8.0 mOA: a loss under corruption larger" in text
    assert "ONNX fp32 export (none): the same OA as its base at every corruption and level" in text
    assert "Up to 25.0 % of the rows tie" in text and "moves OA by at most 0.0 points" in text
    assert doc.render_robustness(tmp_path / "elsewhere", load) == []
