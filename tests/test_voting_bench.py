"""benchmarks/voting.py: the single pass and the voting figure from the same passes, and its resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scriptload import ROOT, load_script

from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.cli.eval import eval_k
from pointkd.data import load_modelnet40
from pointkd.train import evaluate
from pointkd.train.evaluate import predict_votes, predict_voting

voting = load_script(ROOT / "benchmarks" / "voting.py", "voting_bench")


def _reference(ckpt_path, votes: int, points: int = 64) -> tuple[float, float]:
    ckpt = load_checkpoint(ckpt_path)
    data = load_modelnet40("synthetic", num_points=points)
    model = model_from_checkpoint(ckpt)
    model.set_k(eval_k("auto", ckpt, points))
    one = evaluate(model, data.test_x, data.test_y, points, data.num_classes)
    many = evaluate(model, data.test_x, data.test_y, points, data.num_classes, votes=votes)
    return one.oa, many.oa


def test_predict_votes_holds_the_single_pass_and_averages_to_predict_voting(tiny_checkpoint):
    model = model_from_checkpoint(tiny_checkpoint)
    clouds = load_modelnet40("synthetic", num_points=64).test_x[:10]
    probs = predict_votes(model, clouds, 64, votes=4, batch_size=3)
    assert probs.shape == (4, 10, model.config.num_classes)
    assert probs.sum(-1).sub(1).abs().max() < 1e-5
    assert probs[0].allclose(predict_voting(model, clouds, 64, votes=1), atol=1e-6)
    assert probs.mean(0).allclose(predict_voting(model, clouds, 64, votes=4), atol=1e-6)
    assert not probs[0].allclose(probs[1])  # the copies are scaled, not the cloud again


def test_voting_script_matches_pointkd_eval_and_resumes(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "voting"
    args = ["--data", "synthetic", "--points", "64", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    assert voting.main([*args, "--votes", "3"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert (result["votes"], result["points"]) == (3, 64)
    (row,) = result["rows"]
    oa1, oa3 = _reference(tiny_checkpoint, 3)
    assert row["single"]["oa"] == pytest.approx(oa1) and row["voting"]["oa"] == pytest.approx(oa3)
    assert "3 votes" in out.with_suffix(".md").read_text()
    capsys.readouterr()
    assert voting.main([*args, "--votes", "3"]) == 0  # the same weights again: skipped
    assert "already measured" in capsys.readouterr().out
    assert voting.main([*args, "--votes", "5"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["votes"] == 5  # other settings: measured anew


def test_voting_script_rejects_bad_input(tiny_checkpoint, tmp_path):
    with pytest.raises(SystemExit):
        voting.main(["--votes", "1", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "v")])
    with pytest.raises(SystemExit):
        voting.main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "v")])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        voting.main(["--data", "synthetic", "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "v")])
    tiny = load_modelnet40("synthetic", num_points=64)
    other = tmp_path / "other.npz"  # the synthetic clouds under other class names
    np.savez(other, train_x=tiny.train_x.numpy(), train_y=tiny.train_y.numpy(), test_x=tiny.test_x.numpy(),
             test_y=tiny.test_y.numpy(), classes=np.array([f"c{i}" for i in range(len(tiny.classes))]))  # fmt: skip
    with pytest.raises(SystemExit):
        voting.main(["--data", str(other), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "v")])
    assert not (tmp_path / "v.json").exists()  # nothing measured, nothing written
