"""Training: it learns, resumes exactly (also mid-epoch), and its checkpoints are safe to load."""

from __future__ import annotations

import pytest
import torch

from pointkd.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint, slim_checkpoint
from pointkd.config import load_config
from pointkd.data import TrainAugment
from pointkd.data.synthetic import make_synthetic
from pointkd.train import predict, train
from pointkd.train.trainer import cosine_lr


def _cfg(epochs: int = 2):
    return load_config(
        "quickstart",
        [
            f"train.epochs={epochs}",
            "train.batch_size=8",
            "data.num_points=64",
            "model.overrides={widths: [16, 16, 32], k: 8, mlp: [32]}",
        ],
    )


def test_training_learns_and_writes_its_files(tmp_path):
    data = make_synthetic(num_points=64, seed=5, train_per_class=24, test_per_class=8)
    cfg = _cfg(epochs=5)
    cfg.train.batch_size = 16
    result = train(cfg, tmp_path / "run", data=data, progress=False, log=lambda s: None)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"last.pt", "best.pt", "metrics.jsonl", "config.yaml"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    times = [h["elapsed_s"] for h in result.history]  # the sitting's clock (stops excluded): running, none here
    assert times == sorted(times) and 0 < times[-1] <= result.seconds and {h["paused_s"] for h in result.history} == {0}
    assert result.best_oa >= 0.4  # 8 balanced classes: chance is 1/8
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["classes"] == data.classes and ckpt["num_points"] == 64
    assert ckpt["metrics"]["test_oa"] == pytest.approx(result.best_oa)


def test_refuses_to_overwrite_a_run(tiny_data, tmp_path):
    train(_cfg(epochs=1), tmp_path, data=tiny_data, progress=False, log=lambda s: None)
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(epochs=1), tmp_path, data=tiny_data, progress=False, log=lambda s: None)


def test_resume_mid_epoch_is_exact(tiny_data, tmp_path, monkeypatch):
    straight = train(_cfg(), tmp_path / "a", data=tiny_data, progress=False, log=lambda s: None)
    calls = {"n": 0}
    real_call = TrainAugment.__call__

    def interrupting(self, x, generator=None):
        calls["n"] += 1
        if calls["n"] == 9:  # epoch 2 (6 batches per epoch), third batch
            raise KeyboardInterrupt
        return real_call(self, x, generator)

    monkeypatch.setattr(TrainAugment, "__call__", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(), tmp_path / "b", data=tiny_data, progress=False, log=lambda s: None)
    saved = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (saved["epoch"], saved["batch"]) == (1, 2)
    monkeypatch.setattr(TrainAugment, "__call__", real_call)
    resumed = train(_cfg(), tmp_path / "b", data=tiny_data, resume=True, progress=False, log=lambda s: None)
    a = load_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.final["test_oa"] == straight.final["test_oa"]


def test_checkpoint_errors_and_slim_copy(tiny_data, tmp_path):
    train(_cfg(epochs=1), tmp_path, data=tiny_data, progress=False, log=lambda s: None)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    slim = save_checkpoint(slim_checkpoint(ckpt), tmp_path / "slim.pt")
    assert slim.stat().st_size < (tmp_path / "last.pt").stat().st_size
    small = load_checkpoint(slim)
    assert "optimizer" not in small and all(
        v.dtype == torch.float16 for v in small["state_dict"].values() if v.is_floating_point()
    )
    full, half = model_from_checkpoint(ckpt), model_from_checkpoint(small)
    x = tiny_data.test_x
    assert torch.equal(predict(full, x, 64).argmax(-1), predict(half, x, 64).argmax(-1))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a pointkd checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_cosine_schedule_endpoints():
    assert cosine_lr(0, 100, 0.1, 0.001) == pytest.approx(0.1)
    assert cosine_lr(50, 100, 0.1, 0.001) == pytest.approx(0.0505)
    assert cosine_lr(100, 100, 0.1, 0.001) == pytest.approx(0.001)


