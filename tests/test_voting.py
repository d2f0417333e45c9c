"""Test-time voting: the scale draws, the average it takes, and the eval flag."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pointkd.cli import main
from pointkd.train.evaluate import VOTE_SCALE, predict, predict_voting, vote_scales


class Spread(nn.Module):
    """Logits that depend on the cloud's extent per axis: a model that scaling changes."""

    def __init__(self) -> None:
        super().__init__()
        self.unit = nn.Parameter(torch.ones(()))  # predict() finds the device from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit * torch.cat([x.amax(1) - x.amin(1), x.abs().mean(1)], dim=-1)


def test_vote_zero_is_the_cloud_itself_and_the_draws_are_seeded_and_in_range():
    s = vote_scales(5, 7, seed=3)
    assert s.shape == (5, 7, 1, 3) and torch.equal(s[0], torch.ones(7, 1, 3))
    assert VOTE_SCALE[0] <= float(s[1:].min()) and float(s[1:].max()) <= VOTE_SCALE[1]
    assert torch.equal(s, vote_scales(5, 7, seed=3)) and not torch.equal(s, vote_scales(5, 7, seed=4))
    assert len({tuple(v.flatten().tolist()) for v in s[1:, 0]}) == 4  # each vote its own scaling


def test_voting_averages_the_probabilities_of_the_scaled_copies():
    clouds = torch.randn(6, 32, 3)
    model = Spread()
    one = predict_voting(model, clouds, 32, votes=1)
    assert torch.allclose(one, predict(model, clouds, 32).softmax(-1))
    scales = vote_scales(3, 6)
    by_hand = sum(predict(model, clouds * scales[v], 32).softmax(-1) for v in range(3)) / 3
    assert torch.allclose(predict_voting(model, clouds, 32, votes=3, batch_size=4), by_hand, atol=1e-6)
    with pytest.raises(ValueError, match="at least 1"):
        predict_voting(model, clouds, 32, votes=0)


def test_eval_votes_flag_records_the_votes(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "ev"
    args = ["eval", str(tiny_checkpoint), "--data", "synthetic", "--out", str(out), "--no-progress"]
    assert main([*args, "--votes", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["votes"] == 3 and 0 <= metrics["oa"] <= 1
    assert "3 votes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--votes", "0"])
