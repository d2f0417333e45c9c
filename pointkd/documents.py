"""The versioned JSON documents pointkd writes (artifact manifests, bench reports, calibration sets): each carries a
``"format"`` tag naming its schema, checked when it is read back. And the benchmarks' result files: a JSON report
and its Markdown beside it."""

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


def write_result(folder: str | os.PathLike, name: str, report: dict[str, Any], markdown: str) -> Path:
    """``folder/name.json`` (``report``, indented) and ``folder/name.md`` (``markdown``), the folder made if needed;
    returns the Markdown file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = folder / f"{name}.md"
    md.write_text(markdown)
    return md
