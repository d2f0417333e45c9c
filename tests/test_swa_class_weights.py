"""train.class_weights (per-class cross-entropy weights) and train.swa_epochs (weight averaging): the weights
against hand-computed references, the weighted loss against F.cross_entropy's definition, the SWA mean against the
runs it averages, and an exact resume in the middle of the averaging."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pointkd.config import ConfigError, load_config
from pointkd.data import TrainAugment
from pointkd.distill import Supervised
from pointkd.train import train
from pointkd.train.class_weights import class_weights
from pointkd.train.trainer import build_model, build_objective


def test_class_weights_against_hand_computed_values():
    labels = torch.tensor([0, 1, 1, 1, 1, 2, 2, 2, 2])  # counts 1, 4, 4
    sqrt = class_weights(labels, 3, "inverse_sqrt")  # n^-1/2 = 1, 1/2, 1/2, scaled by 9 / (1 + 2 + 2)
    torch.testing.assert_close(sqrt, torch.tensor([1.8, 0.9, 0.9]))
    inverse = class_weights(labels, 3, "inverse")  # n^-1 = 1, 1/4, 1/4, scaled by 9 / 3: each class weighs 3
    torch.testing.assert_close(inverse, torch.tensor([3.0, 0.75, 0.75]))
    for w in (sqrt, inverse):
        assert float(w[labels].mean()) == pytest.approx(1.0)  # mean 1 over the training clouds
    assert class_weights(labels, 3, "none") is None


def test_class_weights_refuse_what_they_cannot_weigh():
    with pytest.raises(ValueError, match=r"classes \[1\] have no training cloud"):
        class_weights(torch.tensor([0, 2, 2]), 3, "inverse")
    with pytest.raises(ValueError, match="past 2 classes"):
        class_weights(torch.tensor([0, 1, 2]), 2, "inverse")
    with pytest.raises(ValueError, match="must be one of"):
        class_weights(torch.tensor([0, 1]), 2, "balanced")


def test_config_checks_both_settings():
    with pytest.raises(ConfigError, match=r"train\.class_weights must be one of"):
        load_config("quickstart", ["train.class_weights=balanced"])
    with pytest.raises(ConfigError, match=r"train\.swa_epochs must be in 0\.\.train\.epochs"):
        load_config("quickstart", ["train.epochs=3", "train.swa_epochs=4"])


def test_weighted_cross_entropy_is_the_weighted_mean_of_the_per_cloud_losses():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 2, 2, 2])
    w = torch.tensor([2.0, 0.5, 1.0])
    model = torch.nn.Identity()
    loss = Supervised(0.0, w)(model, logits, labels).loss
    per_cloud = -logits.log_softmax(-1)[torch.arange(6), labels]
    torch.testing.assert_close(loss, (w[labels] * per_cloud).sum() / w[labels].sum())
    unweighted = Supervised(0.1)(model, logits, labels).loss
    torch.testing.assert_close(unweighted, F.cross_entropy(logits, labels, label_smoothing=0.1))
    assert "class_weight" not in Supervised(0.0, w).state_dict()  # derived from the data: no checkpoint state


def test_the_objective_takes_its_weights_from_the_training_labels(tiny_data, tiny_checkpoint):
    labels = tiny_data.train_y.clone()
    labels[::2] = 0  # class 0 now holds over half the clouds
    expected = class_weights(labels, tiny_data.num_classes, "inverse_sqrt")
    assert float(expected[0]) < float(expected[1])
    cfg = load_config("quickstart", ["train.class_weights=inverse_sqrt"])
    model = build_model(cfg, tiny_data.num_classes)
    torch.testing.assert_close(build_objective(cfg, model, tiny_data.classes, labels).class_weight, expected)
    cfg = load_config(
        "distill_cpu", ["train.class_weights=inverse_sqrt", f"distill.teacher={tiny_checkpoint}", "distill.method=kd"]
    )
    student = build_model(cfg, tiny_data.num_classes)
    distill = build_objective(cfg, student, tiny_data.classes, labels)
    torch.testing.assert_close(distill.losses["ce"].class_weight, expected)
    with pytest.raises(ValueError, match="needs the training labels"):
        build_objective(cfg, student, tiny_data.classes)


def _cfg(epochs: int, swa: int = 0):
    return load_config(
        "quickstart",
        [
            f"train.epochs={epochs}",
            f"train.swa_epochs={swa}",
            "train.batch_size=8",
            "train.lr=0.05",
            "train.lr_min=0.05",  # flat: the first epochs of a longer run are a shorter run
            "data.num_points=64",
            "model.overrides={widths: [16, 16, 32], k: 8, mlp: [32]}",
        ],
    )


def _quiet(cfg, out, data, **kw):
    return train(cfg, out, data=data, progress=False, log=lambda s: None, **kw)


def test_swa_serves_the_mean_of_the_last_epochs_weights(tiny_data, tmp_path):
    two, three = _quiet(_cfg(2), tmp_path / "e2", tiny_data), _quiet(_cfg(3), tmp_path / "e3", tiny_data)
    swa = _quiet(_cfg(3, swa=2), tmp_path / "swa", tiny_data)
    for mean, a, b in zip(swa.model.parameters(), two.model.parameters(), three.model.parameters(), strict=True):
        torch.testing.assert_close(mean, (a + b) / 2)
    assert swa.history[-1]["swa_models"] == 2 and "swa_models" not in three.history[-1]
    assert [h["test_oa"] for h in swa.history[:2]] == [h["test_oa"] for h in three.history[:2]]
    bns = [m for m in swa.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    plain = [m for m in three.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    steps = len(tiny_data.train_y) // 8
    for bn, other in zip(bns, plain, strict=True):
        assert int(bn.num_batches_tracked) == steps  # reset, then one pass over the training split
        assert not torch.allclose(bn.running_mean, other.running_mean)
    assert bns[0].momentum == plain[0].momentum  # update_bn restores the momentum it clears


def test_swa_resumes_exactly_in_the_middle_of_the_average(tiny_data, tmp_path, monkeypatch):
    straight = _quiet(_cfg(3, swa=2), tmp_path / "a", tiny_data)
    calls, real = {"n": 0}, TrainAugment.__call__

    def interrupting(self, x, generator=None):
        calls["n"] += 1
        if calls["n"] == 15:  # epoch 3 (6 batches an epoch), third batch: one model averaged so far
            raise KeyboardInterrupt
        return real(self, x, generator)

    monkeypatch.setattr(TrainAugment, "__call__", interrupting)
    with pytest.raises(KeyboardInterrupt):
        _quiet(_cfg(3, swa=2), tmp_path / "b", tiny_data)
    monkeypatch.setattr(TrainAugment, "__call__", real)
    resumed = _quiet(_cfg(3, swa=2), tmp_path / "b", tiny_data, resume=True)
    for p, q in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert resumed.final["test_oa"] == straight.final["test_oa"]
