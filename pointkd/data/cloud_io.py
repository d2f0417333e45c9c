"""Read one point cloud (or mesh, sampled to points) from a file or from in-memory bytes.

Formats, by suffix: ``.npy`` (``[P, >=3]``), ``.txt``/``.xyz``/``.pts`` (comma- or whitespace-separated,
``>=3`` columns, e.g. ModelNet40 ``x,y,z,nx,ny,nz``), ``.ply``/``.pcd`` (ascii or binary, via open3d) and
``.off`` meshes (points sampled uniformly by area with open3d). Only xyz is kept; every failure is a
:class:`DataError` naming the file.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np

from .splits import DataError

TEXT_SUFFIXES = (".txt", ".xyz", ".pts")
CLOUD_SUFFIXES = (".npy", *TEXT_SUFFIXES, ".ply", ".pcd")
MESH_SUFFIXES = (".off",)
SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES

_PLY_SIZES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip
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
    return _read(data, suffix, str(path), path, num_points_for_mesh, seed)


def read_cloud_bytes(
    data: bytes,
    suffix: str,
    num_points_for_mesh: int = 1024,
    seed: int = 0,
    name: str = "<upload>",
) -> np.ndarray:
    """As :func:`read_cloud`, from a file's bytes; ``suffix`` (``".ply"`` or ``"ply"``) gives the format and
    ``name`` labels error messages."""
    suffix = _check_suffix(suffix if suffix.startswith(".") else f".{suffix}", name)
    return _read(bytes(data), suffix, name, None, num_points_for_mesh, seed)


def _check_suffix(suffix: str, label: str) -> str:
    suffix = suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{label}: unsupported file type {suffix or '(none)'!r}; expected one of {SUFFIXES}")
    return suffix


def _read(data: bytes, suffix: str, label: str, path: Path | None, num_points_for_mesh: int, seed: int) -> np.ndarray:
    if not data:
        raise DataError(f"{label}: file is empty")
    if suffix == ".npy":
        points = _parse_npy(data, label)
    elif suffix in TEXT_SUFFIXES:
        points = _parse_text(data, label)
    elif suffix == ".off":
        vertices, triangles = _parse_off(data, label)
        points = _sample_mesh(vertices, triangles, num_points_for_mesh, seed, label)
    else:
        points = _read_open3d(data, suffix, label, path)
    return _finish(points, label)


def _finish(points: np.ndarray, label: str) -> np.ndarray:
    if points.ndim != 2 or points.shape[1] < 3:
        raise DataError(f"{label}: expected [P, >=3] values, got shape {points.shape}")
    if points.shape[0] == 0:
        raise DataError(f"{label}: cloud has no points")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(points[:, :3], dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out).all(axis=1)).sum())
        raise DataError(f"{label}: {bad} of {out.shape[0]} points hold NaN or Inf (or overflow float32)")
    return out


def _parse_npy(data: bytes, label: str) -> np.ndarray:
    if not data.startswith(b"\x93NUMPY"):
        raise DataError(f"{label}: not a .npy file (no NumPy magic header)")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{label}: not a readable .npy ({type(e).__name__}: {e})") from e
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        kind = f"dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise DataError(f"{label}: .npy must hold a numeric [P, >=3] array, got {kind}")
    return arr


def _parse_text(data: bytes, label: str) -> np.ndarray:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not a text point file ({e})") from e
    rows = []
    for line in text.replace(",", " ").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "//")):
            rows.append(line.split())
    if len(rows) > 1 and len(rows[0]) == 1 and rows[0][0] == str(len(rows) - 1):
        rows = rows[1:]  # a point-count header line
    if not rows:
        raise DataError(f"{label}: cloud has no points")
    ncols = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != ncols:
            raise DataError(f"{label}: row {i + 1} has {len(row)} columns, row 1 has {ncols}")
    if ncols < 3:
        raise DataError(f"{label}: expected >=3 columns (x y z ...), got {ncols}")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{label}: non-numeric value ({e})") from e


def _parse_off(data: bytes, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` float64 and triangles ``[T, 3]`` int32 (polygons fan-triangulated).

    Parsed here rather than by open3d: open3d rejects the header glued to the counts (``OFF490 518 0``) that
    many ModelNet files have, and returns an empty or partial mesh on a corrupt file without raising."""
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
    if len(lines) < body + nv + nf:
        raise DataError(
            f"{label}: truncated OFF: header says {nv} vertices + {nf} faces, file has {len(lines) - body} rows"
        )
    vlines = lines[body : body + nv]
    flines = lines[body + nv : body + nv + nf]
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
    if nf == 0:
        raise DataError(f"{label}: OFF mesh has no faces to sample points from")
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
    return vertices, triangles.astype(np.int32)


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


