"""Strict numeric rows from text lines, shared by the .xyz/.txt/.pts, ascii PLY and ascii PCD readers.

Every row must hold exactly the same number of numeric tokens; a short row, a missing ``z`` or a non-numeric token
is a :class:`DataError`, never a zero- or NaN-filled value. Conversion is numpy's ``loadtxt`` (C, strict: no
``1_000``, no hex, no non-ASCII digits).
"""

from __future__ import annotations

import numpy as np

from .splits import DataError


def numeric_rows(lines: list[str], label: str, what: str = "row", columns: int | None = None) -> np.ndarray:
    """``[len(lines), C]`` float64 from whitespace-separated ``lines``; every row has ``columns`` tokens (the first
    row's count when ``None``)."""
    if not lines:
        raise DataError(f"{label}: cloud has no points")
    counts = list(map(len, map(str.split, lines)))
    want = counts[0] if columns is None else columns
    for i, n in enumerate(counts):
        if n != want:
            first = "row 1 has" if columns is None else "the header declares"
            raise DataError(f"{label}: {what} {i + 1} has {n} columns, {first} {want}")
    try:
        return np.loadtxt(lines, dtype=np.float64, ndmin=2, comments=None)
    except ValueError as e:
        raise DataError(f"{label}: non-numeric value ({e})") from e


def data_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped."""
    return [s for s in (ln.strip() for ln in text.splitlines()) if s]
