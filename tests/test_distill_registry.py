"""The loss registry, the ``distill.terms`` config, and the ``distill.method`` presets against the objective that
came before them: tests/data/distill_presets_reference.json holds the losses and per-term values that the
if-chain objective of commit aeb8ca7 (pointkd/distill/objective.py) gave for the cases below, two steps each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pointkd.config import ConfigError, DistillSection, load_config
from pointkd.distill import LOSSES, PRESETS, Distill, Supervised, Term, build_loss, check_spec, register_loss
from pointkd.distill.registry import StepOutputs
from pointkd.models import create_model

REFERENCE = json.loads((Path(__file__).parent / "data" / "distill_presets_reference.json").read_text())
CASES = {
    "scratch": None,
    "kd": dict(method="kd", kd_alpha=0.3, kd_temperature=3.0),
    "fitnet": dict(method="fitnet", fitnet_weight=2.0),
    "at": dict(method="at", at_weight=500.0),
    "at_layer_map": dict(method="at", layer_map=[[0, 0], [2, 1]], layer_weights=[0.5, 2.0]),
    "lsp": dict(method="lsp", sigma=4.0),
    "lsp_median_l2norm_centres": dict(method="lsp", sigma_rule="median", lsp_normalize=True, lsp_centres=8),
    "lsp_poly": dict(method="lsp", kernel="poly", degree=3, coef=1.0, lsp_lambda=10.0, layer_weights=[0.5, 2.0]),
    "lsp_teacher_first_dense": dict(
        method="lsp", kernel="l2", lsp_direction="teacher||student", lsp_impl="dense", share_first_graph=False
    ),
    "lsp+kd": dict(method="lsp+kd", sigma=4.0, kd_alpha=0.2),
    "hkd": dict(method="hkd", hkd_dim=16, hkd_k=2, hkd_queue=8, hkd_weight=0.5),
    "hkd+kd": dict(method="hkd+kd", hkd_dim=16, hkd_queue=8, kd_temperature=2.0),
    "stride": dict(
        method="stride", sigma=4.0, stride_dim=8, stride_rank=4, stride_weight=0.7, stride_structural_weight=50.0
    ),
}
RENAMED = {"stride": "layer_attention"}  # term names that changed with the registry


def _models():
    torch.manual_seed(0)
    teacher = create_model("dgcnn_teacher", widths=(16, 16, 32, 32), emb_dim=64, mlp=(32,), k=8).eval()
    student = create_model("dgcnn_student", widths=(8, 16), mlp=(16,), k=4)
    return teacher, student


def _steps(objective, student) -> list[dict]:
    steps = []
    for step in range(2):  # the second step: HKD's banks hold the first one's features
        g = torch.Generator().manual_seed(10 + step)
        points, labels = torch.randn(6, 32, 3, generator=g), torch.randint(0, 40, (6,), generator=g)
        torch.manual_seed(100 + step)  # dropout and LSP's random centres
        out = objective(student, points, labels)
        steps.append({"loss": float(out.loss.detach()), "terms": out.terms})
    return steps


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_preset_gives_the_loss_and_terms_of_the_objective_before_the_registry(case):
    assert set(CASES) == set(REFERENCE)
    teacher, student = _models()
    torch.manual_seed(1)
    kw = CASES[case]
    settings = None if kw is None else DistillSection(teacher="t.pt", **kw)
    objective = Supervised(0.1) if kw is None else Distill(teacher, student, settings, 0.1)
    for got, want in zip(_steps(objective, student), REFERENCE[case], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-7)
        assert list(got["terms"]) == [RENAMED.get(k, k) for k in want["terms"]]
        for name, value in want["terms"].items():
            assert got["terms"][RENAMED.get(name, name)] == pytest.approx(value, rel=1e-5, abs=1e-7)
    if kw is not None and case != "stride":  # scratch through Distill: the same cross-entropy
        teacher, student = _models()
        torch.manual_seed(1)
        scratch = Distill(teacher, student, DistillSection(method="scratch"), 0.1)
        ce = [s["terms"]["ce"] for s in _steps(scratch, student)]
        assert ce == pytest.approx([s["loss"] for s in REFERENCE["scratch"]], rel=1e-5)


def test_terms_config_equals_the_preset_it_spells_out():
    teacher, student = _models()
    torch.manual_seed(1)
    preset = _steps(Distill(teacher, student, DistillSection(method="lsp+kd", sigma=4.0, kd_alpha=0.2), 0.1), student)
    terms = [
        {"loss": "ce", "weight": 0.8},
        {"loss": "kd", "weight": 0.2, "temperature": 4.0},
        {"loss": "lsp", "weight": 100.0, "kernel": "rbf", "sigma": 4.0},
    ]
    teacher, student = _models()
    torch.manual_seed(1)
    spelled = _steps(Distill(teacher, student, DistillSection(terms=terms), 0.1), student)
    assert spelled == preset


def test_terms_without_ce_get_plain_cross_entropy_first_and_names_tell_terms_apart():
    teacher, student = _models()
    terms = [{"loss": "lsp", "weight": 10.0}, {"loss": "lsp", "name": "lsp_l2", "weight": 1.0, "kernel": "l2"}]
    objective = Distill(teacher, student, DistillSection(terms=terms), 0.2)
    assert list(objective.losses) == ["ce", "lsp", "lsp_l2"]
    assert objective.losses["ce"].weight == 1.0 and objective.losses["ce"].label_smoothing == 0.2
    out = objective(student, torch.randn(4, 32, 3), torch.randint(0, 40, (4,)))
    assert set(out.terms) == {"ce", "lsp", "lsp_l2"} and out.terms["lsp_l2"] > 0


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (dict(terms=[{"loss": "crd", "weight": 1}]), "unknown loss 'crd'"),
        (dict(terms=[{"loss": "lsp", "weight": 1, "lamda": 2}]), r"unknown option\(s\) \['lamda'\]"),
        (dict(terms=[{"loss": "kd"}]), r"needs \['weight'\]"),
        (dict(terms=[{"weight": 1}]), "'loss' key"),
        (dict(terms=[]), "non-empty list"),
        (dict(terms=[{"loss": "ce", "weight": 1}]), "read nothing from the teacher"),
        (dict(terms=[{"loss": "at", "weight": 1}, {"loss": "at", "weight": 2}]), "share a name"),
        (dict(method="kd", terms=[{"loss": "kd", "weight": 1}]), "both set"),
        (dict(kd_alpha=0.5, terms=[{"loss": "kd", "weight": 1}]), r"\['kd_alpha'\] parameterise"),
        (dict(method="crd"), r"distill\.method must be one of"),
        (dict(sigma_rule="mean"), r"distill\.sigma_rule must be one of \('fixed', 'median'\)"),
    ],
)
def test_distill_settings_errors(settings, match):
    with pytest.raises(ConfigError, match=match):
        DistillSection(**settings).validate()


def test_presets_and_losses_are_registered_and_a_new_loss_plugs_in():
    assert {"scratch", "kd", "fitnet", "at", "lsp", "lsp+kd", "hkd", "hkd+kd", "layer_attention", "stride"} <= set(
        PRESETS
    )
    assert {"ce", "kd", "fitnet", "at", "lsp", "hkd", "layer_attention"} <= set(LOSSES)
    assert DistillSection().preset == "lsp" and not DistillSection(method="scratch").needs_teacher

    @register_loss("logit_l2_test")
    class LogitL2(Term):
        reads_head = True

        def __init__(self, teacher, student, weight: float, power: float = 2.0):
            super().__init__(weight)
            self.power = power

        def forward(self, out: StepOutputs) -> torch.Tensor:
            return (out.student.logits - out.teacher.logits).abs().pow(self.power).mean()

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_loss("logit_l2_test")(LogitL2)
        check_spec({"loss": "logit_l2_test", "weight": 0.5, "power": 1.0})
        teacher, student = _models()
        assert build_loss({"loss": "logit_l2_test", "weight": 0.5}, teacher, student).power == 2.0
        objective = Distill(teacher, student, DistillSection(terms=[{"loss": "logit_l2_test", "weight": 0.5}]))
        out = objective(student, torch.randn(3, 32, 3), torch.randint(0, 40, (3,)))
        assert set(out.terms) == {"ce", "logit_l2_test"} and out.terms["logit_l2_test"] > 0
    finally:
        del LOSSES["logit_l2_test"]


def test_the_terms_example_config_loads_and_builds():
    cfg = load_config("distill_terms")
    assert cfg.distill.method is None and [t["loss"] for t in cfg.distill.terms] == ["ce", "kd", "lsp"]
    teacher, student = _models()
    objective = Distill(teacher, student, cfg.distill, cfg.train.label_smoothing)
    assert list(objective.losses) == ["ce", "kd", "lsp"]


def test_cli_lists_the_presets_from_the_registry(capsys):
    from pointkd.cli import main

    assert main(["distill", "--list-methods"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == set(PRESETS)
    assert "0.9·ce, 0.1·kd, 100·lsp" in rows["lsp+kd"] and "layer_attention" in rows["stride"]
