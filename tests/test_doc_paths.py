"""Every ``benchmarks/...`` file the README, docs/*.md, benchmarks/README.md and the campaign plans' comments name
exists in the checkout: a study or result that moves (e.g. into ``benchmarks/studies/<name>/``) takes its mentions
with it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLANS = sorted((ROOT / "benchmarks" / "campaign").glob("*.yaml"))
# A path of a file, from "benchmarks/" (also inside a link such as ../benchmarks/...) to its extension; brace lists
# ("load_test.{json,md}") are expanded, templates ("<device-id>", globs) are not paths and are skipped.
PATH = re.compile(r"(?<![\w.-])benchmarks/[\w./{},<>*-]*?\.(?:md|json|py|yaml|png|sh)(?![\w.])")


def mentions() -> list[tuple[str, int, str]]:
    """``(file, line, path)`` of every mention, brace lists expanded."""
    found = []
    for doc in DOCS + PLANS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in PATH.finditer(line):
                path = match.group(0)
                if "<" in path or "*" in path:
                    continue
                brace = re.search(r"\{([^{}]*)\}", path)
                alts = (
                    [path]
                    if brace is None
                    else [path[: brace.start()] + a + path[brace.end() :] for a in brace[1].split(",")]
                )
                found += [(str(doc.relative_to(ROOT)), number, p) for p in alts]
    return found


def test_the_scan_sees_the_paths_the_docs_name():
    paths = {p for _, _, p in mentions()}
    assert "benchmarks/campaign/modelnet40_paper.yaml" in paths  # README.md's campaign line
    assert "benchmarks/results/edge_attacks.md" in paths  # docs/design.md's link, written ../benchmarks/...
    assert len(paths) > 20


def test_every_benchmarks_path_named_in_the_docs_exists():
    missing = [f"{doc}:{n}: {path}" for doc, n, path in mentions() if not (ROOT / path).exists()]
    assert not missing, "stale paths (moved or never made):\n" + "\n".join(missing)
