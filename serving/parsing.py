"""Request bodies -> ``[P, 3]`` arrays: JSON, raw float32, ``.npy``, and uploaded cloud files.

Every failure is a :class:`~serving.preprocess.BadCloud`, a :class:`~serving.strict_json.BadJSON` (unreadable
JSON) or an :class:`UnsupportedMedia` with a message for the caller; nothing here raises anything else on bad input.
Uploaded files are read by the bounded readers of :mod:`pointkd.data.cloud_io`, told the server's ``max_points`` so
that a header claiming more is refused before anything is allocated.
"""

from __future__ import annotations

import numpy as np

from pointkd.data import DataError
from pointkd.data.cloud_io import read_cloud_bytes

from .preprocess import BadCloud
from .strict_json import BadNumbers, load_json, numbers_of, rows_of_three

RAW_FLOAT32 = "application/octet-stream"  # a body of little-endian float32 (x, y, z) rows

UPLOAD_SUFFIXES = (".ply", ".pcd", ".xyz", ".pts", ".txt", ".off", ".npy")


class UnsupportedMedia(ValueError):
    """The request's content type is not one this endpoint reads."""


def points_from_json_value(value: object, what: str = "points") -> np.ndarray:
    """A nested list ``[[x, y, z], ...]`` of JSON numbers -> float64 array; anything else is a BadCloud."""
    try:
        return numbers_of(value, what)
    except BadNumbers as err:
        raise BadCloud(str(err)) from err


def json_values_limit(max_points: int, clouds: int = 1) -> int:
    """How many JSON values a body may hold: every coordinate of ``clouds`` clouds at the limit, and some slack."""
    return 3 * max_points * clouds + 1024


def parse_json_points(body: bytes, max_points: int) -> np.ndarray:
    doc = load_json(body, json_values_limit(max_points))
    if not isinstance(doc, dict) or "points" not in doc:
        raise BadCloud('expected a JSON object {"points": [[x, y, z], ...]}')
    fast = rows_of_three(body, doc)  # the common shape, without a Python type check per coordinate
    return fast if fast is not None else points_from_json_value(doc["points"])


def parse_float32(body: bytes) -> np.ndarray:
    if len(body) % 12:
        raise BadCloud(f"raw float32 body of {len(body)} bytes is not a whole number of (x, y, z) points (12 bytes)")
    return np.frombuffer(body, dtype="<f4").reshape(-1, 3)


def parse_file(body: bytes, filename: str, max_points: int | None = None) -> np.ndarray:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in UPLOAD_SUFFIXES:
        raise BadCloud(f"cannot read {filename!r}: upload one of {', '.join(UPLOAD_SUFFIXES)}")
    try:
        return read_cloud_bytes(body, suffix, name=filename, max_points=max_points)
    except DataError as err:
        raise BadCloud(str(err)) from err
    except Exception as err:  # a reader's unexpected failure on a malformed file is still the file's fault
        raise BadCloud(f"cannot read {filename!r}: {type(err).__name__}: {err}") from err


def parse_npy(body: bytes, max_points: int | None = None) -> np.ndarray:
    """An ``application/x-npy`` body, read exactly as an uploaded ``.npy`` file: ``[P, >=3]``, first 3 columns."""
    return parse_file(body, "body.npy", max_points)


def parse_body(ctype: str, body: bytes, max_points: int) -> np.ndarray:
    """A non-multipart ``/predict`` body of content type ``ctype`` -> ``[P, 3]``."""
    if ctype == "application/json":
        return parse_json_points(body, max_points)
    if ctype == RAW_FLOAT32:
        return parse_float32(body)
    if ctype in ("application/x-npy", "application/npy"):
        return parse_npy(body, max_points)
    raise UnsupportedMedia(
        f"content type {ctype or '(none)'!r} is not supported: send application/json, application/octet-stream "
        "(float32 x, y, z), application/x-npy, or multipart/form-data with a file"
    )
