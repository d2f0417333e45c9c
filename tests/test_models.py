from __future__ import annotations

import pytest
import torch

from pointkd.models import DGCNNConfig, create_model, list_models, model_config


def test_teacher_matches_lsp_table3_size():
    model = create_model("dgcnn_teacher")
    assert abs(model.num_parameters - 1.81e6) / 1.81e6 < 0.03
    assert model.config.widths == (64, 64, 128, 256) and model.config.k == 20 and model.config.emb_dim == 1024
    assert model.config.mlp == (512, 256)


def test_student_is_about_0_1m():
    model = create_model("dgcnn_student")
    assert 0.09e6 < model.num_parameters < 0.11e6
    assert model.config.widths == (32, 32, 64, 128) and model.config.k == 10 and model.config.mlp == (256,)


def test_ladder_grows_from_the_student():
    base = create_model("dgcnn_student").num_parameters
    for name in ("dgcnn_student_wide", "dgcnn_student_deep", "dgcnn_student_mlp"):
        assert create_model(name).num_parameters > base, name
    assert set(list_models()) >= {"dgcnn_teacher", "dgcnn_student", "dgcnn_student_wide"}


def test_overrides_and_errors():
    m = create_model("dgcnn_student", k=16, widths=(32, 64), num_classes=10)
    assert m.config.k == 16 and len(m.convs) == 2 and m.head[-1].out_features == 10
    with pytest.raises(KeyError, match="unknown model"):
        create_model("pointnet")
    with pytest.raises(TypeError, match="unknown override"):
        create_model("dgcnn_student", width=(1, 2))
    with pytest.raises(ValueError, match="pooling"):
        model_config("dgcnn_student", pooling="sum")
    with pytest.raises(ValueError, match="knn_layers"):
        DGCNNConfig(widths=(8, 8), knn_layers=(0, 5))


@pytest.mark.parametrize("name", ["dgcnn_teacher", "dgcnn_student"])
def test_forward_features_shapes(name):
    model = create_model(name).eval()
    x = torch.randn(2, 64, 3)
    out = model.forward_features(x)
    assert out.logits.shape == (2, 40)
    assert [f.shape for f in out.features] == [(2, 64, w) for w in model.config.widths]
    assert all(g.shape == (2, 64, model.config.k) for g in out.graphs)
    torch.testing.assert_close(model(x), out.logits)


def test_graphs_are_dynamic_and_can_be_reused():
    x = torch.randn(1, 64, 3)
    dynamic = create_model("dgcnn_student").eval().forward_features(x)
    assert not torch.equal(dynamic.graphs[0], dynamic.graphs[1])  # layer 2 builds its graph in feature space
    static = create_model("dgcnn_student", knn_layers=(0,)).eval().forward_features(x)
    assert all(torch.equal(g, static.graphs[0]) for g in static.graphs)


def test_fast_and_naive_models_agree():
    torch.manual_seed(1)
    fast = create_model("dgcnn_student", edgeconv_impl="fast")
    naive = create_model("dgcnn_student", edgeconv_impl="naive")
    naive.load_state_dict(fast.state_dict())
    x = torch.randn(4, 96, 3)
    torch.manual_seed(2)
    y_fast = fast(x)  # train mode: batch statistics, dropout
    torch.manual_seed(2)
    y_naive = naive(x)
    torch.testing.assert_close(y_fast, y_naive, rtol=1e-4, atol=1e-4)
    fast.eval(), naive.eval()
    torch.testing.assert_close(fast(x), naive(x), rtol=1e-4, atol=1e-4)


def test_permutation_invariance():
    model = create_model("dgcnn_student").eval()
    x = torch.randn(2, 80, 3)
    perm = torch.randperm(80)
    torch.testing.assert_close(model(x), model(x[:, perm]), rtol=1e-4, atol=1e-5)


def test_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match="expected points"):
        create_model("dgcnn_student")(torch.randn(2, 64, 6))


def test_scaled_k_and_set_k():
    from pointkd.cli.eval import eval_k
    from pointkd.models.dgcnn import scaled_k

    assert scaled_k(20, 512, 1024) == 40 and scaled_k(10, 512, 1024) == 20 and scaled_k(20, 1024, 16) == 1
    model = create_model("dgcnn_student", widths=(8, 8), mlp=(8,), k=4).eval()
    model.set_k(6)
    assert model.forward_features(torch.randn(1, 32, 3)).graphs[0].shape == (1, 32, 6)
    with pytest.raises(ValueError):
        model.set_k(0)
    ckpt = {"model_config": {"k": 20}, "config": {"data": {"num_points": 512}}, "num_points": 512}
    assert eval_k("auto", ckpt, 1024) == 40 and eval_k("auto", ckpt, 512) == 20 and eval_k("30", ckpt, 1024) == 30
    with pytest.raises(ValueError, match="--k"):
        eval_k("-3", ckpt, 1024)


def test_eval_model_sets_the_scaled_k(tiny_checkpoint):
    from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
    from pointkd.cli.eval import eval_k, eval_model

    ckpt = load_checkpoint(tiny_checkpoint)
    assert eval_model(ckpt, 256).config.k == eval_k("auto", ckpt, 256) != model_from_checkpoint(ckpt).config.k
    assert eval_model(ckpt, 256, "3").config.k == 3
