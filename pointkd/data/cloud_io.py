"""Read one point cloud (or mesh, sampled to points) from a file or from in-memory bytes.

Formats, by suffix: ``.npy`` (``[P, >=3]``), ``.txt``/``.xyz``/``.pts`` (comma- or whitespace-separated,
``>=3`` columns, e.g. ModelNet40 ``x,y,z,nx,ny,nz``), ``.ply`` (ascii or binary) and ``.pcd`` (ascii, binary,
binary_compressed) and ``.off`` meshes (points sampled uniformly by area with open3d). Only xyz is kept; every
failure is a :class:`DataError` naming the file.

The readers are strict and bounded, since the server feeds them uploads: every header is checked against the body's
length (and against ``max_points``) before anything is allocated, a short row or non-numeric token is an error (never
a zero- or NaN-filled value), and no untrusted byte reaches a native reader unchecked (open3d only samples meshes
whose vertices and faces were parsed and checked here).
"""

from __future__ import annotations

import io
import os
import re
import threading
from pathlib import Path

import numpy as np

from .pcd_reader import read_pcd_points
from .ply_reader import read_ply_vertices
from .splits import DataError
from .text_rows import numeric_rows

TEXT_SUFFIXES = (".txt", ".xyz", ".pts")
CLOUD_SUFFIXES = (".npy", *TEXT_SUFFIXES, ".ply", ".pcd")
MESH_SUFFIXES = (".off",)
SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES

_OFF_HEADER = re.compile(r"^\s*OFF(?=\s|\d|-|$)(.*)$")
_sample_lock = threading.Lock()


def read_cloud(path: str | os.PathLike, num_points_for_mesh: int = 1024, seed: int = 0) -> np.ndarray:
    """Points ``[P, 3]`` float32 from ``path``; a ``.off`` mesh gives ``num_points_for_mesh`` points sampled
    uniformly by area, deterministic in ``seed``."""
    path = Path(path)
    suffix = _check_suffix(path.suffix, str(path))
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    return _read(data, suffix, str(path), num_points_for_mesh, seed, None)


def read_cloud_bytes(
    data: bytes,
    suffix: str,
    num_points_for_mesh: int = 1024,
    seed: int = 0,
    name: str = "<upload>",
    max_points: int | None = None,
) -> np.ndarray:
    """As :func:`read_cloud`, from a file's bytes; ``suffix`` (``".ply"`` or ``"ply"``) gives the format,
    ``name`` labels error messages, and a file declaring more than ``max_points`` points (or mesh vertices) is
    refused before its points are read."""
    suffix = _check_suffix(suffix if suffix.startswith(".") else f".{suffix}", name)
    return _read(bytes(data), suffix, name, num_points_for_mesh, seed, max_points)


def _check_suffix(suffix: str, label: str) -> str:
    suffix = suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{label}: unsupported file type {suffix or '(none)'!r}; expected one of {SUFFIXES}")
    return suffix


def _read(data: bytes, suffix: str, label: str, num_points_for_mesh: int, seed: int, max_points: int | None):
    if not data:
        raise DataError(f"{label}: file is empty")
    if suffix == ".npy":
        points = _parse_npy(data, label, max_points)
    elif suffix in TEXT_SUFFIXES:
        points = _parse_text(data, label, max_points)
    elif suffix == ".off":
        vertices, triangles = _parse_off(data, label, max_points)
        points = _sample_mesh(vertices, triangles, num_points_for_mesh, seed, label)
    elif suffix == ".ply":
        points = read_ply_vertices(data, label, max_points)
    else:
        points = read_pcd_points(data, label, max_points)
    return _finish(points, label)


