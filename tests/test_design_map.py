"""docs/design.md's map of the house names the code as it is: every path it gives exists, every file a table row names
lies in that row's folder, and every "`path`'s `name`" is defined in that file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
TOP = ("pointkd/", "serving/", "calibration/", "benchmarks/", "scripts/", "tests/", "docs/")


def the_map() -> str:
    text = DESIGN.read_text()
    return text[text.index("## The map of the house") : text.index("\n## ", text.index("## The map of the house") + 1)]


def test_every_path_of_the_map_exists():
    text = the_map()
    # whole paths, in backticks or in the layer diagram
    paths = {p for p in re.findall(r"[\w./-]+", text) if p.startswith(TOP) and (p.endswith((".py", "/")))}
    assert len(paths) > 40
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []


def test_every_file_a_table_row_names_is_in_its_folders():
    rows = [line for line in the_map().splitlines() if line.startswith("| `")]
    assert len(rows) >= 12
    for row in rows:
        where, what = row.split("|")[1:3]
        folders = [ROOT / w if w.endswith("/") else (ROOT / w).parent for w in re.findall(r"`([^`]+)`", where)]
        for name in re.findall(r"`([\w/]+(?:\.py|/))`", what):
            if name.startswith(TOP):
                continue
            assert any((f / name).exists() for f in folders), f"{name} is not under {where.strip()}"


def test_every_name_given_with_its_file_is_defined_there():
    pairs = re.findall(r"`([\w/]+\.py)`'s `(\w+)`", the_map())
    assert len(pairs) >= 8
    for path, name in pairs:
        source = (ROOT / path).read_text()
        assert re.search(rf"^\s*(class|def|async def) {name}\b", source, re.M), f"{name} is not defined in {path}"


def test_the_command_modules_of_the_map_are_the_commands():
    from pointkd.cli import COMMANDS

    row = next(line for line in the_map().splitlines() if line.startswith("| `pointkd/cli/`"))
    named = {n.removesuffix(".py") for n in re.findall(r"`(\w+\.py)`", row)} - {"__init__", "common"}
    assert named == set(COMMANDS)
    assert {Path(m.__file__).stem for m in COMMANDS.values()} == named
