"""HKD and STRIDE-style layer attention: against hand-written references, zero / positive cases, gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pointkd.distill.hkd import HKDLoss, info_nce, instance_knn_graph, normalized_adjacency
from pointkd.distill.layer_attention import LayerAttentionLoss
from pointkd.distill.lsp import LSPLoss
from pointkd.models import create_model


def test_instance_graph_matches_a_brute_force_reference():
    p = torch.rand(9, 5).softmax(1)
    adj = instance_knn_graph(p, 3)
    ref = torch.zeros(9, 9)
    for i in range(9):
        others = sorted((float((p[i] - p[j]).norm()), j) for j in range(9) if j != i)
        for _, j in others[:3]:
            ref[i, j] = ref[j, i] = 1
    assert torch.equal(adj, ref)
    assert instance_knn_graph(p[:1], 3).sum() == 0  # one cloud: no neighbours


def test_normalized_adjacency_formula():
    adj = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]])
    a = adj + torch.eye(3)
    deg = a.sum(1)
    want = torch.tensor([[a[i, j] / math.sqrt(deg[i] * deg[j]) for j in range(3)] for i in range(3)])
    assert torch.allclose(normalized_adjacency(adj), want)


def test_info_nce_closed_form_and_near_zero_when_aligned():
    a = F.normalize(torch.randn(4, 8), dim=1)
    b = F.normalize(torch.randn(4, 8), dim=1)
    neg = F.normalize(torch.randn(6, 8), dim=1)
    tau = 0.2
    want = torch.stack(
        [
            -(a[i] @ b[i] / tau) + torch.logsumexp(torch.cat([(a[i] @ b[i])[None], neg @ a[i]]) / tau, 0)
            for i in range(4)
        ]
    ).mean()
    assert float(info_nce(a, b, neg, tau)) == pytest.approx(float(want), rel=1e-6)
    e = F.normalize(torch.randn(1, 8), dim=1)
    assert float(info_nce(e, e, torch.cat([-e, -e]), 0.05)) < 1e-8  # positive at +1, negatives at -1: ~2 e^{-40}


def test_hkd_positive_gradients_to_student_and_heads_only_and_banks_fill():
    torch.manual_seed(0)
    loss = HKDLoss(student_dim=16, teacher_dim=32, dim=8, k=2, queue=10)
    x_s = torch.randn(6, 16, requires_grad=True)
    x_t = torch.randn(6, 32, requires_grad=True)
    l_s, l_t = torch.randn(6, 5), torch.randn(6, 5)
    first = loss(x_s, x_t, l_s, l_t)  # empty banks: in-batch negatives
    assert first > 0 and int(loss.filled) == 6
    first.backward()
    assert x_s.grad is not None and x_t.grad is None
    assert all(p.grad is not None for p in loss.parameters())
    second = loss(x_s.detach(), x_t, l_s, l_t)
    assert second > 0 and int(loss.filled) == 10 and int(loss.cursor) == 2  # FIFO wrapped around
    loss.eval()
    loss(x_s.detach(), x_t, l_s, l_t)
    assert int(loss.cursor) == 2  # eval does not enqueue


def test_hkd_with_banks_equals_the_reference_formula():
    torch.manual_seed(1)
    loss = HKDLoss(4, 4, dim=4, k=1, queue=3, temperature=0.5)
    x_s, x_t, l_s, l_t = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 2), torch.randn(3, 2)
    loss(x_s, x_t, l_s, l_t)  # fills the banks with this batch's plain features
    bank_s, bank_t = loss.bank_s.clone(), loss.bank_t.clone()
    h_s, _ = loss.student_head(x_s, normalized_adjacency(instance_knn_graph(l_s.softmax(1), 1)))
    h_t, _ = loss.teacher_head(x_t, normalized_adjacency(instance_knn_graph(l_t.softmax(1), 1)))
    want = 0.5 * (info_nce(h_s, h_t, bank_t, 0.5) + info_nce(h_t, h_s, bank_s, 0.5))
    assert float(loss(x_s, x_t, l_s, l_t).detach()) == pytest.approx(float(want.detach()), rel=1e-6)


def _features(widths, b=2, n=24, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(b, n, c, generator=g) for c in widths]
    graphs = [torch.randint(0, n, (b, n, k), generator=g) for _ in widths]
    return feats, graphs


def test_layer_attention_shapes_sum_to_one_and_match_a_loop_reference():
    s_w, t_w = [4, 8], [6, 6, 12]
    loss = LayerAttentionLoss(s_w, t_w, dim=5, structural=LSPLoss("rbf"))
    fs, gs = _features(s_w, seed=1)
    ft, gt = _features(t_w, seed=2)
    value = loss(fs, gs, ft, gt)
    alpha = loss.attention([z.mean(1) for z in fs], [z.mean(1) for z in ft])
    assert alpha.shape == (3, 2) and torch.allclose(alpha.sum(0), torch.ones(2))
    ref = 0.0
    for li in range(3):
        for m in range(2):
            e_t = F.normalize(loss.embed_t[li](ft[li].mean(1)), dim=-1)
            e_s = F.normalize(loss.embed_s[m](fs[m].mean(1)), dim=-1)
            emb = (e_t - e_s).pow(2).sum(-1).mean()
            ref = ref + alpha[li, m] * (emb + LSPLoss("rbf")(fs[m], gs[m], ft[li], gt[li]))
    assert float(value) == pytest.approx(float(ref / 6), rel=1e-5)
    assert torch.allclose(loss.attention_mean, alpha.detach(), atol=1e-6)


def test_layer_attention_zero_when_the_student_is_the_teacher_and_gradients_flow_to_student_and_heads():
    widths = [4, 8]
    loss = LayerAttentionLoss(widths, widths, dim=6, rank=3, structural=LSPLoss("rbf"))
    with torch.no_grad():
        for a, b in zip(loss.embed_s, loss.embed_t, strict=True):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    feats, graphs = _features(widths, seed=3)
    d = loss.dissimilarity(feats, graphs, feats, graphs)
    assert torch.allclose(d.diagonal(), torch.zeros(2), atol=1e-6) and (d > 1e-4).sum() >= 1
    fs = [z.clone().requires_grad_(True) for z in feats]
    ft = [z.clone().requires_grad_(True) for z in _features(widths, seed=4)[0]]
    out = loss(fs, graphs, ft, graphs)
    assert out > 0
    out.backward()
    assert all(z.grad is not None for z in fs) and all(z.grad is None for z in ft)
    assert all(p.grad is not None for p in loss.parameters())


def test_layer_attention_rejects_wrong_layer_counts_and_plots(tmp_path):
    loss = LayerAttentionLoss([4], [4, 4], dim=4)
    fs, gs = _features([4])
    with pytest.raises(ValueError, match="expected 2 teacher and 1 student"):
        loss(fs, gs, fs, gs)
    with pytest.raises(ValueError, match="rank"):
        LayerAttentionLoss([4], [4], dim=4, rank=5)
    ft, gt = _features([4, 4])
    loss(fs, gs, ft, gt)
    png = loss.plot(tmp_path / "attention.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_layer_attention_on_real_models_of_different_depths():
    teacher = create_model("dgcnn_teacher", widths=(16, 16, 32, 32), emb_dim=64, mlp=(32,), k=8).eval()
    student = create_model("dgcnn_student", widths=(8, 16), mlp=(16,), k=4)
    x = torch.randn(2, 32, 3)
    with torch.no_grad():
        t = teacher.forward_features(x)
    s = student.forward_features(x)
    loss = LayerAttentionLoss(student.config.widths, teacher.config.widths, dim=8, structural=LSPLoss("rbf"))
    loss(s.features, s.graphs, t.features, t.graphs).backward()
    assert all(p.grad is not None for p in student.convs.parameters())  # the head gets none from a feature loss