def _finish(points: np.ndarray, label: str) -> np.ndarray:
    if points.ndim != 2 or points.shape[1] < 3:
        raise DataError(f"{label}: expected [P, >=3] values, got shape {points.shape}")
    if points.shape[0] == 0:
        raise DataError(f"{label}: cloud has no points")
    xyz = points[:, :3]
    if not np.isfinite(xyz).all():
        bad = int((~np.isfinite(xyz).all(axis=1)).sum())
        raise DataError(f"{label}: {bad} of {xyz.shape[0]} points hold NaN or Inf")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(xyz, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out).all(axis=1)).sum())
        raise DataError(
            f"{label}: {bad} of {out.shape[0]} points overflow float32 (|value| > 3.4e38 would be NaN or Inf)"
        )
    return out


NPY_KINDS = "fiu"  # real floats, signed and unsigned integers: no bool, complex, times, strings or objects


def _parse_npy(data: bytes, label: str, max_points: int | None) -> np.ndarray:
    """The array of a .npy, its header checked against the body before anything is allocated (``np.load`` would
    allocate the header's shape first); never unpickles."""
    if not data.startswith(b"\x93NUMPY"):
        raise DataError(f"{label}: not a .npy file (no NumPy magic header)")
    fmt = np.lib.format
    stream = io.BytesIO(data)
    try:
        version = fmt.read_magic(stream)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except Exception as e:  # numpy's header parser (literal_eval, tokenize) fails in many ways on garbage
        raise DataError(f"{label}: not a readable .npy ({type(e).__name__}: {e})") from e
    if dtype.kind not in NPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{label}: .npy must hold a real numeric [P, >=3] array, got dtype {dtype}")
    if len(shape) != 2 or shape[1] < 3:
        raise DataError(f"{label}: expected [P, >=3] values, got shape {tuple(shape)}")
    if max_points is not None and shape[0] > max_points:
        raise DataError(f"{label}: .npy holds {shape[0]} points; this reader takes at most {max_points}")
    need = shape[0] * shape[1] * dtype.itemsize
    if len(data) - stream.tell() != need:
        raise DataError(
            f"{label}: not a readable .npy: shape {tuple(shape)} needs {need} data bytes, file has "
            f"{len(data) - stream.tell()}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=shape[0] * shape[1], offset=stream.tell())
    return flat.reshape(shape, order="F" if fortran else "C")


def _parse_text(data: bytes, label: str, max_points: int | None) -> np.ndarray:
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as some Windows tools write, is not a value
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not a text point file ({e})") from e
    rows = [
        s for s in (ln.strip() for ln in text.replace(",", " ").splitlines()) if s and not s.startswith(("#", "//"))
    ]
    if len(rows) > 1 and rows[0] == str(len(rows) - 1):
        rows = rows[1:]  # a point-count header line
    if max_points is not None and len(rows) > max_points:
        raise DataError(f"{label}: {len(rows)} rows; this reader takes at most {max_points} points")
    ncols = len(rows[0].split()) if rows else 0
    if rows and ncols < 3:
        raise DataError(f"{label}: expected >=3 columns (x y z ...), got {ncols}")
    return numeric_rows(rows, label)


def _parse_off(data: bytes, label: str, max_points: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` float64 and triangles ``[T, 3]`` int32 (polygons fan-triangulated).

    Parsed here rather than by open3d: open3d rejects the header glued to the counts (``OFF490 518 0``) that
    many ModelNet files have, and returns an empty or partial mesh on a corrupt file without raising."""
    lines, body, nv, nf = _off_rows(data, label, max_points)
    vertices = _off_vertices(lines[body : body + nv], nv, label)
    if nf == 0:
        raise DataError(f"{label}: OFF mesh has no faces to sample points from")
    return vertices, _off_triangles(lines[body + nv : body + nv + nf], nf, nv, label)


def _off_rows(data: bytes, label: str, max_points: int | None) -> tuple[list[str], int, int, int]:
    """The non-empty rows of an OFF file without comments, the index of its first vertex row, and its vertex and
    face counts (checked against the rows there are and ``max_points``)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not an ascii OFF file ({e})") from e
    if "#" in text:
        text = "\n".join(ln.split("#", 1)[0] for ln in text.splitlines())
    lines = [ln for ln in (raw.strip() for raw in text.splitlines()) if ln]
    match = _OFF_HEADER.match(lines[0]) if lines else None
    if match is None:
        head = lines[0][:40] if lines else ""
        raise DataError(f"{label}: not an OFF file (first line {head!r}, expected 'OFF')")
    rest = match.group(1).split()
    body = 1
    if not rest:
        rest = lines[1].split() if len(lines) > 1 else []
        body = 2
    try:
        nv, nf = int(rest[0]), int(rest[1])
    except (IndexError, ValueError) as e:
        raise DataError(f"{label}: bad OFF counts line {' '.join(rest)!r} (expected 'V F E')") from e
    if nv < 0 or nf < 0:
        raise DataError(f"{label}: negative OFF counts {nv} {nf}")
    if max_points is not None and nv > max_points:
        raise DataError(f"{label}: OFF declares {nv} vertices; this reader takes at most {max_points}")
    if len(lines) < body + nv + nf:
        raise DataError(
            f"{label}: truncated OFF: header says {nv} vertices + {nf} faces, file has {len(lines) - body} rows"
        )
    return lines, body, nv, nf


def _off_vertices(vlines: list[str], nv: int, label: str) -> np.ndarray:
    """``[nv, 3]`` float64 from the vertex rows (values past the third ignored)."""
    try:
        flat = " ".join(vlines).split()
        if len(flat) == 3 * nv:
            vertices = np.array(flat, dtype=np.float64).reshape(nv, 3)
        else:
            vertices = np.array([ln.split()[:3] for ln in vlines], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{label}: bad OFF vertex row ({e})") from e
    if vertices.shape != (nv, 3):
        raise DataError(f"{label}: OFF vertex rows must have >=3 values")
    return vertices


def _off_triangles(flines: list[str], nf: int, nv: int, label: str) -> np.ndarray:
    """``[T, 3]`` int32 vertex indices from the face rows, polygons fan-triangulated, every index in ``0..nv-1``."""
    try:
        flat = " ".join(flines).split()
        rows = np.array(flat, dtype=np.int64).reshape(nf, 4) if len(flat) == 4 * nf else None
        if rows is not None and (rows[:, 0] == 3).all():
            triangles = rows[:, 1:]
        else:
            tris: list[list[int]] = []
            for ln in flines:
                vals = [int(v) for v in ln.split()]
                k, idx = vals[0], vals[1 : 1 + vals[0]]
                if k < 3 or len(idx) < k:
                    raise ValueError(f"{ln!r} needs a count >= 3 and that many indices")
                tris.extend([idx[0], idx[j], idx[j + 1]] for j in range(1, k - 1))
            triangles = np.array(tris, dtype=np.int64).reshape(-1, 3)
    except ValueError as e:
        raise DataError(f"{label}: bad OFF face row ({e})") from e
    if triangles.size and (triangles.min() < 0 or triangles.max() >= nv):
        raise DataError(f"{label}: OFF face index out of range 0..{nv - 1}")
    return triangles.astype(np.int32)


def _sample_mesh(vertices: np.ndarray, triangles: np.ndarray, num_points: int, seed: int, label: str) -> np.ndarray:
    import open3d as o3d

    if num_points <= 0:
        raise DataError(f"{label}: num_points_for_mesh must be positive, got {num_points}")
    if not np.isfinite(vertices).all():
        raise DataError(f"{label}: mesh vertices hold NaN or Inf")
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    if not np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() > 0:
        raise DataError(f"{label}: mesh has zero surface area")
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(triangles))
    with _sample_lock:  # open3d samples from one global RNG
        o3d.utility.random.seed(int(seed) & 0x7FFFFFFF)
        cloud = mesh.sample_points_uniformly(number_of_points=num_points)
    return np.asarray(cloud.points)
