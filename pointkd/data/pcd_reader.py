"""The ``x, y, z`` fields of a PCD file, read from bytes that may be hostile.

The header is parsed by ``pypcd4`` (``MetaData``: fields, sizes, types, counts, points, encoding); the body is read
here, after every header field was checked against the others and against the body's length: ``pypcd4``'s own
reader allocates ``POINTS`` rows before knowing whether the body holds them, trusts the LZF sizes in the stream, and
reads ascii bodies with ``loadtxt`` of any row count. LZF decompression (``python-neo-lzf``) is asked for exactly
``POINTS x row size`` bytes and fails, rather than over-reading, when the stream holds anything else.
"""

from __future__ import annotations

import struct

import numpy as np

from .splits import DataError
from .text_rows import data_lines, numeric_rows

MAX_HEADER_BYTES = 64 << 10
MAX_ROW_BYTES = 1024  # bounds an upload's decompressed size to max_points x 1 KiB
LZF_MAX_RATIO = 104  # a 3-byte LZF back-reference writes at most 264 bytes: no stream expands further
ENCODINGS = ("ascii", "binary", "binary_compressed")


def read_pcd_points(data: bytes, label: str, max_points: int | None = None) -> np.ndarray:
    """``[P, 3]`` float64 points; a :class:`DataError` for any malformed or inconsistent file."""
    meta, body = _parse_header(data, label)
    if max_points is not None and meta.points > max_points:
        raise DataError(f"{label}: PCD declares {meta.points} points; this reader takes at most {max_points}")
    dtype = meta.build_dtype()
    if meta.data.value == "ascii":
        rows = data_lines(_ascii(body, label))
        if len(rows) != meta.points:
            raise DataError(f"{label}: truncated PCD: header declares {meta.points} points, file has {len(rows)} rows")
        values = numeric_rows(rows, label, "point row", sum(meta.count))
        columns = [sum(meta.count[: meta.fields.index(c)]) for c in "xyz"]
        return values[:, columns]
    if meta.data.value == "binary":
        need = meta.points * dtype.itemsize
        if len(body) < need:
            raise DataError(f"{label}: truncated PCD: needs {need} data bytes, file has {len(body)}")
        rows = np.frombuffer(body, dtype=dtype, count=meta.points)
        return np.stack([rows[c].astype(np.float64) for c in "xyz"], axis=1)
    return _compressed(body, meta, dtype, label)


def _parse_header(data: bytes, label: str):
    from pydantic import ValidationError
    from pypcd4.pypcd4 import MetaData

    pos = data.find(b"\nDATA ", 0, MAX_HEADER_BYTES)
    if pos < 0:
        raise DataError(f"{label}: not a PCD file (no 'DATA' header line in the first {MAX_HEADER_BYTES} bytes)")
    stop = data.find(b"\n", pos + 1)
    stop = len(data) if stop < 0 else stop + 1
    try:
        lines = [s for s in (ln.strip() for ln in data[:stop].decode("ascii").splitlines()) if s and s[0] != "#"]
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: unreadable PCD header ({e})") from e
    fields = next((ln.split() for ln in lines if ln.split()[0].upper() == "FIELDS"), None)
    if fields and not any(ln.split()[0].upper() == "COUNT" for ln in lines):  # optional: one value per field
        lines.append("COUNT " + " ".join(["1"] * (len(fields) - 1)))
    try:
        meta = MetaData.parse_header(lines)
    except (ValidationError, ValueError, IndexError, StopIteration) as e:
        raise DataError(f"{label}: bad PCD header ({type(e).__name__}: {_first_line(e)})") from e
    _check_fields(meta, label)
    return meta, data[stop:]


def _check_fields(meta, label: str) -> None:
    n = len(meta.fields)
    if not len(meta.size) == len(meta.type) == len(meta.count) == n:
        raise DataError(
            f"{label}: bad PCD header: FIELDS, SIZE, TYPE and COUNT have {n}, {len(meta.size)}, {len(meta.type)} and "
            f"{len(meta.count)} values"
        )
    if meta.data.value not in ENCODINGS:
        raise DataError(f"{label}: bad PCD header: DATA {meta.data.value!r} (expected one of {', '.join(ENCODINGS)})")
    if meta.width * meta.height != meta.points:
        raise DataError(f"{label}: bad PCD header: WIDTH x HEIGHT is {meta.width * meta.height}, POINTS {meta.points}")
    for c in "xyz":
        if c not in meta.fields:
            raise DataError(f"{label}: PCD needs fields x, y, z (has {', '.join(meta.fields)})")
        if meta.count[meta.fields.index(c)] != 1:
            raise DataError(f"{label}: bad PCD header: field {c} has COUNT {meta.count[meta.fields.index(c)]}")
    try:
        itemsize = meta.build_dtype().itemsize
    except (KeyError, ValueError) as e:
        raise DataError(f"{label}: bad PCD header: {type(e).__name__}: {e} (TYPE/SIZE pairs, unique FIELDS)") from e
    if itemsize > MAX_ROW_BYTES:
        raise DataError(f"{label}: PCD rows of {itemsize} bytes; this reader takes at most {MAX_ROW_BYTES}")


def _ascii(body: bytes, label: str) -> str:
    try:
        return body.decode("ascii")
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: ascii PCD body is not ascii ({e})") from e


def _compressed(body: bytes, meta, dtype: np.dtype, label: str) -> np.ndarray:
    """binary_compressed: ``<u4 compressed size, <u4 uncompressed size``, then one LZF stream of the columns,
    field after field."""
    import lzf

    if len(body) < 8:
        raise DataError(f"{label}: truncated PCD: binary_compressed body of {len(body)} bytes has no size header")
    compressed, uncompressed = struct.unpack("<II", body[:8])
    need = meta.points * dtype.itemsize
    if uncompressed != need:
        raise DataError(
            f"{label}: PCD LZF stream says {uncompressed} bytes uncompressed; {meta.points} points need {need}"
        )
    if compressed > len(body) - 8:
        raise DataError(f"{label}: truncated PCD: LZF stream of {compressed} bytes, file has {len(body) - 8}")
    if need > LZF_MAX_RATIO * compressed:
        raise DataError(
            f"{label}: PCD LZF stream of {compressed} bytes cannot hold {need} bytes (a decompression bomb)"
        )
    if need == 0:
        raise DataError(f"{label}: cloud has no points")
    try:
        raw = lzf.decompress(body[8 : 8 + compressed], need)
    except ValueError as e:
        raise DataError(f"{label}: corrupt PCD LZF stream ({e})") from e
    if raw is None or len(raw) != need:
        raise DataError(f"{label}: corrupt PCD LZF stream (does not decompress to {need} bytes)")
    columns, offset = {}, 0
    for name in dtype.names:
        size = dtype[name].itemsize * meta.points
        columns[name] = np.frombuffer(raw, dtype=dtype[name], count=meta.points, offset=offset)
        offset += size
    return np.stack([columns[c].astype(np.float64) for c in "xyz"], axis=1)


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
