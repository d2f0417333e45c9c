"""``pointkd.load`` / ``Model.predict`` and ``pointkd predict``: every input the server reads, the same probabilities
as ``POST /predict`` for the same file, unreadable files reported, and no torch for an ONNX artifact."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pointkd
from pointkd.cli import main
from pointkd.inference import BadCloud, find_clouds

ROOT = Path(__file__).resolve().parents[1]


def write_ply(path: Path, cloud: np.ndarray) -> Path:
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(cloud)}\n"
    head += "property float x\nproperty float y\nproperty float z\nend_header\n"
    path.write_bytes(head.encode() + cloud.astype("<f4").tobytes())
    return path


def write_xyz(path: Path, cloud: np.ndarray) -> Path:
    path.write_text("\n".join(" ".join(f"{v:.9g}" for v in p) for p in cloud) + "\n")
    return path


@pytest.fixture(scope="module")
def model(tiny_artifact):
    return pointkd.load(tiny_artifact, threads=1)


@pytest.fixture(scope="module")
def clouds(tiny_data):
    return [c.numpy().astype(np.float32) for c in tiny_data.test_x[:6]]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, clouds):
    """Six clouds in every format, two levels deep, and a README that is not a cloud."""
    root = tmp_path_factory.mktemp("clouds")
    (root / "sub" / "deeper").mkdir(parents=True)
    write_ply(root / "a.ply", clouds[0])
    write_xyz(root / "b.xyz", clouds[1])
    np.save(root / "sub" / "c.npy", clouds[2])
    write_xyz(root / "sub" / "d.txt", clouds[3])
    write_ply(root / "sub" / "deeper" / "e.ply", clouds[4])
    np.save(root / "sub" / "deeper" / "f.npy", np.concatenate([clouds[5], np.ones_like(clouds[5])], axis=1))
    (root / "README.md").write_text("not a cloud\n")
    return root


def test_predict_takes_a_path_an_array_or_a_list(model, folder, clouds):
    assert model.classes and model.num_points == 64 and model.format == "onnx"
    p = model.predict(folder / "a.ply")
    assert isinstance(p, pointkd.Prediction) and p.source == str(folder / "a.ply") and p.points == len(clouds[0])
    assert p.label in model.classes and abs(p.probabilities.sum() - 1) < 1e-9
    top = p.top(3)
    assert top[0] == (p.label, p.probability) and [q for _, q in top] == sorted((q for _, q in top), reverse=True)
    assert len(p.top(100)) == len(model.classes) and p.as_dict()[p.label] == p.probability
    from_array = model.predict(clouds[0])
    np.testing.assert_allclose(from_array.probabilities, p.probabilities, atol=1e-6)
    assert from_array.source is None
    many = model.predict([folder / "a.ply", clouds[1], str(folder / "sub" / "c.npy")], batch_size=2)
    assert isinstance(many, list) and len(many) == 3
    for got, want in zip(many, [p, model.predict(clouds[1]), model.predict(clouds[2])], strict=True):
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)


def test_predict_refuses_what_the_server_refuses(model, tmp_path):
    with pytest.raises(BadCloud, match="at least 6"):
        model.predict(np.random.default_rng(0).standard_normal((3, 3)))
    with pytest.raises(BadCloud, match=r"\[P, 3\]"):
        model.predict(np.zeros((10, 2)))
    with pytest.raises(BadCloud, match="no extent"):
        model.predict(np.ones((100, 3)))
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 9\nproperty float x\n")
    with pytest.raises(BadCloud, match=r"bad\.ply"):
        model.predict(bad)
    with pytest.raises(FileNotFoundError):
        model.predict(tmp_path / "missing.ply")


def test_a_checkpoint_gives_what_its_artifact_gives(tiny_checkpoint, model, clouds):
    torch_model = pointkd.load(tiny_checkpoint, threads=1)
    assert torch_model.format == "torch" and torch_model.classes == model.classes
    assert torch_model.num_points == model.num_points and torch_model.min_points == model.min_points
    for a, b in zip(torch_model.predict(clouds), model.predict(clouds), strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)


def test_cli_api_and_http_give_the_same_probabilities(model, folder, client, tmp_path):
    out = tmp_path / "rows.jsonl"
    k = len(model.classes)
    assert main(["predict", str(model.path), str(folder / "a.ply"), "--top-k", str(k), "--jsonl", str(out)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    via_cli = {r["class"]: r["probability"] for r in row["top_k"]}
    via_api = model.predict(folder / "a.ply").as_dict()
    r = client.post(f"/predict?top_k={k}", files={"file": ("a.ply", (folder / "a.ply").read_bytes())})
    assert r.status_code == 200, r.text
    via_http = {t["class"]: t["probability"] for t in r.json()["top_k"]}
    assert via_cli.keys() == via_api.keys() == via_http.keys() == set(model.classes)
    for c in model.classes:
        assert abs(via_cli[c] - via_api[c]) < 1e-6 and abs(via_http[c] - via_api[c]) < 1e-6, c
    assert r.json()["points_received"] == row["points"]


def test_find_clouds_walks_folders_and_globs(folder):
    found, missing = find_clouds([folder / "sub", str(folder / "*.ply"), folder / "a.ply", folder / "nope.ply"])
    names = [p.name for p in found]
    assert names == ["c.npy", "d.txt", "e.ply", "f.npy", "a.ply"]  # a.ply once: repeats are dropped
    assert missing == [(str(folder / "nope.ply"), "no such file or folder")]
    everything, _ = find_clouds([str(folder / "**" / "*")])
    assert sorted(p.name for p in everything) == ["a.ply", "b.xyz", "c.npy", "d.txt", "e.ply", "f.npy"]


def test_cli_reports_unreadable_files_and_goes_on(model, folder, tmp_path, capsys):
    broken = tmp_path / "broken.pcd"
    broken.write_bytes(b"VERSION 0.7\nFIELDS x y z\n")
    notes = tmp_path / "notes.md"
    notes.write_text("hello")
    out = tmp_path / "rows.csv"
    args = ["predict", str(model.path), str(folder), str(broken), str(notes), str(tmp_path / "gone"), "--csv", str(out)]
    assert main([*args, "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith(str(folder))]
    assert len(lines) == 6 and all(line.split()[1] in model.classes for line in lines)
    assert f"{broken}: unreadable:" in captured.err and f"{notes}: unreadable:" in captured.err
    assert "no such file or folder" in captured.err
    total = [line for line in captured.out.splitlines() if line.startswith("total")]
    assert total and total[0].split()[1] == "6" and "3 unreadable" in total[0]
    out_lines = captured.out.splitlines()
    table = out_lines[out_lines.index(next(x for x in out_lines if x.split() == ["class", "clouds"])) + 1 : -1]
    assert sum(int(line.split()[1]) for line in table) == 6 and all(x.split()[0] in model.classes for x in table)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 and sum(1 for r in rows if r["error"]) == 3
    good = [r for r in rows if not r["error"]]
    assert all(r["class"] in model.classes and float(r["probability"]) >= float(r["probability_2"]) for r in good)


def test_cli_fails_only_when_nothing_is_classified(model, tmp_path, capsys):
    (tmp_path / "x.xyz").write_text("1 2\n")
    assert main(["predict", str(model.path), str(tmp_path / "x.xyz")]) == 1
    assert "no cloud could be classified" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "no-model"), str(tmp_path / "x.xyz")]) == 2


def test_progress_in_a_log_file_is_plain_lines(model, tmp_path, clouds, capsys):
    for i in range(25):
        write_xyz(tmp_path / f"c{i:02d}.xyz", clouds[i % len(clouds)])
    assert main(["predict", str(model.path), str(tmp_path), "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if line.startswith("predict: ")]
    assert "\r" not in err and 5 <= len(progress) <= 11 and progress[-1].startswith("predict: 25/25 files (100 %)")


def test_load_does_not_import_torch_for_an_onnx_artifact(tiny_artifact, folder):
    code = (
        "import sys, pointkd\n"
        f"m = pointkd.load({str(tiny_artifact)!r}, threads=1)\n"
        f"p = m.predict([{str(folder / 'a.ply')!r}, {str(folder / 'b.xyz')!r}, {str(folder / 'sub' / 'c.npy')!r}])\n"
        "assert len(p) == 3 and p[0].label in m.classes\n"
        "print(sorted(n for n in sys.modules if n == 'torch' or n.startswith('torch.')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
