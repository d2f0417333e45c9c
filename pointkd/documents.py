"""The versioned JSON documents pointkd writes (artifact manifests, bench reports, calibration sets): each carries a
``"format"`` tag naming its schema, checked when it is read back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_document(path: str | os.PathLike, fmt: str, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The JSON object at ``path`` whose ``"format"`` is ``fmt``; ``error`` naming ``what`` it should have been
    when it is not JSON, not an object, or of another format."""
    try:
        doc = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path} is not valid JSON: {err}") from err
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != fmt:
        raise error(f"{path} is not {what} (format {found!r}, expected {fmt!r})")
    return doc
