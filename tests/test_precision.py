"""bf16 mixed-precision training (``train.precision: bf16``): the edge part of EdgeConv stays fp32, the losses
see fp32, and a bf16 step's loss and gradients agree with the fp32 step's to bf16's precision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pointkd.cli import build_parser
from pointkd.cli.train import FLAG_KEYS
from pointkd.config import ConfigError, DistillSection, load_config
from pointkd.distill import Distill, Supervised
from pointkd.models import DGCNNOutput, create_model, edgeconv
from pointkd.models.edgeconv import EdgeConv
from pointkd.models.knn import knn_dense
from pointkd.models.precision import as_float, autocast, cpu_has_native_bf16, forward_in
from pointkd.train import train

BF16 = {"rtol": 3e-2, "atol": 3e-2}  # bf16 keeps 8 mantissa bits: ~0.4 % per rounding, a few roundings deep


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _grads(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


def test_edgeconv_under_bf16_autocast_runs_its_edge_part_in_fp32(monkeypatch):
    torch.manual_seed(0)
    conv = EdgeConv(16, 32)
    x = torch.randn(2, 64, 16)
    idx = knn_dense(x, 10)
    seen = []
    argmax = edgeconv.neighbor_argmax
    monkeypatch.setattr(edgeconv, "neighbor_argmax", lambda a, *rest: seen.append(a.dtype) or argmax(a, *rest))
    x32, x16 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y32 = conv(x32, idx)
    (y32 * y32).sum().backward()
    g32, conv.weight.grad = conv.weight.grad.clone(), None
    with autocast("bf16"):
        y16 = conv(x16, idx)
    (y16 * y16).sum().backward()
    # The packed-key argmax (fp32 only) ran both times, and the output is fp32 for the next layer's kNN.
    assert seen == [torch.float32, torch.float32] and y16.dtype == torch.float32
    torch.testing.assert_close(y16, y32, **BF16)
    assert _cosine(conv.weight.grad, g32) > 0.995 and _cosine(x16.grad, x32.grad) > 0.995
    assert conv.bn.running_var.dtype == torch.float32 and torch.isfinite(conv.bn.running_var).all()


def test_edgeconv_under_autocast_is_its_fp32_edge_part_of_the_bf16_products():
    """Exact: only the two per-point matmuls are bf16; the rest is the fp32 code on their upcast outputs."""
    torch.manual_seed(3)
    conv = EdgeConv(8, 16)
    x = torch.randn(2, 40, 8)
    idx = knn_dense(x, 6)
    w1, w2 = conv.split_weight()
    a, c = (F.linear(x.bfloat16(), w.bfloat16()).float() for w in (w1, w2))
    state = {k: v.clone() for k, v in conv.state_dict().items()}
    expected = conv._edge_part(a, c, idx)
    conv.load_state_dict(state)
    with autocast("bf16"):
        got = conv(x, idx)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_edgeconv_casts_nothing_outside_autocast():
    conv = EdgeConv(4, 8).double()  # a float64 module stays float64 (gradcheck-style tests rely on it)
    x = torch.randn(1, 20, 4, dtype=torch.float64)
    assert conv(x, knn_dense(x, 5)).dtype == torch.float64


def test_as_float_casts_floating_tensors_in_outputs_and_keeps_the_gradient():
    logits = torch.randn(2, 5, requires_grad=True)
    out = DGCNNOutput(logits.bfloat16(), [torch.randn(2, 4, 3).bfloat16()], [torch.zeros(2, 4, 2, dtype=torch.long)],
                      torch.randn(2, 6).bfloat16())  # fmt: skip
    cast = as_float(out)
    assert isinstance(cast, DGCNNOutput)
    assert cast.logits.dtype == cast.features[0].dtype == cast.embedding.dtype == torch.float32
    assert cast.graphs[0].dtype == torch.long
    assert as_float((torch.ones(1, dtype=torch.bfloat16), 3))[1] == 3
    cast.logits.sum().backward()
    torch.testing.assert_close(logits.grad, torch.ones(2, 5))


def test_forward_in_fp32_is_the_plain_call_and_bad_names_fail():
    model = create_model("dgcnn_student", widths=(8, 16), mlp=(16,), k=4).eval()
    x = torch.randn(2, 32, 3)
    torch.testing.assert_close(forward_in("fp32", model, x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        forward_in("fp16", model, x)
    with pytest.raises(ValueError, match="unknown precision"):
        Supervised(precision="half")


def _step(objective: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)  # the dropout masks
    model.zero_grad(set_to_none=True)
    out = objective(model, x, y)
    out.loss.backward()
    return out, _grads(model)


def test_a_bf16_supervised_step_matches_fp32():
    torch.manual_seed(1)
    # One xyz graph for all layers: a random model's deep features are near-ties, whose kNN order bf16 reshuffles.
    model = create_model("dgcnn_teacher", widths=(16, 16, 32, 32), emb_dim=64, mlp=(32,), k=8, knn_layers=(0,))
    x, y = torch.randn(8, 96, 3), torch.randint(0, 40, (8,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out32, g32 = _step(Supervised(0.2), model, x, y)
    model.load_state_dict(state)  # the same BatchNorm statistics before each step
    _, g32_other_mask = _step(Supervised(0.2), model, x, y, seed=1)
    model.load_state_dict(state)
    out16, g16 = _step(Supervised(0.2, precision="bf16"), model, x, y)
    assert out16.logits.dtype == out16.loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert float(out16.loss.detach()) == pytest.approx(float(out32.loss.detach()), rel=2e-2)
    # bf16 must move the gradient less than another dropout mask does; neighbour maxima that flip near ties keep
    # its cosine from ~1.
    assert _cosine(g16, g32) > max(0.9, _cosine(g32_other_mask, g32))


def test_a_bf16_lsp_step_matches_fp32_and_its_terms_are_fp32():
    torch.manual_seed(2)
    teacher = create_model("dgcnn_teacher", widths=(16, 16, 32, 32), emb_dim=64, mlp=(32,), k=8, knn_layers=(0,))
    student = create_model("dgcnn_student", widths=(8, 16), mlp=(16,), k=4, knn_layers=(0,))
    x, y = torch.randn(4, 64, 3), torch.randint(0, 40, (4,))
    settings = DistillSection(method="lsp", sigma=4.0)
    state = {k: v.clone() for k, v in student.state_dict().items()}
    out32, g32 = _step(Distill(teacher, student, settings), student, x, y)
    student.load_state_dict(state)
    out16, g16 = _step(Distill(teacher, student, settings, precision="bf16"), student, x, y)
    assert out16.terms.keys() == out32.terms.keys() == {"ce", "lsp"}
    for name in out32.terms:
        assert out16.terms[name] == pytest.approx(out32.terms[name], rel=5e-2), name
    assert _cosine(g16, g32) > 0.9


def test_config_and_cli_take_the_precision():
    assert load_config("teacher_paper").train.precision == "fp32"
    assert load_config("teacher_paper", ["train.precision=bf16"]).train.precision == "bf16"
    with pytest.raises(ConfigError, match=r"train\.precision must be one of"):
        load_config("teacher_paper", ["train.precision=fp16"])
    args = build_parser().parse_args(["train", "--precision", "bf16"])
    assert args.precision == "bf16" and FLAG_KEYS["precision"] == "train.precision"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--precision", "fp16"])


def test_cpu_has_native_bf16_reads_the_flags():
    assert cpu_has_native_bf16({"avx512f", "avx512_bf16"}) and cpu_has_native_bf16({"amx_bf16"})
    assert not cpu_has_native_bf16({"avx2", "avx512f", "avx512_vnni"})


def test_a_bf16_run_trains_and_saves_fp32_weights(tiny_data, tmp_path):
    cfg = load_config(
        "quickstart",
        ["train.epochs=2", "train.batch_size=8", "data.num_points=64", "train.precision=bf16",
         "model.overrides={widths: [16, 16, 32], k: 8, mlp: [32]}"],
    )  # fmt: skip
    logs: list[str] = []
    result = train(cfg, tmp_path / "run", data=tiny_data, progress=False, log=logs.append)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    weights = ckpt["state_dict"]
    assert all(v.dtype in (torch.float32, torch.int64) for v in weights.values())
    assert "precision: bf16" in (tmp_path / "run" / "config.yaml").read_text()
    assert any("bf16 is emulated" in line for line in logs) != cpu_has_native_bf16()
