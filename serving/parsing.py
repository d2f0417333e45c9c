"""Request bodies -> ``[P, 3]`` arrays: JSON, raw float32, ``.npy``, and uploaded cloud files.

Every failure is a :class:`~serving.preprocess.BadCloud` (or an :class:`UnsupportedMedia`) with a message for the
caller; nothing here raises anything else on bad input.
"""

from __future__ import annotations

import json

import numpy as np

from pointkd.data import DataError
from pointkd.data.cloud_io import read_cloud_bytes

from .preprocess import BadCloud

UPLOAD_SUFFIXES = (".ply", ".pcd", ".xyz", ".pts", ".txt", ".off", ".npy")


class UnsupportedMedia(ValueError):
    """The request's content type is not one this endpoint reads."""


def points_from_json_value(value: object, what: str = "points") -> np.ndarray:
    """A nested list ``[[x, y, z], ...]`` -> float array; ragged or non-numeric lists are a BadCloud."""
    if not isinstance(value, list):
        raise BadCloud(f"'{what}' must be a list of [x, y, z] triples")
    try:
        with np.errstate(over="ignore"):
            arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise BadCloud(f"'{what}' must be a rectangular list of numbers ({err})") from err
    return arr


def parse_json_points(body: bytes) -> np.ndarray:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadCloud(f"body is not valid JSON: {err}") from err
    if not isinstance(doc, dict) or "points" not in doc:
        raise BadCloud('expected a JSON object {"points": [[x, y, z], ...]}')
    return points_from_json_value(doc["points"])


def parse_float32(body: bytes) -> np.ndarray:
    if len(body) % 12:
        raise BadCloud(f"raw float32 body of {len(body)} bytes is not a whole number of (x, y, z) points (12 bytes)")
    return np.frombuffer(body, dtype="<f4").reshape(-1, 3)


def parse_file(body: bytes, filename: str) -> np.ndarray:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in UPLOAD_SUFFIXES:
        raise BadCloud(f"cannot read {filename!r}: upload one of {', '.join(UPLOAD_SUFFIXES)}")
    try:
        return read_cloud_bytes(body, suffix, name=filename)
    except DataError as err:
        raise BadCloud(str(err)) from err
    except Exception as err:  # a reader's unexpected failure on a malformed file is still the file's fault
        raise BadCloud(f"cannot read {filename!r}: {type(err).__name__}: {err}") from err


def parse_npy(body: bytes) -> np.ndarray:
    """An ``application/x-npy`` body, read exactly as an uploaded ``.npy`` file: ``[P, >=3]``, first 3 columns."""
    return parse_file(body, "body.npy")
