"""docs/results.md's section for ``benchmarks/per_class.py``: the served student against its teacher, per class
(the one renderer, :func:`pointkd.results.per_class_lines`, also writes the script's own Markdown)."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import RESULTS, load, per_class_lines, source

RESULT = RESULTS / "per_class.json"


def section(root: Path) -> list[str]:
    """The served student's accuracy per class beside its teacher's, worst difference first."""
    d = load(root, RESULT)
    if not d:
        return []
    return ["### Per class: the served student against its teacher", "", *per_class_lines(d), "", source(RESULT), ""]