def _read_open3d(data: bytes, suffix: str, label: str, path: Path | None) -> np.ndarray:
    import open3d as o3d

    if suffix == ".ply":
        _check_ply(data, label)
    else:
        _check_pcd(data, label)
    quiet = o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error)
    if path is not None:
        with quiet:
            cloud = o3d.io.read_point_cloud(str(path), format=suffix[1:])
        return np.asarray(cloud.points)
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with quiet:
            cloud = o3d.io.read_point_cloud(tmp, format=suffix[1:])
        return np.asarray(cloud.points)
    finally:
        os.unlink(tmp)


def _split_header(data: bytes, end: bytes, label: str, kind: str) -> tuple[list[str], bytes]:
    pos = data.find(end)
    if pos < 0:
        raise DataError(f"{label}: not a {kind} file (no '{end.decode().strip()}' header line)")
    stop = data.find(b"\n", pos + len(end))
    stop = len(data) if stop < 0 else stop + 1
    try:
        header = data[:stop].decode("ascii").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: unreadable {kind} header ({e})") from e
    return [ln.strip() for ln in header], data[stop:]


def _count_rows(body: bytes) -> int:
    return sum(1 for ln in body.splitlines() if ln.strip())


def _check_ply(data: bytes, label: str) -> None:
    """Reject a truncated PLY: open3d returns the header's point count with missing rows zero-filled."""
    if not data.startswith(b"ply"):
        raise DataError(f"{label}: not a PLY file (does not start with 'ply')")
    header, body = _split_header(data, b"end_header", label, "PLY")
    fmt, counts, sizes = "", [], []
    try:
        for ln in header:
            words = ln.split()
            if words[:1] == ["format"]:
                fmt = words[1]
            elif words[:1] == ["element"]:
                counts.append(int(words[2]))
                sizes.append(0)
            elif words[:1] == ["property"] and sizes:
                sizes[-1] += _PLY_SIZES[words[2] if words[1] == "list" else words[1]]
    except (IndexError, ValueError, KeyError) as e:
        raise DataError(f"{label}: bad PLY header line ({type(e).__name__}: {e})") from e
    if fmt == "ascii":
        rows, need = _count_rows(body), sum(counts)
        if rows < need:
            raise DataError(f"{label}: truncated PLY: header declares {need} rows, file has {rows}")
    elif fmt.startswith("binary"):
        need = sum(n * s for n, s in zip(counts, sizes, strict=True))
        if len(body) < need:
            raise DataError(f"{label}: truncated PLY: needs at least {need} data bytes, file has {len(body)}")
    else:
        raise DataError(f"{label}: bad PLY format {fmt!r}")


def _check_pcd(data: bytes, label: str) -> None:
    """Reject a truncated PCD: open3d zero-fills missing ascii rows."""
    header, body = _split_header(data, b"\nDATA ", label, "PCD")
    fields: dict[str, list[str]] = {ln.split()[0]: ln.split()[1:] for ln in header if ln and ln[0] != "#"}
    try:
        points = int(fields["POINTS"][0])
        kind = fields["DATA"][0]
        sizes = [int(s) for s in fields["SIZE"]]
        counts = [int(c) for c in fields.get("COUNT", ["1"] * len(sizes))]
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(f"{label}: bad PCD header ({type(e).__name__}: {e})") from e
    if kind == "ascii":
        rows = _count_rows(body)
        if rows < points:
            raise DataError(f"{label}: truncated PCD: header declares {points} points, file has {rows} rows")
    elif kind == "binary":
        need = points * sum(s * c for s, c in zip(sizes, counts, strict=False))
        if len(body) < need:
            raise DataError(f"{label}: truncated PCD: needs {need} data bytes, file has {len(body)}")
