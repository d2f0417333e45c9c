"""Every ModelNet40 distribution format, written here in miniature, loads the right points, labels, names."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import open3d as o3d
import pytest
import torch

from pointkd.data import folder_tree, off_tree
from pointkd.data.cloud_io import read_cloud, read_cloud_bytes
from pointkd.data.folder_tree import load_folder_tree
from pointkd.data.hdf5 import load_hdf5
from pointkd.data.modelnet40 import detect_format, load_modelnet40
from pointkd.data.off_tree import load_off_tree
from pointkd.data.resample import normalize_unit_sphere, resample
from pointkd.data.splits import DataError, PointCloudSplits, name_seed, y_up_to_z_up

ATOL = 1e-5


def make_cloud(n: int = 100, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, 3)) * [1.0, 2.0, 0.5]).astype(np.float32)


def _o3d_cloud(points: np.ndarray) -> o3d.geometry.PointCloud:
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))


def write_npy(path: Path, pts: np.ndarray) -> None:
    np.save(path, pts)


def write_npy6(path: Path, pts: np.ndarray) -> None:
    np.save(path, np.concatenate([pts, np.ones_like(pts)], axis=1))


def write_txt_normals(path: Path, pts: np.ndarray) -> None:
    np.savetxt(path, np.concatenate([pts, -pts], axis=1), fmt="%.8f", delimiter=",")


def write_xyz(path: Path, pts: np.ndarray) -> None:
    np.savetxt(path, pts, fmt="%.8f")


def write_pts_counted(path: Path, pts: np.ndarray) -> None:
    np.savetxt(path, pts, fmt="%.8f", header=str(len(pts)), comments="")


def write_ply_binary(path: Path, pts: np.ndarray) -> None:
    assert o3d.io.write_point_cloud(str(path), _o3d_cloud(pts), write_ascii=False)


def write_ply_ascii(path: Path, pts: np.ndarray) -> None:
    assert o3d.io.write_point_cloud(str(path), _o3d_cloud(pts), write_ascii=True)


def write_ply_float32_manual(path: Path, pts: np.ndarray) -> None:
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nend_header\n"
    )
    rec = np.zeros(len(pts), dtype=[("xyz", "<f4", 3), ("red", "u1")])
    rec["xyz"] = pts
    path.write_bytes(header.encode() + rec.tobytes())


def write_pcd_ascii(path: Path, pts: np.ndarray) -> None:
    assert o3d.io.write_point_cloud(str(path), _o3d_cloud(pts), write_ascii=True)


def write_pcd_binary(path: Path, pts: np.ndarray) -> None:
    assert o3d.io.write_point_cloud(str(path), _o3d_cloud(pts), write_ascii=False)


WRITERS: dict[str, tuple[str, Callable[[Path, np.ndarray], None]]] = {
    "npy": (".npy", write_npy),
    "npy6": (".npy", write_npy6),
    "txt_normals": (".txt", write_txt_normals),
    "xyz": (".xyz", write_xyz),
    "pts_counted": (".pts", write_pts_counted),
    "ply_binary": (".ply", write_ply_binary),
    "ply_ascii": (".ply", write_ply_ascii),
    "ply_float32": (".ply", write_ply_float32_manual),
    "pcd_ascii": (".pcd", write_pcd_ascii),
    "pcd_binary": (".pcd", write_pcd_binary),
}


def box_mesh(hx: float, hy: float, hz: float, quads: bool = False) -> tuple[np.ndarray, list[list[int]]]:
    """A box centred at 0 with half sides ``hx, hy, hz``: 8 vertices, 6 quads or 12 triangles."""
    verts = np.array([[sx * hx, sy * hy, sz * hz] for sx, sy, sz in itertools.product((-1, 1), repeat=3)])
    faces = []
    for axis in range(3):
        b, c = (a for a in range(3) if a != axis)
        for side in (0, 1):
            quad = []
            for ub, uc in ((0, 0), (0, 1), (1, 1), (1, 0)):
                bits = [0, 0, 0]
                bits[axis], bits[b], bits[c] = side, ub, uc
                quad.append(bits[0] * 4 + bits[1] * 2 + bits[2])
            faces += [quad] if quads else [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
    return verts, faces


TETRA = (
    np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float),
    [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
)


def off_text(verts: np.ndarray, faces: list[list[int]], glued: bool = False) -> str:
    head = f"OFF{len(verts)} {len(faces)} 0\n" if glued else f"OFF\n{len(verts)} {len(faces)} 0\n"
    body = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts)
    return head + body + "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in faces)


def write_off(path: Path, verts: np.ndarray, faces: list[list[int]], glued: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(off_text(verts, faces, glued))
    return path


def assert_splits_equal(a: PointCloudSplits, b: PointCloudSplits, atol: float = 0.0) -> None:
    for split in ("train", "test"):
        xa, ya = a.split(split)
        xb, yb = b.split(split)
        assert torch.allclose(xa, xb, atol=atol, rtol=0), split
        assert torch.equal(ya, yb)
    assert a.classes == b.classes
    assert (a.train_names, a.test_names) == (b.train_names, b.test_names)


def assert_unit_sphere(x: torch.Tensor) -> None:
    assert torch.allclose(x.mean(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.norm(dim=-1).amax(dim=1), torch.ones(x.shape[0]), atol=1e-5)


# ---------------------------------------------------------------- read_cloud


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_same_cloud_in_every_format_reads_the_same(tmp_path: Path, fmt: str) -> None:
    pts = make_cloud()
    suffix, writer = WRITERS[fmt]
    path = tmp_path / f"cloud{suffix}"
    writer(path, pts)
    got = read_cloud(path)
    assert got.dtype == np.float32 and got.shape == (100, 3)
    np.testing.assert_allclose(got, pts, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(read_cloud_bytes(path.read_bytes(), suffix), got)
    np.testing.assert_array_equal(read_cloud_bytes(path.read_bytes(), suffix.lstrip(".").upper()), got)


def test_ply_mesh_reads_its_vertices(tmp_path: Path) -> None:
    verts, faces = TETRA
    rows = "".join(f"{x} {y} {z}\n" for x, y, z in verts) + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces)
    header = (
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 4\nproperty list uchar int vertex_indices\nend_header\n"
    )
    (tmp_path / "tetra.ply").write_text(header + rows)
    np.testing.assert_array_equal(read_cloud(tmp_path / "tetra.ply"), verts.astype(np.float32))


@pytest.mark.parametrize(("glued", "quads"), [(False, False), (True, False), (False, True)])
def test_off_samples_lie_on_the_cube_surface(tmp_path: Path, glued: bool, quads: bool) -> None:
    path = write_off(tmp_path / "cube.off", *box_mesh(0.5, 0.5, 0.5, quads=quads), glued=glued)
    pts = read_cloud(path, num_points_for_mesh=600, seed=3)
    assert pts.shape == (600, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(np.abs(pts).max(axis=1), 0.5, atol=1e-6)
    face = np.abs(pts).argmax(axis=1) * 2 + (pts[np.arange(600), np.abs(pts).argmax(axis=1)] > 0)
    counts = np.bincount(face, minlength=6)
    assert counts.min() > 50, counts  # every face gets ~100 of 600


def test_off_sampling_is_uniform_by_area(tmp_path: Path) -> None:
    path = write_off(tmp_path / "slab.off", *box_mesh(2.0, 1.0, 1.0))
    pts = read_cloud(path, num_points_for_mesh=2000, seed=0)
    on_x = np.isclose(np.abs(pts[:, 0]), 2.0, atol=1e-6)
    on_other = np.isclose(np.abs(pts[:, 1]), 1.0, atol=1e-6) | np.isclose(np.abs(pts[:, 2]), 1.0, atol=1e-6)
    assert (on_x | on_other).all()
    assert 0.16 < on_x.mean() < 0.24  # the two x faces hold 8 of the 40 units of area


def test_off_sampling_is_deterministic_in_seed(tmp_path: Path) -> None:
    path = write_off(tmp_path / "tetra.off", *TETRA)
    a = read_cloud(path, num_points_for_mesh=128, seed=7)
    np.testing.assert_array_equal(a, read_cloud(path, num_points_for_mesh=128, seed=7))
    np.testing.assert_array_equal(a, read_cloud_bytes(path.read_bytes(), ".off", 128, seed=7))
    assert not np.array_equal(a, read_cloud(path, num_points_for_mesh=128, seed=8))
    on_face = np.isclose(a, 0, atol=1e-6).any(axis=1) | np.isclose(a.sum(axis=1), 1, atol=1e-5)
    assert on_face.all() and (a > -1e-6).all()


def _truncate(writer: Callable[[Path, np.ndarray], None], cut: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        writer(path, make_cloud(20))
        path.write_bytes(path.read_bytes()[:-cut])

    return write


def _text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content)


def _npy(arr: np.ndarray) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(_npy_bytes(arr))


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


_tetra_off = off_text(*TETRA)
BAD_FILES: list[tuple[str, Callable[[Path], None], str]] = [
    ("cloud.obj", _text("v 0 0 0\n"), "unsupported file type '.obj'"),
    ("noext", _text("0 0 0\n"), "unsupported file type"),
    ("zero.txt", _text(""), "file is empty"),
    ("blank.txt", _text("\n  \n# only a comment\n"), "no points"),
    ("two_cols.txt", _text("1,2\n3,4\n"), ">=3 columns"),
    ("ragged.xyz", _text("1 2 3\n4 5\n"), "row 2 has 2 columns"),
    ("nan.txt", _text("1 2 3\nnan 1 1\n"), "NaN or Inf"),
    ("words.txt", _text("1 2 3\na b c\n"), "non-numeric"),
    ("binary.txt", lambda p: p.write_bytes(b"\xff\xfe\x00\x01"), "not a text point file"),
    ("empty.npy", _npy(np.zeros((0, 3), np.float32)), "no points"),
    ("two_cols.npy", _npy(np.zeros((5, 2), np.float32)), "expected [P, >=3]"),
    ("flat.npy", _npy(np.zeros(6, np.float32)), "expected [P, >=3]"),
    ("inf.npy", _npy(np.array([[0, 0, np.inf]])), "NaN or Inf"),
    ("huge.npy", _npy(np.array([[0, 0, 1e300]])), "NaN or Inf"),
    ("text.npy", _npy(np.array([["a", "b", "c"]])), "numeric"),
    ("garbage.npy", lambda p: p.write_bytes(b"not numpy at all"), "not a .npy file"),
    ("cut.npy", lambda p: p.write_bytes(_npy_bytes(make_cloud(20))[:-7]), "not a readable .npy"),
    ("garbage.ply", _text("hello\n"), "not a PLY file"),
    ("noend.ply", _text("ply\nformat ascii 1.0\nelement vertex 2\n"), "no 'end_header'"),
    ("cut_binary.ply", _truncate(write_ply_binary, 20), "truncated PLY"),
    ("cut_ascii.ply", _truncate(write_ply_ascii, 60), "truncated PLY"),
    ("nan.ply", lambda p: write_ply_ascii(p, np.array([[0, 0, 0], [np.nan, 1, 1]])), "NaN or Inf"),
    ("garbage.pcd", _text("hello\n"), "not a PCD file"),
    ("cut_ascii.pcd", _truncate(write_pcd_ascii, 60), "truncated PCD"),
    ("cut_binary.pcd", _truncate(write_pcd_binary, 20), "truncated PCD"),
    ("nopoints.pcd", _text("VERSION 0.7\nFIELDS x y z\nDATA ascii\n"), "bad PCD header"),
    ("header.off", _text("PLY\n3 1 0\n"), "not an OFF file"),
    ("counts.off", _text("OFF\nthree 1 0\n"), "bad OFF counts"),
    ("cut.off", _text(_tetra_off.rsplit("\n", 3)[0]), "truncated OFF"),
    ("index.off", _text(_tetra_off.replace("3 1 2 3", "3 1 2 9")), "face index out of range"),
    ("face.off", _text(_tetra_off.replace("3 1 2 3", "3 1 x 3")), "bad OFF face row"),
    ("vertex.off", _text(_tetra_off.replace("1.000000 0.000000 0.000000", "1.0 zero 0")), "bad OFF vertex"),
    ("noface.off", _text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n"), "no faces"),
    ("flat.off", _text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n"), "zero surface area"),
]


@pytest.mark.parametrize(("name", "make", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_raise_data_error_naming_the_file(
    tmp_path: Path, name: str, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError) as info:
        read_cloud(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)
    if path.suffix:
        with pytest.raises(DataError) as info:
            read_cloud_bytes(path.read_bytes(), path.suffix, name="upload-" + name)
        assert "upload-" + name in str(info.value) and message in str(info.value), str(info.value)


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape("missing.ply: file not found")):
        read_cloud(tmp_path / "missing.ply")


# ---------------------------------------------------------------- official .off tree


def make_off_tree(root: Path) -> Path:
    """``box`` (3 train, 1 test; one glued header) and ``pyramid`` (1 train, 1 test)."""
    box = box_mesh(0.5, 1.0, 0.25)
    for i, split in [(1, "train"), (2, "train"), (4, "train"), (3, "test")]:
        write_off(root / "box" / split / f"box_{i:04d}.off", *box, glued=i == 2)
    write_off(root / "pyramid" / "train" / "pyramid_0001.off", *TETRA)
    write_off(root / "pyramid" / "test" / "pyramid_0002.off", *TETRA, glued=True)
    return root


def test_off_tree_samples_labels_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_off_tree(tmp_path / "ModelNet40")
    cache = tmp_path / "cache"
    splits = load_off_tree(root, num_points=64, seed=0, cache_dir=cache, progress=False)
    assert splits.classes == ["box", "pyramid"]
    assert splits.train_x.shape == (4, 64, 3) and splits.test_x.shape == (2, 64, 3)
    assert splits.train_y.tolist() == [0, 0, 0, 1] and splits.test_y.tolist() == [0, 1]
    assert splits.train_names == ["box_0001", "box_0002", "box_0004", "pyramid_0001"]
    assert splits.test_names == ["box_0003", "pyramid_0002"]
    assert splits.source == str(root)
    assert_unit_sphere(splits.train_x)
    path = root / "box" / "train" / "box_0002.off"
    expected = normalize_unit_sphere(read_cloud(path, 64, seed=name_seed("box_0002", 0)))
    np.testing.assert_array_equal(splits.train_x[1].numpy(), expected)
    assert not torch.equal(splits.train_x[0], splits.train_x[1])  # same mesh, per-object seeds

    assert len(list(cache.glob("*.npz"))) == 1 and list(cache.iterdir()) == list(cache.glob("*.npz"))

    def no_sampling(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("sampled instead of loading the cache")

    monkeypatch.setattr(folder_tree, "read_cloud", no_sampling)  # off_tree reads through folder_tree.read_class_tree
    again = load_off_tree(root, num_points=64, seed=0, cache_dir=cache, progress=False)
    assert_splits_equal(splits, again)
    assert again.source == str(root)
    wrapped = load_off_tree(tmp_path, num_points=64, seed=0, cache_dir=cache, progress=False)
    assert_splits_equal(splits, wrapped)  # tmp_path/ModelNet40/<class>/...

    with path.open("a") as f:
        f.write("# edited\n")
    with pytest.raises(AssertionError, match="sampled instead"):
        load_off_tree(root, num_points=64, seed=0, cache_dir=cache, progress=False)
    with pytest.raises(AssertionError, match="sampled instead"):
        load_off_tree(root, num_points=32, seed=0, cache_dir=cache, progress=False)


def test_off_tree_is_deterministic_in_seed(tmp_path: Path) -> None:
    root = make_off_tree(tmp_path / "tree")
    a = load_off_tree(root, num_points=32, seed=1, cache_dir=tmp_path / "c1", progress=False)
    b = load_off_tree(root, num_points=32, seed=1, cache_dir=tmp_path / "c2", progress=False)
    c = load_off_tree(root, num_points=32, seed=2, cache_dir=tmp_path / "c1", progress=False)
    assert_splits_equal(a, b)
    assert not torch.equal(a.train_x, c.train_x)
    assert len(list((tmp_path / "c1").glob("*.npz"))) == 2


def test_off_tree_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "chair" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape("no .off meshes found")):
        load_off_tree(tmp_path / "empty", cache_dir=tmp_path / "c", progress=False)
    root = make_off_tree(tmp_path / "tree")
    for f in (root / "pyramid" / "test").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=re.escape("class 'pyramid' has no .off files in test/")):
        load_off_tree(root, cache_dir=tmp_path / "c", progress=False)
    write_off(root / "pyramid" / "test" / "pyramid_0002.off", *TETRA)
    (root / "pyramid" / "test" / "pyramid_0002.off").write_text("OFF\n4 4 0\n0 0 0\n")
    with pytest.raises(DataError, match=re.escape("pyramid_0002.off: truncated OFF")):
        load_off_tree(root, cache_dir=tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").glob("*"))


# ---------------------------------------------------------------- modelnet40_ply_hdf5_2048

H5_CLASSES = ["airplane", "bathtub", "bed"]
MARK = np.array([0.3, 0.2, -0.1])


def h5_cloud(i: int, p: int = 16) -> np.ndarray:
    """A y-up cloud with centroid 0 whose point 0 is the farthest, ``(0, 2, 0)``, and point 1 is ``MARK``."""
    half = np.random.default_rng(i).uniform(-1, 1, size=(p // 2, 3)) * 0.5
    half[0] = [0, 2, 0]
    half[1] = MARK
    return np.concatenate([half, -half]).astype(np.float32)


def write_h5(path: Path, data: np.ndarray, label: np.ndarray, **extra: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        for key, arr in {"data": data, "label": label, **extra}.items():
            f.create_dataset(key, data=arr)


def make_h5_dir(folder: Path) -> Path:
    """train2 (3 clouds, with id2file json), train10 (2 clouds, no json), test0 (2 clouds, json)."""
    folder.mkdir(parents=True)
    (folder / "shape_names.txt").write_text("\n".join(H5_CLASSES) + "\n")
    spec = {
        ("train", 2): [(0, "airplane_0001"), (2, "bed_0004"), (1, "bathtub_0002")],
        ("train", 10): [(1, None), (0, None)],
        ("test", 0): [(2, "bed_0100"), (0, "airplane_0101")],
    }
    k = 0
    for (split, idx), items in spec.items():
        data = np.stack([h5_cloud(k + j) for j in range(len(items))])
        k += len(items)
        label = np.array([[c] for c, _ in items], dtype=np.uint8)
        write_h5(folder / f"ply_data_{split}{idx}.h5", data, label)
        if items[0][1] is not None:
            names = [f"{H5_CLASSES[c]}/{n}.ply" for c, n in items]
            (folder / f"ply_data_{split}_{idx}_id2file.json").write_text(json.dumps(names))
    return folder


def test_hdf5_order_labels_names_and_z_up(tmp_path: Path) -> None:
    folder = make_h5_dir(tmp_path / "modelnet40_ply_hdf5_2048")
    splits = load_hdf5(folder, num_points=16)
    assert splits.classes == H5_CLASSES
    assert splits.train_y.tolist() == [0, 2, 1, 1, 0] and splits.test_y.tolist() == [2, 0]
    assert splits.train_names == ["airplane_0001", "bed_0004", "bathtub_0002", "train_00003", "train_00004"]
    assert splits.test_names == ["bed_0100", "airplane_0101"]
    assert splits.train_x.shape == (5, 16, 3) and splits.train_x.dtype == torch.float32
    assert_unit_sphere(splits.train_x)
    x = splits.train_x.numpy()
    np.testing.assert_allclose(x[:, 0], np.tile([0, 0, 1], (5, 1)), atol=1e-6)  # y-up (0, 2, 0) -> z-up
    np.testing.assert_allclose(x[:, 1], np.tile([0.15, 0.05, 0.1], (5, 1)), atol=1e-6)  # (x, -z, y) / 2
    np.testing.assert_allclose(splits.train_x[3].numpy(), h5_cloud(3)[:, [0, 2, 1]] * [1, -1, 1] / 2, atol=1e-6)

    y_up = load_hdf5(folder, num_points=16, z_up=False)
    np.testing.assert_allclose(y_up.train_x[:, 0].numpy(), np.tile([0, 1, 0], (5, 1)), atol=1e-6)


def test_hdf5_resamples_by_name(tmp_path: Path) -> None:
    folder = make_h5_dir(tmp_path / "h5")
    splits = load_hdf5(folder, num_points=8)
    assert splits.train_x.shape == (5, 8, 3) and splits.test_x.shape == (2, 8, 3)
    for i, name in [(1, "bed_0004"), (4, "train_00004")]:
        sub = resample(h5_cloud(i), 8, name_seed(name, 0))
        np.testing.assert_allclose(splits.train_x[i].numpy(), normalize_unit_sphere(y_up_to_z_up(sub)), atol=1e-6)
    assert_splits_equal(splits, load_hdf5(folder, num_points=8))
    assert not torch.equal(splits.train_x, load_hdf5(folder, num_points=8, seed=1).train_x)
    assert load_hdf5(folder, num_points=40).train_x.shape == (5, 40, 3)


def test_hdf5_root_can_be_folder_parent_or_file(tmp_path: Path) -> None:
    folder = make_h5_dir(tmp_path / "modelnet40_ply_hdf5_2048")
    ref = load_hdf5(folder, num_points=16)
    assert_splits_equal(ref, load_hdf5(tmp_path, num_points=16))
    assert_splits_equal(ref, load_hdf5(folder / "ply_data_test0.h5", num_points=16))


def _rename_h5_key(path: Path, old: str, new: str) -> None:
    with h5py.File(path, "a") as f:
        f.move(old, new)


def _h5_case(tmp_path: Path, breaker: Callable[[Path], None]) -> Path:
    folder = make_h5_dir(tmp_path / "h5")
    breaker(folder)
    return folder


H5_ERRORS: list[tuple[str, Callable[[Path], None], str]] = [
    ("no_names", lambda d: (d / "shape_names.txt").unlink(), "shape_names.txt is missing"),
    ("no_test", lambda d: (d / "ply_data_test0.h5").unlink(), "no ply_data_test*.h5 files"),
    (
        "lengths",
        lambda d: write_h5(d / "ply_data_test0.h5", np.zeros((2, 16, 3), np.float32), np.zeros((3, 1), np.uint8)),
        "does not fit 'data'",
    ),
    (
        "keys",
        lambda d: _rename_h5_key(d / "ply_data_train10.h5", "label", "labels"),
        "missing datasets ['label']",
    ),
    ("garbage", lambda d: (d / "ply_data_train10.h5").write_bytes(b"not hdf5"), "not a readable hdf5"),
    (
        "label_range",
        lambda d: write_h5(d / "ply_data_test0.h5", np.zeros((2, 16, 3), np.float32), np.full((2, 1), 3)),
        "outside the 3 classes",
    ),
    (
        "nan",
        lambda d: write_h5(d / "ply_data_test0.h5", np.full((2, 16, 3), np.nan, np.float32), np.zeros((2, 1))),
        "NaN or Inf",
    ),
    (
        "json",
        lambda d: (d / "ply_data_test_0_id2file.json").write_text('["a/a_1.ply"]'),
        "list of 2 file names",
    ),
    ("json_bad", lambda d: (d / "ply_data_test_0_id2file.json").write_text("[oops"), "not readable json"),
]


@pytest.mark.parametrize(("case", "breaker", "message"), H5_ERRORS, ids=[e[0] for e in H5_ERRORS])
def test_hdf5_errors(tmp_path: Path, case: str, breaker: Callable[[Path], None], message: str) -> None:
    folder = _h5_case(tmp_path, breaker)
    with pytest.raises(DataError) as info:
        load_hdf5(folder, num_points=16)
    assert message in str(info.value), str(info.value)


def test_hdf5_no_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no ply_data_\{train,test\}\*.h5 files found"):
        load_hdf5(tmp_path)


# ---------------------------------------------------------------- folder tree of clouds


def test_folder_tree_mixed_formats(tmp_path: Path) -> None:
    layout = {
        ("chair", "train"): ["npy", "ply_binary", "txt_normals"],
        ("chair", "test"): ["pcd_ascii"],
        ("bowl", "train"): ["ply_ascii", "xyz"],
        ("bowl", "test"): ["pcd_binary", "npy6"],
    }
    k = 0
    for (cls, split), fmts in layout.items():
        (tmp_path / cls / split).mkdir(parents=True)
        for fmt in fmts:
            suffix, writer = WRITERS[fmt]
            writer(tmp_path / cls / split / f"{cls}_{k:04d}{suffix}", make_cloud(50 + 10 * k, seed=k))
            k += 1
    (tmp_path / "chair" / "train" / "notes.md").write_text("ignored")
    splits = load_folder_tree(tmp_path, num_points=64, progress=False)
    assert splits.classes == ["bowl", "chair"]
    assert splits.train_names == ["bowl_0004", "bowl_0005", "chair_0000", "chair_0001", "chair_0002"]
    assert splits.test_names == ["bowl_0006", "bowl_0007", "chair_0003"]
    assert splits.train_y.tolist() == [0, 0, 1, 1, 1] and splits.test_y.tolist() == [0, 0, 1]
    assert splits.train_x.shape == (5, 64, 3)
    assert_unit_sphere(torch.cat([splits.train_x, splits.test_x]))
    expected = normalize_unit_sphere(resample(make_cloud(50, seed=0), 64, name_seed("chair_0000", 0)))
    np.testing.assert_allclose(splits.train_x[2].numpy(), expected, atol=ATOL)


def test_folder_tree_same_clouds_in_any_format_load_the_same(tmp_path: Path) -> None:
    clouds = {"train": make_cloud(100, seed=1), "test": make_cloud(30, seed=2)}
    loaded = {}
    for fmt, (suffix, writer) in WRITERS.items():
        for split, pts in clouds.items():
            (tmp_path / fmt / "thing" / split).mkdir(parents=True)
            writer(tmp_path / fmt / "thing" / split / f"thing_{split}{suffix}", pts)
        loaded[fmt] = load_folder_tree(tmp_path / fmt, num_points=64, seed=5, progress=False)
    for fmt, splits in loaded.items():
        assert_splits_equal(loaded["npy"], splits, atol=ATOL)
        assert splits.train_names == ["thing_train"], fmt


def test_folder_tree_errors(tmp_path: Path) -> None:
    (tmp_path / "a" / "train").mkdir(parents=True)
    (tmp_path / "a" / "train" / "x.obj").write_text("v 0 0 0\n")
    with pytest.raises(DataError, match=re.escape("no .npy/.txt/.xyz/.pts/.ply/.pcd files found")):
        load_folder_tree(tmp_path, progress=False)
    with pytest.raises(DataError, match="not a folder"):
        load_folder_tree(tmp_path / "nope", progress=False)
    write_npy(tmp_path / "a" / "train" / "x.npy", make_cloud(10))
    with pytest.raises(DataError, match=r"class 'a' has no \S+ files in test/"):
        load_folder_tree(tmp_path, progress=False)
    (tmp_path / "a" / "test").mkdir()
    (tmp_path / "a" / "test" / "y.txt").write_text("1 2\n")
    with pytest.raises(DataError, match=r"y.txt: expected >=3 columns"):
        load_folder_tree(tmp_path, progress=False)


# ---------------------------------------------------------------- dispatcher


def test_load_modelnet40_dispatches_every_format(tmp_path: Path) -> None:
    off_root = make_off_tree(tmp_path / "off" / "ModelNet40")
    h5_dir = make_h5_dir(tmp_path / "h5" / "modelnet40_ply_hdf5_2048")
    tree = tmp_path / "tree"
    for split, seed in (("train", 0), ("test", 1)):
        (tree / "cup" / split).mkdir(parents=True)
        write_ply_binary(tree / "cup" / split / f"cup_{split}.ply", make_cloud(40, seed))

    cache = tmp_path / "cache"
    assert [detect_format(p) for p in (off_root, tmp_path / "off", h5_dir, h5_dir.parent, tree)] == [
        "off",
        "off",
        "hdf5",
        "hdf5",
        "folder",
    ]
    assert detect_format(h5_dir / "ply_data_train2.h5") == "hdf5"
    off = load_off_tree(off_root, num_points=32, seed=3, cache_dir=cache, progress=False)
    assert_splits_equal(off, load_modelnet40(off_root, num_points=32, seed=3, cache_dir=cache))
    assert_splits_equal(off, load_modelnet40(tmp_path / "off", num_points=32, seed=3, cache_dir=cache))
    h5 = load_hdf5(h5_dir, num_points=8, seed=3)
    for src in (h5_dir, h5_dir.parent, h5_dir / "ply_data_train2.h5"):
        assert_splits_equal(h5, load_modelnet40(src, num_points=8, seed=3))
    folder = load_folder_tree(tree, num_points=32, seed=3, progress=False)
    assert_splits_equal(folder, load_modelnet40(tree, num_points=32, seed=3))
    assert load_modelnet40(str(tree), num_points=32, fmt="folder").classes == ["cup"]


def test_the_data_modules_import_each_other_without_a_circle():
    """Imports inside pointkd.data (at the top or in a function) form no cycle, e.g. modelnet40 <-> off_tree."""
    import ast

    folder = Path(off_tree.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = {m.split(".")[0] for m in found} & {p.stem for p in folder.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    assert not [m for m in graph if m != "__init__" and reaches(m, m, set())]