def test_divergence_stops_the_run_with_a_clear_error(tmp_path, capsys):
    from pointkd.cli import main

    args = ["train", "--config", "quickstart", "--data", "synthetic", "--out", str(tmp_path), "--no-progress"]
    args += ["--set", "data.num_points=64", "--set", "train.batch_size=16", "--set", "train.lr=1.0e+30"]
    args += ["--set", "model.overrides={widths: [8, 16], k: 6, mlp: [16]}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "training diverged at epoch 1, batch 1: the weights became non-finite" in err
    assert not (tmp_path / "last.pt").exists()  # nothing non-finite was saved


def test_a_non_finite_gradient_is_not_applied(tmp_path, monkeypatch):
    from pointkd.config import load_config
    from pointkd.data.synthetic import make_synthetic
    from pointkd.distill import Supervised
    from pointkd.train import TrainingDiverged, train

    calls = {"n": 0}
    real = Supervised.forward

    def poisoned(self, model, points, labels):
        out = real(self, model, points, labels)
        calls["n"] += 1
        if calls["n"] == 2:  # the second step's loss is NaN
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Supervised, "forward", poisoned)
    cfg = load_config("quickstart", ["data.num_points=64", "train.batch_size=16", "train.checkpoint_minutes=0"])
    cfg.model.overrides = {"widths": [8, 16], "k": 6, "mlp": [16]}
    data = make_synthetic(num_points=64, seed=3, train_per_class=6, test_per_class=2)
    with pytest.raises(TrainingDiverged, match=r"batch 2: loss nan.*Nothing of this step was applied"):
        train(cfg, tmp_path, data=data, progress=False, log=lambda *_: None)


def test_init_starts_from_a_checkpoints_weights_with_a_fresh_schedule(tiny_data, tmp_path):
    first = train(_cfg(epochs=1), tmp_path / "a", data=tiny_data, progress=False, log=lambda s: None)
    cfg = _cfg(epochs=1)
    cfg.train.init = str(tmp_path / "a" / "last.pt")
    cfg.train.lr = cfg.train.lr_min = 0.0  # no step moves a weight: the run must end where the checkpoint was
    logs: list[str] = []
    second = train(cfg, tmp_path / "b", data=tiny_data, progress=False, log=logs.append)
    assert f"initialised from {cfg.train.init}" in logs
    for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert [h["epoch"] for h in second.history] == [1]  # a new run, not a resume
    # k holds no weights: the same weights start a run with another k (a warm start at another point count)
    k = cfg.model.overrides.get("k", 6)
    cfg.model.overrides = {**cfg.model.overrides, "k": k - 2}
    logs.clear()
    third = train(cfg, tmp_path / "c", data=tiny_data, progress=False, log=logs.append)
    assert f"initialised from {cfg.train.init} (k {k} -> {k - 2})" in logs
    for p, q in zip(first.model.parameters(), third.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    cfg.model.overrides = {**cfg.model.overrides, "widths": [w * 2 for w in cfg.model.overrides["widths"]]}
    with pytest.raises(ValueError, match=r"holds a different model \(widths\)"):
        train(cfg, tmp_path / "d", data=tiny_data, progress=False, log=lambda s: None)


def test_a_run_resumes_from_its_fp16_resume_state(tiny_data, tmp_path):
    """A compact park (``half_resume_state``) resumes: fp16 weights and momentum are cast back, and the run ends
    close to the uninterrupted one (not bit for bit: it went on from rounded weights)."""
    from pointkd.checkpoint import half_resume_state

    def flat(epochs: int):
        cfg = _cfg(epochs=epochs)
        cfg.train.lr = cfg.train.lr_min = 0.01  # flat: a 1-epoch run is the first epoch of a 2-epoch one
        return cfg

    straight = train(flat(2), tmp_path / "a", data=tiny_data, progress=False, log=lambda s: None)
    train(flat(1), tmp_path / "b", data=tiny_data, progress=False, log=lambda s: None)
    last = tmp_path / "b" / "last.pt"
    save_checkpoint(half_resume_state(load_checkpoint(last)), last)
    assert load_checkpoint(last)["optimizer"]["state"][0]["momentum_buffer"].dtype == torch.float16
    resumed = train(flat(2), tmp_path / "b", data=tiny_data, resume=True, progress=False, log=lambda s: None)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert {p.dtype for p in resumed.model.parameters()} == {torch.float32}
    a, b = list(straight.model.parameters()), list(resumed.model.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(a, b, strict=True))  # it did go on from rounded weights
    # 6 steps on batches of 8 amplify the 2**-11 rounding ~15x (measured 0.7 %); a wrong restore would be far off
    va, vb = torch.nn.utils.parameters_to_vector(a), torch.nn.utils.parameters_to_vector(b)
    assert float((va - vb).norm() / va.norm()) < 0.02
