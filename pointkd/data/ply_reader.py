"""The ``x, y, z`` of a PLY file's ``vertex`` element, read from bytes that may be hostile.

The header is parsed by ``plyfile`` (given only the header's bytes: its line reader goes one byte at a time). The
data is read here with numpy rather than by ``plyfile.PlyData.read``, which allocates ``count`` rows from the header
before reading, loops forever on an element with no properties and a huge count, and reads list properties and
ascii rows one by one in Python. Every count is checked against the body's length before anything is allocated.
"""

from __future__ import annotations

import io

import numpy as np

from .splits import DataError
from .text_rows import data_lines, numeric_rows

MAX_HEADER_BYTES = 64 << 10


def read_ply_vertices(data: bytes, label: str, max_points: int | None = None) -> np.ndarray:
    """``[V, 3]`` float64 vertex positions; a :class:`DataError` for any malformed or inconsistent file."""
    ply, body = _parse_header(data, label)
    elements = list(ply.elements)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise DataError(f"{label}: PLY has no 'vertex' element")
    for e in elements:
        if e.count < 0:
            raise DataError(f"{label}: bad PLY header (element {e.name!r} has a negative count {e.count})")
        if e.count > 0 and not e.properties:
            raise DataError(f"{label}: PLY element {e.name!r} has {e.count} rows but no properties")
    vertex = elements[names.index("vertex")]
    fields = [p.name for p in vertex.properties]
    if not {"x", "y", "z"} <= set(fields):
        raise DataError(f"{label}: PLY vertex element needs properties x, y, z (has {', '.join(fields)})")
    if any(_is_list(p) for p in vertex.properties):
        raise DataError(f"{label}: PLY vertex element with a list property is not supported")
    if max_points is not None and vertex.count > max_points:
        raise DataError(f"{label}: PLY declares {vertex.count} vertices; this reader takes at most {max_points}")
    before = elements[: names.index("vertex")]
    if ply.text:
        rows = _ascii_vertex_rows(body, elements, before, vertex.count, label)
        values = numeric_rows(rows, label, "vertex row", len(fields))
        return values[:, [fields.index(c) for c in "xyz"]]
    return _binary_vertices(body, elements, before, vertex, ply.byte_order, label)


def _parse_header(data: bytes, label: str):
    import plyfile

    if not data.startswith(b"ply"):
        raise DataError(f"{label}: not a PLY file (does not start with 'ply')")
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise DataError(f"{label}: not a PLY file (no 'end_header' in the first {MAX_HEADER_BYTES} bytes)")
    stop = end + len(b"end_header")
    stop += 2 if data[stop : stop + 2] == b"\r\n" else 1
    try:
        ply = plyfile.PlyData._parse_header(io.BytesIO(data[:stop]))
    except (plyfile.PlyParseError, UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
        raise DataError(f"{label}: bad PLY header ({e})") from e
    return ply, data[stop:]


def _is_list(prop) -> bool:
    return hasattr(prop, "len_dtype")


def _ascii_vertex_rows(body: bytes, elements, before, count: int, label: str) -> list[str]:
    need = sum(e.count for e in elements)
    if need > len(body):  # every ascii row takes at least one byte: refuse before splitting anything
        raise DataError(f"{label}: truncated PLY: header declares {need} rows, the body has {len(body)} bytes")
    try:
        lines = data_lines(body.decode("ascii"))
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: ascii PLY body is not ascii ({e})") from e
    if len(lines) < need:
        raise DataError(f"{label}: truncated PLY: header declares {need} rows, file has {len(lines)}")
    start = sum(e.count for e in before)
    return lines[start : start + count]


def _binary_vertices(body: bytes, elements, before, vertex, byte_order: str, label: str) -> np.ndarray:
    minimum = sum(e.count * _min_row_bytes(e) for e in elements)
    if minimum > len(body):
        raise DataError(f"{label}: truncated PLY: needs at least {minimum} data bytes, file has {len(body)}")
    if any(_is_list(p) for e in before for p in e.properties):
        raise DataError(f"{label}: PLY elements with list properties before 'vertex' are not supported")
    offset = sum(e.count * e.dtype(byte_order).itemsize for e in before)
    dtype = vertex.dtype(byte_order)
    rows = np.frombuffer(body, dtype=dtype, count=vertex.count, offset=offset)
    return np.stack([rows[c].astype(np.float64) for c in "xyz"], axis=1)


def _min_row_bytes(element) -> int:
    """Bytes one row takes at least: fixed properties in full, a list property its length field (empty list)."""
    return sum(
        np.dtype(p.len_dtype).itemsize if _is_list(p) else np.dtype(p.val_dtype).itemsize for p in element.properties
    )
