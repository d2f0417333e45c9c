"""The inference rewrite, ONNX export, tie-aware parity, int8 quantization, manifests and `pointkd compile`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from pointkd.cli import main
from pointkd.export.compile import CompileOptions, compile_cached, compile_checkpoint
from pointkd.export.deploy_model import DeployDGCNN, knn_topk, seeded_topk
from pointkd.export.onnx_export import export_onnx, reference_model
from pointkd.export.parity import check_parity
from pointkd.export.quantize import input_projection_nodes, knn_score_nodes, quantize_int8
from pointkd.export.torch_export import save_torch_model
from pointkd.models import create_model
from pointkd.models.knn import knn_dense
from pointkd.runtime.errors import AccuracyDropError, CudaUnavailable, ManifestError, RuntimeUnavailable
from pointkd.runtime.manifest import read_manifest
from pointkd.runtime.ort import make_session, run_in_batches, run_logits
from pointkd.runtime.runner import open_runner
from pointkd.runtime.tensorrt import tensorrt_status
from pointkd.runtime.torch_runner import TorchRunner, cuda_status, load_torch_model

TINY = {"widths": (8, 16, 16), "k": 6, "mlp": (16,), "num_classes": 8}


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Eval-mode BN with non-trivial statistics, a third of the scales negative."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=g).abs() * torch.where(torch.arange(c) % 3 == 0, -1.0, 1.0))
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()


def _clouds(b: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("dgcnn_student", TINY),
        ("dgcnn_student_fast", TINY),
        ("dgcnn_teacher", {"widths": (8, 8, 16), "k": 5, "emb_dim": 32, "mlp": (16, 16), "num_classes": 5}),
    ],
)
def test_deploy_model_equals_the_torch_model(name, overrides):
    model = _randomise_bn(create_model(name, **overrides))
    ref = reference_model(model)
    x = _clouds(4)
    with torch.no_grad():
        want, got = ref(x), DeployDGCNN(ref)(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_knn_topk_picks_the_same_neighbours_as_the_training_knn():
    x = _clouds(3, 100, seed=5)
    got = knn_topk(x, 10).sort(-1).values
    assert torch.equal(got, knn_dense(x, 10).sort(-1).values)


def _random_seeds(b: int, n: int, k: int, seed: int) -> torch.Tensor:
    """``k`` distinct column indices per row, unrelated to the scores (any seeds must do)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(n)]) for _ in range(b)])


def test_seeded_topk_selects_what_topk_selects():
    g = torch.Generator().manual_seed(3)
    score = torch.randn(2, 50, 50, generator=g) * 10
    score[0, 0] = torch.arange(50.0).flip(0) - 43  # distinct, 0 among the top 7: tau == 0 with ideal seeds
    score[1, 1] = -5.0 - torch.rand(50, generator=g)  # all negative
    for seeds in (_random_seeds(2, 50, 7, seed=1), score.topk(7, dim=-1).indices):  # arbitrary and ideal seeds
        got = seeded_topk(score, seeds, 7).sort(-1).values
        want = score.topk(7, dim=-1).indices.sort(-1).values
        assert torch.equal(got, want)
        assert int(got.min()) >= 0
    wider = seeded_topk(score, _random_seeds(2, 50, 12, seed=3), 7)  # more seeds: a lower floor, the same set
    assert torch.equal(wider.sort(-1).values, score.topk(7, dim=-1).indices.sort(-1).values)
    with pytest.raises(ValueError, match="at least k = 7 seeds"):
        seeded_topk(score, _random_seeds(2, 50, 5, seed=4), 7)


