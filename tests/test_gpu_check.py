"""benchmarks/gpu_check.py on the CPU (--dry-run): the same code path as on the GPU machine, in a Python that can
import torch, numpy and pyyaml but none of pointkd's other dependencies (as on a bare GPU machine), checked against
an independent evaluation of the three committed checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scriptload import load_script

from pointkd.bench import read_report, select_model
from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.data import fixed_subset
from pointkd.data.resample import normalize_unit_sphere
from pointkd.demo import SHIPPED

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
TRAINED = tuple(Path(SHIPPED[role]).stem for role in ("teacher", "student"))
CHECKPOINTS = (*TRAINED, "student_fast_lsp")
# Hides every package but torch, numpy and pyyaml (and the standard library) from the script's interpreter.
BARE = """
import importlib.abc, importlib.util, runpy, sys
HIDDEN = {"onnx", "onnxruntime", "onnxscript", "tensorrt", "open3d", "fastapi", "uvicorn", "tqdm", "h5py",
          "matplotlib", "torch_geometric", "torch_cluster", "scipy", "prometheus_client", "multipart", "httpx",
          "aiohttp", "pandas", "sklearn", "hypothesis"}
class Missing(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (hidden by the test)", name=spec.name)
    def exec_module(self, module):
        pass
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in HIDDEN:
            return importlib.util.spec_from_loader(name, Missing(), origin=None)
        return None
sys.meta_path.insert(0, Hide())
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _gpu_check(monkeypatch):
    return load_script(SCRIPT, "gpu_check", lambda name, module: monkeypatch.setitem(sys.modules, name, module))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    classes = list(load_checkpoint(ROOT / "benchmarks" / "checkpoints" / SHIPPED["student"])["classes"])
    rng = np.random.default_rng(1)
    clouds = normalize_unit_sphere(rng.normal(size=(6, 64, 3)).astype(np.float32))
    labels = rng.integers(0, len(classes), 6)
    np.savez(tmp / "test.npz", test_x=clouds, test_y=labels, classes=np.array(classes))
    env = {**os.environ, "OUT": str(tmp / "OUT"), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", BARE, str(SCRIPT), "--dry-run", "--out", str(tmp / "out"), "--data"]
    proc = subprocess.run([*args, str(tmp / "test.npz")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (folder,) = (tmp / "out").iterdir()
    return folder, tmp, clouds, labels


def test_dry_run_rows_match_an_independent_evaluation(dry_run):
    folder, _, clouds, labels = dry_run
    device, rows = read_report(folder)
    by = {(r.model, r.format): r for r in rows}
    formats = ("torch-cuda", "torch-cuda-graphs", "onnx-cuda", "trt-fp16")
    assert list(by) == [(m, f) for m in CHECKPOINTS for f in formats]
    assert device["versions"]["cuda"] == str(torch.version.cuda)
    for name in CHECKPOINTS:
        model = model_from_checkpoint(ROOT / "benchmarks" / "checkpoints" / f"{name}.pt")
        with torch.no_grad():
            pred = model(fixed_subset(torch.from_numpy(clouds), 48)).argmax(1).numpy()
        row = by[(name, "torch-cuda")]
        assert row.status == "ok", row.reason
        assert row.oa == pytest.approx(float((pred == labels).mean())) and row.points == 48
        assert "top-1 agreement with the torch reference 100.00 %" in row.reason
        assert 0 < row.p50_ms <= row.p95_ms and row.clouds_per_s > 0 and row.threads is None
        assert row.params == model.num_parameters and row.model_name == model_name(name)
        if not torch.cuda.is_available():
            assert "CUDA graphs need a CUDA device" in by[(name, "torch-cuda-graphs")].reason
        assert "onnxruntime is not importable" in by[(name, "onnx-cuda")].reason
        assert "tensorrt package is not importable" in by[(name, "trt-fp16")].reason
    chosen = select_model(rows, budget_ms=1e6).chosen
    assert chosen.format == "torch-cuda" and chosen.oa == max(r.oa for r in rows if r.oa is not None)


def model_name(label: str) -> str:
    return load_checkpoint(ROOT / "benchmarks" / "checkpoints" / f"{label}.pt")["model_name"]


def test_dry_run_times_training_steps_and_copies_to_out(dry_run):
    folder, tmp, _, _ = dry_run
    train = json.loads((folder / "train_step.json").read_text())["rows"]
    assert [(r["model"], r["edgeconv"]) for r in train] == [(m, impl) for m in TRAINED for impl in ("fast", "naive")]
    for r in train:
        assert r["status"] == "ok" and r["ms_p10"] <= r["ms_p50"] <= r["ms_p90"] and r["batch"] == 4
        assert r["clouds_per_s"] == pytest.approx(4 / (r["ms_p50"] / 1000)) and np.isfinite(r["loss"])
    copied = tmp / "OUT" / folder.name
    names = {"bench.json", "bench.md", "train_step.json", "train_step.md"}  # no PNG: matplotlib was hidden
    assert {p.name for p in copied.iterdir()} == names == {p.name for p in folder.iterdir()}
    md = (copied / "bench.md").read_text()
    assert "every row in one process (benchmarks/gpu_check.py) on cpu" in md
    assert f"| {TRAINED[0]} | torch-cuda |" in md  # the shipped teacher


def test_verdict_and_data_fallback(tmp_path, monkeypatch):
    gc = _gpu_check(monkeypatch)
    ref = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3]]
    m = gc.Model("x", tmp_path, None, None, 16, None, np.array([0, 1, 2, 3, 0, 1, 2, 2]), "d", ref, tmp_path)
    same = gc.verdict("torch-cuda", {"logits": ref, "oa": 7 / 8}, m)
    assert same[0] == "ok" and "agreement with the torch reference 100.00 %" in same[1]
    flipped = ref.copy()
    flipped[0] = [0, 1, 0, 0]
    status, note = gc.verdict("torch-cuda", {"logits": flipped, "oa": 6 / 8}, m)
    assert status == "check_failed" and "87.50 %" in note and "reference OA 87.50 %" in note
    np.savez(tmp_path / "d.npz", test_x=np.zeros((2, 8, 3), np.float32), test_y=np.zeros(2), classes=np.array(["a"]))
    clouds, labels, source = gc.eval_clouds(tmp_path / "d.npz", ["b"], 8, gc.DRY)  # other classes: not this data
    assert labels is None and "random" in source and clouds.shape == (gc.DRY.random_clouds, 8, 3)
    assert np.allclose(np.linalg.norm(clouds, axis=-1).max(-1), 1.0)
