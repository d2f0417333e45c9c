"""Re-graphing a trained checkpoint (``pointkd slim --knn-layers``): same weights, the chosen layers build kNN
graphs, the others reuse the previous one; the stale test metrics go and the change is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pointkd.checkpoint import load_checkpoint, model_from_checkpoint, regraph_checkpoint, state_sha256
from pointkd.cli import main


@pytest.fixture
def trained(tiny_checkpoint):
    return tiny_checkpoint  # 3 EdgeConvs, trained fully dynamic


def test_reused_layers_aggregate_over_the_previous_graph(trained, tiny_data):
    ckpt = load_checkpoint(trained)
    assert "test_oa" in ckpt["metrics"]
    regraphed = regraph_checkpoint(ckpt, [2])  # layer 0 always builds one: (0, 2)
    assert regraphed["model_config"]["knn_layers"] == [0, 2]
    assert regraphed["model_config"]["description"].endswith(" [kNN graphs at layers 0, 2]")
    again = regraph_checkpoint(regraphed, [1])["model_config"]["description"]
    assert again.count("[kNN graphs") == 1 and again.endswith(" [kNN graphs at layers 0, 1]")  # replaced, not added
    assert "test_oa" not in regraphed["metrics"] and "train_loss" in regraphed["metrics"]
    assert regraphed["derived"]["from_knn_layers"] is None and regraphed["derived"]["knn_layers"] == [0, 2]
    assert regraphed["derived"]["from_state_sha256"] == state_sha256(ckpt["state_dict"])
    x = tiny_data.test_x[:4, :64]
    with torch.inference_mode():
        full = model_from_checkpoint(ckpt).forward_features(x)
        reused = model_from_checkpoint(regraphed).forward_features(x)
    assert torch.equal(reused.graphs[0], full.graphs[0]) and torch.equal(reused.graphs[1], reused.graphs[0])
    assert not torch.equal(reused.graphs[2], reused.graphs[1])  # layer 2 builds its own graph again
    assert torch.equal(reused.features[0], full.features[0])  # the layers before the change are untouched
    back = regraph_checkpoint(regraphed, None)  # and back to every layer: the original model, exactly
    assert back["model_config"]["knn_layers"] is None
    with torch.inference_mode():
        assert torch.equal(model_from_checkpoint(back)(x), model_from_checkpoint(ckpt)(x))


def test_state_digest_tells_weights_apart(trained):
    state = load_checkpoint(trained)["state_dict"]
    assert state_sha256(state) == state_sha256({k: v.clone() for k, v in state.items()})
    name = next(k for k, v in state.items() if v.is_floating_point())
    changed = {**state, name: state[name] + 1}
    assert state_sha256(changed) != state_sha256(state)


def test_slim_knn_layers_on_the_command_line(trained, tmp_path, capsys):
    out = tmp_path / "fast.pt"
    assert main(["slim", str(trained), str(out), "--knn-layers", "0,1"]) == 0
    assert "graphs built at layers [0, 1]" in capsys.readouterr().out
    assert load_checkpoint(out)["model_config"]["knn_layers"] == [0, 1]
    assert main(["slim", str(trained), str(tmp_path / "bad.pt"), "--knn-layers", "0,7"]) == 2
    assert "beyond the 3 EdgeConvs" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()
    with pytest.raises(SystemExit):
        main(["slim", str(trained), str(tmp_path / "bad.pt"), "--knn-layers", "zero"])
    assert "comma-separated layer numbers" in capsys.readouterr().err


def test_slim_eval_records_the_new_models_own_accuracy(trained, tmp_path, capsys):
    from pointkd.cli.eval import eval_k
    from pointkd.data import load_modelnet40
    from pointkd.train import evaluate

    out = tmp_path / "measured.pt"
    assert main(["slim", str(trained), str(out), "--knn-layers", "0", "--eval", "--data", "synthetic"]) == 0
    assert "OA " in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    points = ckpt["num_points"]
    data = load_modelnet40("synthetic", num_points=points)
    model = model_from_checkpoint(ckpt)
    model.set_k(eval_k("auto", ckpt, points))
    reference = evaluate(model, data.test_x, data.test_y, points, data.num_classes)
    assert ckpt["metrics"]["test_oa"] == reference.oa and ckpt["metrics"]["test_macc"] == reference.macc
    assert ckpt["derived"]["evaluated"]["num_points"] == points and ckpt["derived"]["knn_layers"] == [0]
    with pytest.raises(SystemExit):  # nothing to measure: the weights and graphs are the source's
        main(["slim", str(trained), str(tmp_path / "x.pt"), "--eval"])
    assert "give --knn-layers too" in capsys.readouterr().err


def test_the_earlier_served_student_is_the_trained_one_regraphed():
    from pointkd.demo import SHIPPED_DIR

    served = load_checkpoint(SHIPPED_DIR / "student_lsp_tail1024_g02.pt")
    source = load_checkpoint(SHIPPED_DIR / "student_lsp_tail1024.pt")
    assert served["derived"]["from_state_sha256"] == state_sha256(source["state_dict"])
    assert state_sha256(served["state_dict"]) == state_sha256(source["state_dict"])  # the same weights
    assert served["model_config"]["knn_layers"] == [0, 2] and source["model_config"]["knn_layers"] is None
    assert served["metrics"]["test_oa"] > 0.88 and served["derived"]["evaluated"]["num_points"] == 1024


def test_the_served_student_is_trained_in_its_own_two_graph_configuration():
    from pointkd.demo import SHIPPED, SHIPPED_DIR

    served = load_checkpoint(SHIPPED_DIR / SHIPPED["student"])
    parent = load_checkpoint(SHIPPED_DIR / "campaign2" / "lsp_med80_tail1024-s1.pt")  # its train.init
    assert served["model_name"] == "dgcnn_student_fast2" and served["model_config"]["knn_layers"] == [0, 2]
    assert Path(served["config"]["train"]["init"]).name == "lsp_med80_tail1024-s1.pt"
    assert {k: v.shape for k, v in served["state_dict"].items()} == {
        k: v.shape for k, v in parent["state_dict"].items()
    }
    assert state_sha256(served["state_dict"]) != state_sha256(parent["state_dict"])  # fine-tuned, not regraphed
    data = served["config"]["data"]  # robustness_outliers' outliers_quarter-s1: outliers on a quarter of each batch
    assert (data["outliers"], data["corrupt_fraction"]) == (50, 0.25)
    robust = load_checkpoint(SHIPPED_DIR / "robustness" / "outliers_quarter-s1.pt")
    assert state_sha256(served["state_dict"]) == state_sha256(robust["state_dict"])