def test_seeded_topk_in_onnx_runtime_equals_plain_topk_ties_included(tmp_path):
    """ORT breaks ties by the lower index; seeding keeps the real entries' order, so even tied rows agree."""

    class Plain(torch.nn.Module):
        def forward(self, score, seeds):
            return score.topk(6, dim=-1, sorted=False).indices + 0 * seeds[..., :1]

    class Seeded(torch.nn.Module):
        def forward(self, score, seeds):
            return seeded_topk(score, seeds, 6)

    g = torch.Generator().manual_seed(4)
    score = torch.randint(0, 4, (3, 40, 40), generator=g).float()  # mostly ties
    seeds = _random_seeds(3, 40, 6, seed=2)
    runs = []
    for name, module in (("plain", Plain()), ("seeded", Seeded())):
        torch.onnx.export(module, (score, seeds), tmp_path / f"{name}.onnx", input_names=["s", "i"], dynamo=False)
        session = make_session(tmp_path / f"{name}.onnx", threads=1)
        runs.append(np.sort(session.run(None, {"s": score.numpy(), "i": seeds.numpy()})[0], axis=-1))
    np.testing.assert_array_equal(runs[1], runs[0])
    assert (runs[0] == np.sort(score.topk(6, dim=-1).indices.numpy(), -1)).all(-1).mean() < 1  # ties do occur


def test_deploy_model_with_and_without_seeded_topk_agree():
    model = _randomise_bn(create_model("dgcnn_student", **TINY))
    ref = reference_model(model)
    x = _clouds(3, seed=7)
    with torch.no_grad():
        assert torch.equal(DeployDGCNN(ref, seeded_topk=True)(x), DeployDGCNN(ref, seeded_topk=False)(x))


def test_forward_features_on_given_graphs():
    model = _randomise_bn(create_model("dgcnn_student", **TINY))
    x = _clouds(2)
    with torch.no_grad():
        own = model.forward_features(x)
        again = model.forward_features(x, graphs=own.graphs)
        shuffled = model.forward_features(x, graphs=[g.flip(1) for g in own.graphs])
    assert torch.equal(own.logits, again.logits)
    assert not torch.allclose(own.logits, shuffled.logits)
    with pytest.raises(ValueError, match="one per EdgeConv"):
        model.forward_features(x, graphs=own.graphs[:1])


@pytest.mark.parametrize("naive", [False, True])
def test_onnx_export_matches_torch_at_any_batch(tmp_path, naive):
    model = _randomise_bn(create_model("dgcnn_student", **TINY))
    path = export_onnx(model, tmp_path / "m.onnx", num_points=64, naive=naive)
    session = make_session(path, threads=1)
    ref = reference_model(model)
    for b in (1, 5):
        x = _clouds(b, seed=b)
        with torch.no_grad():
            want = ref(x).numpy()
        np.testing.assert_allclose(run_logits(session, x.numpy()), want, atol=1e-4)
    graph = onnx.load(str(path)).graph
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    topks = [n for n in graph.node if n.op_type == "TopK"]
    assert len(topks) == len(TINY["widths"])
    assert all(n.input[1] in consts for n in topks)  # TensorRT needs K as a constant
    if not naive:
        assert not any(n.op_type == "BatchNormalization" for n in graph.node)


@pytest.mark.parametrize(
    "name, topks",
    [("dgcnn_student", 4), ("dgcnn_student_fast", 3), ("dgcnn_student_fast2", 2), ("dgcnn_student_static", 1)],
)
def test_latency_aware_students_export_fewer_topks(tmp_path, name, topks):
    model = _randomise_bn(create_model(name, **{**TINY, "widths": (8, 8, 16, 16)}))
    graph = onnx.load(str(export_onnx(model, tmp_path / "f.onnx", num_points=64))).graph
    assert sum(n.op_type == "TopK" for n in graph.node) == topks


def test_parity_passes_exact_and_catches_a_wrong_export(tmp_path):
    model = _randomise_bn(create_model("dgcnn_student", **TINY))
    path = export_onnx(model, tmp_path / "m.onnx", num_points=64)
    x = _clouds(6).numpy()
    ref = reference_model(model)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    got = run_logits(make_session(path), x)
    ok = check_parity(ref, path, x, want, got)
    assert ok.ok and ok.off_clouds == 0 and ok.max_abs_logit_diff <= 1e-4
    with torch.no_grad():
        model.head[-1].bias[0] += 0.5  # an export that computes something else
    wrong = export_onnx(model, tmp_path / "wrong.onnx", num_points=64)
    bad = check_parity(ref, wrong, x, want, run_logits(make_session(wrong), x))
    assert not bad.ok and bad.off_clouds == 6 and "exported computation is wrong" in bad.reason


