"""The pointkd command line, driven as a user would: help, errors, and a tiny train -> eval -> slim run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pointkd import process
from pointkd.cli import COMMANDS, build_parser, main
from pointkd.data.synthetic import make_synthetic


def _write_npz(path, data):
    np.savez(
        path,
        train_x=data.train_x.numpy(),
        train_y=data.train_y.numpy(),
        test_x=data.test_x.numpy(),
        test_y=data.test_y.numpy(),
        classes=np.array(data.classes),
        train_names=np.array(data.train_names),
        test_names=np.array(data.test_names),
    )


@pytest.mark.parametrize("command", ["", "data info", *sorted(set(COMMANDS) - {"data"})])
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command.split(), "--help"])
    assert e.value.code == 0
    assert "usage: pointkd" in capsys.readouterr().out


def test_data_info_on_a_packed_npz(tmp_path, capsys, tiny_data):
    path = tmp_path / "mini.npz"
    _write_npz(path, tiny_data)
    assert main(["data", "info", "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "8 classes" in out and "all checks passed" in out and "not the known shared copy" in out
    assert main(["data", "info", "--data", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["train"]["cube"] == 6 and report["ok"]


def test_data_info_flags_bad_data(tmp_path, capsys, tiny_data):
    shifted = make_synthetic(num_points=32, seed=1, train_per_class=2, test_per_class=1)
    shifted.train_x += 0.5  # no longer centred
    _write_npz(tmp_path / "shifted.npz", shifted)
    assert main(["data", "info", "--data", str(tmp_path / "shifted.npz")]) == 1
    assert "[FAIL] train: centred" in capsys.readouterr().out
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["data", "info", "--data", str(tmp_path / "corrupt.npz")]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
    assert main(["data", "info", "--data", str(tmp_path / "nowhere.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    np.savez(tmp_path / "partial.npz", train_x=np.zeros((1, 4, 3), np.float32))
    assert main(["data", "info", "--data", str(tmp_path / "partial.npz")]) == 2
    assert "missing arrays" in capsys.readouterr().err


def test_train_eval_slim_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--config", "quickstart", "--data", "synthetic", "--out", str(run), "--epochs", "1"]
    args += ["--set", "data.num_points=64", "--set", "train.batch_size=16", "--set", "model.overrides.k=6"]
    args += ["--set", "train.max_batches_per_epoch=2"]
    assert main([*args, "--no-progress"]) == 0
    assert "best test OA" in capsys.readouterr().out
    assert main([*args, "--no-progress"]) == 2  # the run exists: refuse without --resume
    assert "--resume" in capsys.readouterr().err
    ev = ["eval", str(run / "best.pt"), "--data", "synthetic", "--out", str(tmp_path / "ev"), "--no-progress"]
    assert main(ev) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert 0 <= metrics["oa"] <= 1 and metrics["num_points"] == 64
    assert (tmp_path / "ev" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "| **all** |" in (tmp_path / "ev" / "per_class.md").read_text()
    rob = ["eval", str(run / "best.pt"), "--data", "synthetic", "--corruptions", "--corruption-samples", "3"]
    assert main([*rob, "--outlier-filter", "sor", "--out", str(tmp_path / "rob"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert result["clouds"] == 3 and result["num_points"] == 64 and result["outlier_filter"] == "sor"
    assert len(result["oa"]["add_local"]) == 5 and result["scores"]["mCE"] >= 0
    assert "mCE" in capsys.readouterr().out and "| add_global |" in (tmp_path / "rob" / "robustness.md").read_text()
    assert main(["eval", str(tmp_path / "rob")]) == 2  # a folder is an artifact: --corruptions only
    assert main(["slim", str(run / "best.pt"), str(tmp_path / "slim.pt")]) == 0
    assert (tmp_path / "slim.pt").stat().st_size < (run / "best.pt").stat().st_size


def test_user_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "shipped configs are" in capsys.readouterr().err
    assert main(["train", "--model", "pointnet", "--data", "synthetic", "--out", str(tmp_path / "x")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_long_commands_reexec_under_jemalloc(monkeypatch):
    if process.find_jemalloc() is None:
        pytest.skip("libjemalloc2 is not installed")
    calls = []
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("POINTKD_JEMALLOC_ACTIVE", raising=False)
    monkeypatch.delenv("POINTKD_JEMALLOC", raising=False)
    monkeypatch.setattr(sys, "argv", ["pointkd", "train", "--config", "quickstart"])
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "pointkd", "train", "--config", "quickstart"])

    def fake_execve(path, args, env):
        calls.append((args, env))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", fake_execve)
    with pytest.raises(SystemExit):
        main()
    args, env = calls[0]
    assert args[1:] == ["-m", "pointkd", "train", "--config", "quickstart"]
    assert "jemalloc" in env["LD_PRELOAD"] and env["MALLOC_CONF"] == process.MALLOC_CONF


def test_jemalloc_env_really_loads_jemalloc():
    env = process.jemalloc_env()
    if env is None:
        pytest.skip("libjemalloc2 is not installed")
    code = "print('jemalloc' in open('/proc/self/maps').read())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_parser_lists_all_subcommands():
    text = build_parser().format_help()
    for name in ("data", "train", "eval", "distill", "compile", "serve", "bench", "select", "demo"):
        assert name in text


def test_distill_flags_reach_the_lsp_term():
    from pointkd.cli.distill import distill_overrides
    from pointkd.config import load_config
    from pointkd.distill.presets import preset_terms

    args = build_parser().parse_args(["distill", "--teacher", "t.pt", "--sigma-rule", "median", "--lambda", "50"])
    cfg = load_config("distill_cpu", distill_overrides(args))
    lsp = next(spec for spec in preset_terms(cfg.distill) if spec["loss"] == "lsp")
    assert lsp["sigma_rule"] == "median" and lsp["weight"] == 50 and cfg.distill.teacher == "t.pt"
    args = build_parser().parse_args(["distill", "--teacher", "t.pt", "--sigma", "2.5"])
    lsp = next(
        s for s in preset_terms(load_config("distill_cpu", distill_overrides(args)).distill) if s["loss"] == "lsp"
    )
    assert lsp["sigma"] == 2.5 and lsp["sigma_rule"] == "fixed"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--sigma-rule", "mean"])


def test_the_parser_takes_its_choices_and_defaults_from_their_homes():
    from pointkd.campaign.inflight import MAX_MB
    from pointkd.cli.common import OUTLIER_FILTERS
    from pointkd.data.outliers import OUTLIER_FILTERS as NAMES
    from serving.settings import ServeSettings

    assert tuple(NAMES) == OUTLIER_FILTERS  # the CLI's copy of the names (building the parser imports no numpy)
    parser = build_parser()
    assert parser.parse_args(["campaign", "park", "plan.yaml"]).max_mb == MAX_MB
    serve = vars(parser.parse_args(["serve", "artifact"]))
    defaults = ServeSettings()
    for key in ("threads", "max_batch", "max_delay_ms", "max_points", "parse_workers", "parse_timeout_s"):
        assert serve[key] == getattr(defaults, key), key
    assert serve["max_body_mb"] * (1 << 20) == defaults.max_body_bytes


def test_serve_takes_the_mmap_threshold_default_from_edge_limits_and_refuses_one_glibc_cannot_take(capsys):
    from pointkd.cli import main
    from serving.settings import EdgeLimits

    serve = vars(build_parser().parse_args(["serve", "artifact"]))
    assert serve["mmap_threshold_kib"] * 1024 == EdgeLimits().mmap_threshold_bytes
    with pytest.raises(SystemExit) as err:
        main(["serve", "benchmarks/checkpoints", "--mmap-threshold-kib", "40000"])
    assert err.value.code == 2 and "--mmap-threshold-kib must be in 0..32768" in capsys.readouterr().err
