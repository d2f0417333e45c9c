"""The upload readers against hostile bytes: headers that lie about sizes, decompression bombs, elements that would
spin, bad dtypes and tokens. Every case must end quickly in a DataError (never a crash, hang, allocation of the
claimed size, or values read from memory the file does not hold), and valid files must still read exactly."""

from __future__ import annotations

import io
import struct
import time

import lzf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointkd.data.cloud_io import read_cloud_bytes
from pointkd.data.splits import DataError

CLOUD = (np.random.default_rng(0).standard_normal((20, 3)) * [1, 2, 3]).astype(np.float32)
XYZ = "x y z"


def ply_header(fmt: str, count: int, props: str = "property float x\nproperty float y\nproperty float z\n") -> bytes:
    return f"ply\nformat {fmt} 1.0\nelement vertex {count}\n{props}end_header\n".encode()


def pcd_header(points: int, data: str, fields: str = "x y z", size: str = "4 4 4", type_: str = "F F F") -> bytes:
    return (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE {size}\nTYPE {type_}\nCOUNT 1 1 1\nWIDTH {points}\n"
        f"HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {data}\n"
    ).encode()


def compressed_body(cloud: np.ndarray) -> bytes:
    raw = b"".join(np.ascontiguousarray(cloud[:, i]).tobytes() for i in range(3))  # field after field
    packed = lzf.compress(raw, len(raw) + 64)  # random floats do not shrink: let LZF store them
    return struct.pack("<II", len(packed), len(raw)) + packed


def rows(cloud: np.ndarray) -> bytes:
    """One ``x y z`` line a point, each float32 written so that it reads back exactly."""
    return "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in cloud.tolist()).encode()


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def read(data: bytes, suffix: str, max_points: int | None = 10_000) -> np.ndarray:
    return read_cloud_bytes(data, suffix, name="upload" + suffix, max_points=max_points)


