from __future__ import annotations

import pytest

from pointkd.config import ConfigError, load_config, shipped_configs


def test_shipped_configs_load_and_hold_the_recipes():
    assert {"teacher_paper", "teacher_cpu", "student_cpu", "quickstart"} <= set(shipped_configs())
    paper = load_config("teacher_paper")
    assert paper.model.name == "dgcnn_teacher" and paper.train.epochs == 250 and paper.data.num_points == 1024
    t = paper.train
    assert (t.batch_size, t.lr, t.momentum, t.weight_decay, t.lr_min, t.label_smoothing) == (
        32,
        0.1,
        0.9,
        1e-4,
        1e-3,
        0.2,
    )
    for name in shipped_configs():
        load_config(name)


def test_overrides_are_typed_and_nested():
    cfg = load_config("quickstart", ["train.epochs=5", "data.num_points=128", "model.overrides.k=4", "train.lr=0.05"])
    assert cfg.train.epochs == 5 and cfg.data.num_points == 128 and cfg.model.overrides == {"k": 4}
    assert cfg.train.lr == 0.05


def test_yaml_file_and_errors(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text("model: {name: dgcnn_student}\ntrain: {epochs: 3}\n")
    assert load_config(str(good)).train.epochs == 3
    bad_key = tmp_path / "typo.yaml"
    bad_key.write_text("train: {epoch: 3}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(str(bad_key))
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(str(broken))
    with pytest.raises(ConfigError, match="no config"):
        load_config("teacher_gpu_xl")
    with pytest.raises(ConfigError, match="batch_size"):
        load_config("quickstart", ["train.batch_size=1"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config("quickstart", ["epochs"])
