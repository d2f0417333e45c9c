"""KD / FitNet / AT baselines, the layer map, and distillation objectives end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pointkd.checkpoint import load_checkpoint
from pointkd.cli import main
from pointkd.config import DistillSection
from pointkd.distill import (
    PRESETS,
    ATLoss,
    Distill,
    FitNetLoss,
    attention_map,
    default_layer_map,
    kd_loss,
    validate_layer_map,
)
from pointkd.models import create_model


def test_default_layer_map():
    assert default_layer_map(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert default_layer_map(4, 2) == [(1, 0), (3, 1)]
    assert default_layer_map(5, 3) == [(1, 0), (3, 1), (4, 2)]
    with pytest.raises(ValueError, match="more EdgeConv layers"):
        default_layer_map(2, 4)


def test_validate_layer_map_errors():
    assert validate_layer_map([[3, 1], [0, 0]], 4, 2) == [(3, 1), (0, 0)]
    with pytest.raises(ValueError, match="teacher layer 4"):
        validate_layer_map([[4, 0]], 4, 4)
    with pytest.raises(ValueError, match="student layer 2"):
        validate_layer_map([[0, 2]], 4, 2)
    with pytest.raises(ValueError, match="pairs"):
        validate_layer_map([[0, 1, 2]], 4, 4)
    with pytest.raises(ValueError, match="empty"):
        validate_layer_map([], 4, 4)


def test_kd_loss_matches_its_formula():
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    temp = 3.0
    p_t = F.softmax(t / temp, -1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / temp, -1))).sum(-1).mean() * temp**2
    torch.testing.assert_close(kd_loss(s, t, temp), manual)
    assert float(kd_loss(t, t, temp)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="logit shapes"):
        kd_loss(s, t[:, :5])


def test_fitnet_learns_a_linear_map_and_leaves_the_teacher_alone():
    z_s = torch.randn(2, 30, 4, requires_grad=True)
    w = torch.randn(8, 4)
    z_t = (z_s.detach() @ w.T).requires_grad_()
    fit = FitNetLoss(4, 8)
    with torch.no_grad():
        fit.regressor.weight.copy_(w)
    assert float(fit(z_s, z_t)) == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        fit.regressor.weight.add_(0.1)
    fit(z_s, z_t).backward()
    assert z_s.grad is not None and fit.regressor.weight.grad is not None and z_t.grad is None


def test_attention_transfer_is_scale_free_over_channels():
    z = torch.randn(2, 50, 16)
    assert torch.allclose(attention_map(z).norm(dim=-1), torch.ones(2))
    at = ATLoss()
    assert float(at(z[..., :8] * 3.0, z[..., :8])) == pytest.approx(0.0, abs=1e-10)
    assert float(at(torch.randn(2, 50, 8), z)) > 0


def test_attention_transfer_matches_the_reference_scale():
    """Mean over clouds and points of the squared map difference, as in Zagoruyko & Komodakis' code."""
    z_s, z_t = torch.randn(3, 40, 8), torch.randn(3, 40, 16)
    q_s = z_s.pow(2).mean(-1)
    q_t = z_t.pow(2).mean(-1)
    q_s, q_t = q_s / q_s.norm(dim=1, keepdim=True), q_t / q_t.norm(dim=1, keepdim=True)
    expected = sum(float(((q_s[b] - q_t[b]) ** 2).sum()) for b in range(3)) / (3 * 40)
    assert float(ATLoss()(z_s, z_t)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("method", [m for m in PRESETS if m != "scratch"])
def test_each_method_trains_the_student_only(method):
    teacher = create_model("dgcnn_teacher", widths=(16, 16, 32, 32), emb_dim=64, mlp=(32,), k=8).eval()
    student = create_model("dgcnn_student", widths=(8, 16), mlp=(16,), k=4)
    objective = Distill(teacher, student, DistillSection(teacher="t.pt", method=method, sigma=4.0))
    assert all(term.pairs == [(1, 0), (3, 1)] for term in objective.losses.values() if hasattr(term, "pairs"))
    assert not any(p is q for p in objective.parameters() for q in teacher.parameters())
    out = objective(student, torch.randn(4, 32, 3), torch.randint(0, 40, (4,)))
    assert torch.isfinite(out.loss) and out.logits.shape == (4, 40)
    expected = {"ce"} | {
        "kd": {"kd"},
        "fitnet": {"fitnet"},
        "at": {"at"},
        "lsp": {"lsp"},
        "lsp+kd": {"lsp", "kd"},
        "hkd": {"hkd"},
        "hkd+kd": {"hkd", "kd"},
        "layer_attention": {"layer_attention"},
        "stride": {"layer_attention"},
    }[method]
    assert set(out.terms) == expected and all(v >= 0 for v in out.terms.values())
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    if method == "fitnet":
        assert all(p.grad is not None for p in objective.parameters())


def test_distill_settings_are_validated():
    DistillSection(method="lsp").validate()  # the teacher is checked when the run starts (see the CLI test)
    with pytest.raises(ValueError, match=r"distill\.method"):
        DistillSection(method="crd").validate()
    with pytest.raises(ValueError, match="kd_alpha"):
        DistillSection(method="kd", kd_alpha=2.0).validate()


def test_distill_cli_end_to_end(tmp_path, capsys):
    common = ["--data", "synthetic", "--epochs", "1", "--no-progress", "--set", "data.num_points=64"]
    common += ["--set", "train.batch_size=16", "--set", "train.max_batches_per_epoch=2"]
    teacher_args = ["train", "--config", "quickstart", "--out", str(tmp_path / "t"), *common]
    teacher_args += ["--set", "model.overrides={widths: [16, 16, 32, 32], k: 8, mlp: [32]}"]
    assert main(teacher_args) == 0
    student = ["--set", "model.overrides={widths: [8, 16], k: 4, mlp: [16]}"]
    for method in ("lsp+kd", "fitnet", "hkd", "stride"):  # stride: layer_attention's first name
        out = tmp_path / method
        args = ["distill", "--teacher", str(tmp_path / "t" / "best.pt"), "--method", method, "--out", str(out)]
        assert main([*args, *common, *student, "--set", "distill.sigma=4.0"]) == 0
        ckpt = load_checkpoint(out / "best.pt")
        assert ckpt["config"]["distill"]["method"] == method
        assert ckpt["teacher"] == str(tmp_path / "t" / "best.pt")
        first_term = {"stride": "layer_attention"}.get(method, method.split("+")[0])
        assert "test_oa" in ckpt["metrics"] and f"train_{first_term}" in ckpt["metrics"]
    assert "objective" in load_checkpoint(tmp_path / "fitnet" / "last.pt")  # the regressors resume too
    banks = load_checkpoint(tmp_path / "hkd" / "last.pt")["objective"]
    assert int(banks["losses.hkd.hkd.filled"]) > 0  # HKD's banks resume too
    assert banks["losses.hkd.hkd.bank_s"].shape == (4096, 128)
    assert (tmp_path / "stride" / "layer_attention.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["distill", "--method", "lsp", "--data", "synthetic", "--out", str(tmp_path / "x")]) == 2
    assert "needs a teacher" in capsys.readouterr().err


def _small_pair():
    torch.manual_seed(0)
    teacher = create_model("dgcnn_teacher", widths=(16, 16, 32, 32), emb_dim=64, mlp=(32,), k=8).eval()
    student = create_model("dgcnn_student", widths=(8, 16), mlp=(16,), k=4)
    return teacher, student


def test_shared_first_graph_is_the_students_own_xyz_graph():
    """The student's first graph read off the teacher's equals the one it builds itself (no distance ties in
    random points), so the loss and every gradient are unchanged."""
    teacher, student = _small_pair()
    points, labels = torch.randn(4, 32, 3), torch.randint(0, 40, (4,))
    results = []
    for share in (True, False):
        objective = Distill(teacher, student, DistillSection(method="lsp", sigma=4.0, share_first_graph=share))
        student.zero_grad()
        torch.manual_seed(5)
        out = objective(student, points, labels)
        out.loss.backward()
        results.append((out.loss.detach(), [p.grad.clone() for p in student.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b)
    graph = teacher.forward_layers(points, upto=0)[1][0][..., :4]
    assert torch.equal(graph, student.forward_layers(points, upto=0)[1][0])


def test_teacher_runs_only_the_layers_the_loss_reads():
    teacher, student = _small_pair()
    points = torch.randn(2, 32, 3)
    objective = Distill(teacher, student, DistillSection(method="at"))
    t_out = objective._teacher_outputs(points)
    assert len(t_out.features) == 4 and t_out.logits is None  # pairs (1, 0), (3, 1): up to layer 3, no head
    full = teacher.forward_features(points)
    for a, b in zip(t_out.features, full.features, strict=True):
        torch.testing.assert_close(a, b)
    kd = Distill(teacher, student, DistillSection(method="kd"))._teacher_outputs(points)
    torch.testing.assert_close(kd.logits, full.logits)


def test_lsp_centres_setting_is_validated():
    with pytest.raises(ValueError, match="lsp_centres"):
        DistillSection(method="lsp", lsp_centres=0).validate()


def test_lsp_kernel_options_reach_the_loss():
    teacher, student = _small_pair()
    settings = DistillSection(method="lsp", sigma_rule="median", lsp_normalize=True, lsp_centres=8)
    objective = Distill(teacher, student, settings)
    lsp = objective.losses["lsp"].lsp
    assert lsp.kernel.sigma_rule == "median" and lsp.kernel.normalize and objective.losses["lsp"].centres == 8
    out = objective(student, torch.randn(4, 32, 3), torch.randint(0, 40, (4,)))
    assert torch.isfinite(out.loss) and out.terms["lsp"] > 0
