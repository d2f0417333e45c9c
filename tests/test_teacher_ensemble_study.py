"""benchmarks/studies/teacher_ensemble/teacher_ensemble.py: members scored as `pointkd eval` scores them, the
ensemble as the mean of their probabilities, the agreement shares, and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scriptload import ROOT, load_script

from pointkd.checkpoint import load_checkpoint, save_checkpoint
from pointkd.cli.eval import eval_model
from pointkd.data import load_modelnet40
from pointkd.train import evaluate
from pointkd.train.evaluate import predict

study = load_script(ROOT / "benchmarks" / "studies" / "teacher_ensemble" / "teacher_ensemble.py", "teacher_ensemble")
POINTS = 64


@pytest.fixture(scope="module")
def perturbed(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with noise on every learnt weight (not BatchNorm's statistics): a second member."""
    ckpt = load_checkpoint(tiny_checkpoint)
    gen = torch.Generator().manual_seed(5)
    for name, v in ckpt["state_dict"].items():
        if v.is_floating_point() and "running" not in name:
            v.add_(0.3 * v.abs().mean() * torch.randn(v.shape, generator=gen))
    return save_checkpoint(ckpt, tmp_path_factory.mktemp("perturbed") / "other.pt")


def _probs(path, data) -> torch.Tensor:
    ckpt = load_checkpoint(path)
    return predict(eval_model(ckpt, POINTS), data.test_x, POINTS).softmax(-1)


def test_members_and_ensemble_match_a_direct_computation(tiny_checkpoint, perturbed, tmp_path):
    out = tmp_path / "ens"
    args = ["--data", "synthetic", "--points", str(POINTS), "--checkpoint", str(tiny_checkpoint)]
    assert study.main([*args, "--checkpoint", str(perturbed), "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    data = load_modelnet40("synthetic", num_points=POINTS)
    model = eval_model(load_checkpoint(tiny_checkpoint), POINTS)
    first = result["members"][0]
    assert first["oa"] == pytest.approx(evaluate(model, data.test_x, data.test_y, POINTS, data.num_classes).oa)
    mean = (_probs(tiny_checkpoint, data) + _probs(perturbed, data)) / 2
    true_p = mean.gather(1, data.test_y[:, None]).squeeze(1)
    assert result["ensemble"]["p_true"] == pytest.approx(float(true_p.mean()), rel=1e-5)
    assert result["ensemble"]["nll"] == pytest.approx(float(-true_p.log().mean()), rel=1e-5)
    preds = [_probs(p, data).argmax(-1) for p in (tiny_checkpoint, perturbed)]
    assert result["agreement"]["all_agree"] == pytest.approx(float((preds[0] == preds[1]).float().mean()))
    assert result["agreement"]["all_agree"] < 1  # two members that differ: the ensemble is no copy of one
    assert result["agreement"]["any_right"] >= max(m["oa"] for m in result["members"]) - 1e-9
    assert "ensemble of 2" in out.with_suffix(".md").read_text()


def test_an_ensemble_of_one_model_twice_is_that_model(tiny_checkpoint, tmp_path):
    out = tmp_path / "twice"
    args = ["--data", "synthetic", "--points", str(POINTS), "--out", str(out)]
    assert study.main([*args, "--checkpoint", str(tiny_checkpoint), "--checkpoint", str(tiny_checkpoint)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    member, ens = result["members"][0], result["ensemble"]
    assert all(math.isclose(member[key], ens[key], rel_tol=1e-6) for key in ("oa", "macc", "nll", "p_true"))
    assert result["agreement"]["all_agree"] == 1.0


def test_bad_input_is_a_usage_error(tiny_checkpoint, tmp_path):
    out = ["--out", str(tmp_path / "e"), "--data", "synthetic"]
    with pytest.raises(SystemExit):
        study.main([*out, "--checkpoint", str(tiny_checkpoint)])  # one member is no ensemble
    with pytest.raises(SystemExit):
        study.main([*out, "--checkpoint", str(tiny_checkpoint), "--checkpoint", str(tmp_path / "missing.pt")])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        study.main([*out, "--checkpoint", str(tiny_checkpoint), "--checkpoint", str(tmp_path / "junk.pt")])
    assert not (tmp_path / "e.json").exists()