VALID = {
    "binary ply": (ply_header("binary_little_endian", 20) + CLOUD.tobytes(), ".ply"),
    "big-endian ply": (ply_header("binary_big_endian", 20) + CLOUD.astype(">f4").tobytes(), ".ply"),
    "ascii ply": (ply_header("ascii", 20) + rows(CLOUD), ".ply"),
    "binary pcd": (pcd_header(20, "binary") + CLOUD.tobytes(), ".pcd"),
    "ascii pcd": (pcd_header(20, "ascii") + rows(CLOUD), ".pcd"),
    "compressed pcd": (pcd_header(20, "binary_compressed") + compressed_body(CLOUD), ".pcd"),
    "npy": (npy(CLOUD), ".npy"),
    "fortran npy": (npy(np.asfortranarray(CLOUD.astype(np.float64))), ".npy"),
    "int npy": (npy(np.arange(60, dtype=np.int16).reshape(20, 3)), ".npy"),
    "bom xyz": ("\ufeff".encode() + rows(CLOUD), ".xyz"),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_uploads_read_exactly(name):
    data, suffix = VALID[name]
    want = np.arange(60, dtype=np.float32).reshape(20, 3) if name == "int npy" else CLOUD
    np.testing.assert_array_equal(read(data, suffix), want)


LIES = [
    # PLY: counts and layouts that do not match the body
    ("ply spin", ply_header("binary_little_endian", 3)[:-11] + b"element pad 9223372036854775000\nend_header\n"
     + CLOUD[:3].tobytes(), ".ply", "no properties"),
    ("ply count 1e10", ply_header("binary_little_endian", 10**10) + CLOUD.tobytes(), ".ply", "at most 10000"),
    ("ply count past body", ply_header("binary_little_endian", 9000) + CLOUD.tobytes(), ".ply", "truncated PLY"),
    ("ply ascii count past body", ply_header("ascii", 9000) + b"1 2 3\n", ".ply", "truncated PLY"),
    ("ply huge face list", ply_header("binary_little_endian", 20)[:-11]
     + b"element face 4000000000\nproperty list uchar int vertex_indices\nend_header\n" + CLOUD.tobytes(), ".ply",
     "truncated PLY"),
    ("ply no z", ply_header("ascii", 2, "property float x\nproperty float y\n") + b"1 2\n3 4\n", ".ply", "x, y, z"),
    ("ply short row", ply_header("ascii", 2) + b"1 2 3\n4 5\n", ".ply", "vertex row 2 has 2 columns"),
    ("ply word", ply_header("ascii", 2) + b"1 2 3\n4 five 6\n", ".ply", "non-numeric"),
    ("ply bad type", ply_header("binary_little_endian", 1, "property quad x\n"), ".ply", "bad PLY header"),
    ("ply no end", b"ply\nformat ascii 1.0\n" + b"comment " * 20000, ".ply", "no 'end_header'"),
    ("ply negative", ply_header("ascii", -5), ".ply", "bad PLY header"),
    # PCD: header fields against each other and the body
    ("pcd bomb", pcd_header(10**6, "binary_compressed") + struct.pack("<II", 300, 12 * 10**6) + b"\0" * 300, ".pcd",
     "at most 10000"),
    ("pcd lzf claims more", pcd_header(5000, "binary_compressed") + struct.pack("<II", 300, 60000) + b"\0" * 300,
     ".pcd", "decompression bomb"),
    ("pcd lzf wrong size", pcd_header(20, "binary_compressed") + struct.pack("<II", 10, 9999) + b"\0" * 10, ".pcd",
     "20 points need 240"),
    ("pcd lzf past body", pcd_header(20, "binary_compressed") + struct.pack("<II", 5000, 240) + b"\0" * 10, ".pcd",
     "truncated PCD"),
    ("pcd lzf garbage", pcd_header(20, "binary_compressed") + struct.pack("<II", 10, 240) + b"\xff" * 10, ".pcd",
     "corrupt PCD LZF"),
    ("pcd binary short", pcd_header(20, "binary") + CLOUD[:10].tobytes(), ".pcd", "truncated PCD"),
    ("pcd ascii extra rows", pcd_header(2, "ascii") + b"1 2 3\n4 5 6\n7 8 9\n", ".pcd", "declares 2 points"),
    ("pcd width lies", pcd_header(20, "binary").replace(b"WIDTH 20", b"WIDTH 7"), ".pcd", "WIDTH x HEIGHT"),
    ("pcd sizes disagree", pcd_header(1, "ascii", size="4 4") + b"1 2 3\n", ".pcd", "have 3, 2, 3 and 3"),
    ("pcd no z", pcd_header(1, "ascii", fields="x y w") + b"1 2 3\n", ".pcd", "fields x, y, z"),
    ("pcd bad type", pcd_header(1, "ascii", type_="F F Q") + b"1 2 3\n", ".pcd", "bad PCD header"),
    ("pcd word", pcd_header(2, "ascii") + b"1 2 3\n4 x 6\n", ".pcd", "non-numeric"),
    ("pcd short row", pcd_header(2, "ascii") + b"1 2 3\n4 6\n", ".pcd", "point row 2 has 2 columns"),
    # NPY: dtypes and shapes
    ("npy complex", npy(CLOUD.astype(np.complex64)), ".npy", "real numeric"),
    ("npy timedelta", npy(np.zeros((5, 3), "m8[s]")), ".npy", "real numeric"),
    ("npy object", b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }".ljust(127)
     + b"\n", ".npy", "real numeric"),
    ("npy bool", npy(np.ones((5, 3), bool)), ".npy", "real numeric"),
    ("npy shape lies", npy(CLOUD).replace(b"(20, 3)", b"(9000, 3)"), ".npy", "needs"),
    ("npy huge shape", npy(CLOUD).replace(b"(20, 3)", b"(1000000000, 3)"), ".npy",
     "at most 10000"),
    # text and OFF
    ("xyz missing z", b"1 2\n3 4\n", ".xyz", ">=3 columns"),
    ("xyz underscore", b"1_000 2 3\n", ".xyz", "non-numeric"),
    ("xyz hex", b"0x10 2 3\n", ".xyz", "non-numeric"),
    ("xyz too many rows", b"1 2 3\n" * 10001, ".xyz", "at most 10000"),
    ("off huge counts", b"OFF\n900000000 900000000 0\n0 0 0\n", ".off", "at most 10000"),
    ("off counts past body", b"OFF\n9000 1 0\n0 0 0\n", ".off", "truncated OFF"),
    ("off int overflow", b"OFF\n" + b"9" * 5000 + b" 1 0\n", ".off", "bad OFF counts"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "suffix", "message"), [c[1:] for c in LIES], ids=[c[0] for c in LIES])
def test_lying_headers_are_refused_quickly(data, suffix, message):
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        read(data, suffix)
    assert message in str(info.value), str(info.value)
    assert time.perf_counter() - start < 2.0


def test_overflowing_values_say_overflow():
    with pytest.raises(DataError, match="overflow float32"):
        read(b"1e39 0 0\n1 2 3\n", ".xyz")
    with pytest.raises(DataError, match="NaN or Inf"):
        read(b"nan 0 0\n1 2 3\n", ".xyz")


ALL_SUFFIXES = (".ply", ".pcd", ".npy", ".xyz", ".off", ".txt", ".pts")


def _mutations(data: bytes):
    return st.builds(
        lambda cut, pos, junk: data[:pos] + junk + data[pos + cut :],
        st.integers(0, 16),
        st.integers(0, len(data)),
        st.binary(max_size=16),
    )


@pytest.mark.parametrize("name", sorted(VALID))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_valid_files_read_or_fail_cleanly(name, data):
    """Bytes cut, inserted or overwritten anywhere in a valid file: a DataError or finite float32 [P, 3]."""
    original, suffix = VALID[name]
    body = data.draw(_mutations(original))
    try:
        points = read(body, suffix)
    except DataError:
        return
    assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 3 and np.isfinite(points).all()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=400), suffix=st.sampled_from(ALL_SUFFIXES), prefix=st.sampled_from(
    [b"", b"ply\nformat binary_little_endian 1.0\n", b"# .PCD v0.7\nDATA binary_compressed\n", b"\x93NUMPY\x01\x00",
     b"OFF\n"]))  # fmt: skip
def test_random_bytes_fail_cleanly(body, suffix, prefix):
    try:
        points = read(prefix + body, suffix)
    except DataError:
        return
    assert points.dtype == np.float32 and points.shape[1] == 3 and np.isfinite(points).all()