def test_int8_keeps_knn_and_xyz_projection_float(tmp_path):
    model = _randomise_bn(create_model("dgcnn_student", **TINY))
    fp32 = export_onnx(model, tmp_path / "m.onnx", num_points=64)
    calib = _clouds(32, seed=9).numpy()
    int8 = quantize_int8(fp32, tmp_path / "q.onnx", calib)
    graph = onnx.load(str(int8)).graph
    producers = {o: n for n in graph.node for o in n.output}
    knn = knn_score_nodes(onnx.load(str(int8)))
    assert len(knn) == len(TINY["widths"])
    for n in graph.node:
        if n.name in knn or n.name in input_projection_nodes(onnx.load(str(int8))):
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in n.input), n.name
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) > 0
    x = _clouds(8, seed=1).numpy()
    f, q = run_logits(make_session(fp32), x), run_logits(make_session(int8), x)
    assert np.abs(f - q).max() < 0.25 * np.abs(f).max()  # int8 noise, not garbage


def test_tensorrt_flavour_is_symmetric_int8(tmp_path):
    model = _randomise_bn(create_model("dgcnn_student", **TINY))
    fp32 = export_onnx(model, tmp_path / "m.onnx", num_points=64)
    int8 = quantize_int8(fp32, tmp_path / "q.onnx", _clouds(16, seed=2).numpy(), flavour="tensorrt")
    graph = onnx.load(str(int8)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    zero_points = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    with pytest.raises(ValueError, match="flavour"):
        quantize_int8(fp32, tmp_path / "x.onnx", _clouds(4).numpy(), flavour="fp4")


def test_compile_onnx_and_int8_artifacts(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "art"
    assert main(["compile", str(tiny_checkpoint), "--data", "synthetic", "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest["artifact_format"] == "onnx" and manifest["model_file"] == "model.onnx"
    assert manifest["input"]["num_points"] == 64 and manifest["input"]["up_axis"] == "z"
    assert manifest["classes"] == sorted(manifest["classes"]) and len(manifest["classes"]) == 8
    assert manifest["parity"]["ok"] and manifest["parity"]["clouds"] == 128
    assert manifest["accuracy"]["oa"] == pytest.approx(manifest["accuracy"]["reference"]["oa"], abs=0.02)
    assert len(manifest["source_checkpoint"]["sha256"]) == 64
    int8 = tmp_path / "int8"
    code = main(
        [
            "compile",
            str(tiny_checkpoint),
            "--data",
            "synthetic",
            "--format",
            "onnx-int8",
            "--out",
            str(int8),
            "--calib-size",
            "40",
            "--max-drop",
            "100",
        ]
    )
    assert code == 0
    m8 = read_manifest(int8)
    assert m8["model_file"] == "model.int8.onnx" and m8["calibration"]["split"] == "train"
    calib = json.loads((int8 / "calibration.json").read_text())
    assert len(calib["ids"]) == 40 and calib["split"] == "train"
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(int8 / "model.int8.onnx")).graph.node)
    (int8 / "model.int8.onnx").write_bytes(b"tampered")
    with pytest.raises(ManifestError, match="sha256"):
        read_manifest(int8)


def test_int8_over_the_drop_limit_writes_nothing(tiny_checkpoint, tmp_path):
    opts = CompileOptions("onnx-int8", data="synthetic", calib_size=16, max_drop=-100.0, log=lambda *_: None)
    with pytest.raises(AccuracyDropError, match="max-drop"):
        compile_checkpoint(tiny_checkpoint, tmp_path / "art", opts)
    assert list(tmp_path.iterdir()) == []  # no half-written artifact, no temp folder


def test_compile_user_errors(tiny_checkpoint, tmp_path, capsys):
    assert main(["compile", str(tiny_checkpoint), "--format", "tflite", "--data", "synthetic"]) == 2
    assert "unknown format 'tflite'; choose from onnx, onnx-int8, onnx-fused" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["compile", str(tiny_checkpoint), "--data", "synthetic", "--out", str(tmp_path / "busy")]) == 2
    assert "not a pointkd artifact" in capsys.readouterr().err
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        read_manifest(tmp_path / "busy")


@pytest.mark.skipif(tensorrt_status() is None, reason="TensorRT is installed: this checks the error without it")
def test_tensorrt_formats_explain_why_they_cannot_build(tiny_checkpoint, tmp_path, capsys):
    assert (
        main(
            [
                "compile",
                str(tiny_checkpoint),
                "--format",
                "trt-fp16",
                "--data",
                "synthetic",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 2
    )
    assert "tensorrt" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_compile_cached_reuses_only_an_artifact_of_the_current_export(tiny_artifact, tiny_checkpoint, tmp_path):
    import shutil

    out = tmp_path / "art"
    shutil.copytree(tiny_artifact, out)
    said: list[str] = []
    opts = CompileOptions("onnx", data="synthetic", log=lambda msg, *_: said.append(str(msg)))
    compile_cached(tiny_checkpoint, out, opts)
    assert any("reusing" in m for m in said)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["export_revision"] = manifest["export_revision"] - 1  # an artifact from an older exporter
    (out / "manifest.json").write_text(json.dumps(manifest))
    said.clear()
    rebuilt = compile_cached(tiny_checkpoint, out, opts)
    assert not any("reusing" in m for m in said)
    assert rebuilt["export_revision"] == manifest["export_revision"] + 1
    assert read_manifest(out)["export_revision"] == rebuilt["export_revision"]


# ------------------------------------------------------------------------------------------------ torch-cuda

NO_CUDA = pytest.mark.skipif(cuda_status() is None, reason="a CUDA device is here: this checks the error without one")


def test_torch_model_file_runs_the_folded_model_at_any_batch(tmp_path):
    model = _randomise_bn(create_model("dgcnn_student_fast", **{**TINY, "widths": (8, 8, 16, 16)}))
    path = save_torch_model(model, tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "pointkd-torch/1" and raw["seeded_topk"] is False
    assert not any("running_var" in k for k in raw["state_dict"])  # BN folded away
    runner = TorchRunner(path, "cpu", graphs=False)
    ref = reference_model(model)
    for b in (1, 5):
        x = _clouds(b, seed=b)
        with torch.no_grad():
            want = ref(x).numpy()
        np.testing.assert_allclose(runner(x.numpy()), want, atol=1e-5)
    logits, graphs = runner.logits_and_graphs(x[:2].numpy())
    with torch.no_grad():
        own = ref.forward_features(x[:2])
    np.testing.assert_allclose(logits, own.logits.numpy(), atol=1e-5)
    built = [own.graphs[layer] for layer in range(4) if layer == 0 or model.config.builds_graph(layer)]
    assert len(graphs) == len(built) == 3  # the last layer reuses the third graph
    for got, want in zip(graphs, built, strict=True):
        np.testing.assert_array_equal(np.sort(got, -1), want.sort(-1).values.numpy())
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a pointkd torch model file"):
        load_torch_model(tmp_path / "other.pt")


def test_parity_on_torch_graphs_passes_exact_and_catches_wrong_models(tmp_path):
    model = _randomise_bn(create_model("dgcnn_student", **TINY))
    ref = reference_model(model)
    x = _clouds(6).numpy()
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    runner = TorchRunner(save_torch_model(model, tmp_path / "m.pt"), "cpu", graphs=False)
    ok = check_parity(ref, runner.logits_and_graphs, x, want, runner(x))
    assert ok.ok and ok.off_clouds == 0 and ok.max_abs_logit_diff <= 1e-5
    with torch.no_grad():
        model.head[-1].bias[0] += 0.5
    wrong = TorchRunner(save_torch_model(model, tmp_path / "wrong.pt"), "cpu", graphs=False)
    bad = check_parity(ref, wrong.logits_and_graphs, x, want, wrong(x))
    assert not bad.ok and bad.off_clouds == 6 and "exported computation is wrong" in bad.reason

    def shuffled_graphs(cloud: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """A runtime that computes the right function on graphs that are not the k nearest."""
        with torch.no_grad():
            graphs = [g.flip(1) for g in ref.forward_features(torch.from_numpy(cloud)).graphs]
            logits = ref.forward_features(torch.from_numpy(cloud), graphs=graphs).logits.numpy()
        return logits, [g.numpy() for g in graphs]

    got = np.concatenate([shuffled_graphs(x[i : i + 1])[0] for i in range(len(x))])
    knn_wrong = check_parity(ref, shuffled_graphs, x, want, got)
    assert not knn_wrong.ok and knn_wrong.max_diff_same_graphs <= 1e-5 and "kNN is wrong" in knn_wrong.reason


def test_compile_torch_cuda_checked_on_cpu(tiny_checkpoint, tmp_path):
    """The torch-cuda compile path on the CPU (device="cpu": eager only), manifest and model file round trip."""
    from pointkd.data import fixed_subset, load_modelnet40
    from pointkd.train import ClassificationReport

    out = tmp_path / "tc"
    said: list[str] = []
    opts = CompileOptions("torch-cuda", data="synthetic", device="cpu", log=said.append)
    manifest = compile_checkpoint(tiny_checkpoint, out, opts)
    on_disk = read_manifest(out)
    assert on_disk["artifact_format"] == "torch-cuda" and on_disk["model_file"] == "model.pt"
    assert set(on_disk["files"]) == {"model.pt"} and on_disk["opset"] is None
    assert on_disk["parity"]["ok"] and on_disk["parity"]["clouds"] == 128
    assert on_disk["runtime"] == {"device": "cpu", "seeded_topk": False, "cuda_graphs": None}
    assert on_disk["input"]["num_points"] == 64 and on_disk["accuracy"] == manifest["accuracy"]
    assert any(line.startswith("torch eager on cpu: max |Δlogit|") for line in said)
    data = load_modelnet40("synthetic", num_points=64)
    clouds = fixed_subset(data.test_x, 64).numpy()
    logits = run_in_batches(TorchRunner(out / "model.pt", "cpu", graphs=False), clouds)
    oa = ClassificationReport.from_predictions(torch.from_numpy(logits.argmax(1)), data.test_y, data.num_classes).oa
    assert oa == pytest.approx(on_disk["accuracy"]["oa"])
    assert oa == pytest.approx(on_disk["accuracy"]["reference"]["oa"], abs=0.02)
    said.clear()
    compile_cached(tiny_checkpoint, out, opts)
    assert any("reusing" in line for line in said)


@NO_CUDA
def test_torch_cuda_explains_why_it_cannot_run_without_cuda(tiny_checkpoint, tmp_path, capsys):
    args = [
        "compile",
        str(tiny_checkpoint),
        "--format",
        "torch-cuda",
        "--data",
        "synthetic",
        "--out",
        str(tmp_path / "t"),
    ]
    assert main(args) == 2
    assert "cannot build torch-cuda here: no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
    path = save_torch_model(create_model("dgcnn_student", **TINY), tmp_path / "model.pt")
    for call in (lambda: open_runner(path, "torch-cuda"), lambda: open_runner(path, "torch-cuda-graphs")):
        with pytest.raises(CudaUnavailable, match="torch-cuda: no CUDA device here"):
            call()
    with pytest.raises(RuntimeUnavailable, match="CUDA graphs need a CUDA device"):
        TorchRunner(path, "cpu", graphs=True)


def test_make_session_refuses_an_unknown_device():
    with pytest.raises(ValueError, match="device must be one of"):
        make_session("a/model.onnx", device="tpu")


def test_the_export_prints_no_third_party_warnings(tmp_path, capfd, recwarn):
    from pointkd.export.onnx_export import export_onnx
    from pointkd.models import create_model

    model = create_model("dgcnn_student", widths=[8, 16], mlp=[16], k=4).eval()
    export_onnx(model, tmp_path / "m.onnx", num_points=32)
    out, err = capfd.readouterr()
    assert "torchvision" not in out + err and "LeafSpec" not in out + err
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]
