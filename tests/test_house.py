"""benchmarks/house.py's machinery on small synthetic trees: function lengths, the server-import probe, the
duplicates parser and the merged report (the real measurement is committed in benchmarks/results/house.*)."""

from __future__ import annotations

import json
from pathlib import Path

from scriptload import load_script

ROOT = Path(__file__).resolve().parents[1]


def house():
    return load_script(ROOT / "benchmarks" / "house.py", "house")


SOURCE = """\
import functools


def short():
    return 1


@functools.cache
def outer(x):
    def inner(y):
        return y

    return inner(x)


class Model:
    def method(self):
        a = 1
        b = 2
        return a + b

    async def fetch(self):
        return None
"""


def test_function_lengths_count_def_to_last_line_nested_and_methods():
    h = house()
    got = {f["name"]: (f["line"], f["lines"]) for f in h.function_lengths(SOURCE, "m.py")}
    assert got == {
        "short": (4, 2),
        "outer": (9, 5),
        "outer.inner": (10, 2),
        "Model.method": (17, 4),
        "Model.fetch": (22, 2),
    }


def write(tree: Path, rel: str, text: str) -> None:
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_measure_on_a_synthetic_tree(tmp_path):
    h = house()
    write(tmp_path, "pointkd/__init__.py", "")
    write(tmp_path, "pointkd/train/__init__.py", "from . import trainer\n")
    write(tmp_path, "pointkd/train/trainer.py", "def train():\n" + "    x = 1\n" * 90 + "    return x\n")
    write(tmp_path, "pointkd/export/__init__.py", "")
    write(tmp_path, "pointkd/export/compile.py", "")
    write(tmp_path, "serving/__init__.py", "")
    write(tmp_path, "serving/app.py", "import pointkd.train\nimport pointkd.export.compile\n")
    write(tmp_path, "calibration/__init__.py", "def f(:\n")  # a file mid-edit is left out, not fatal
    write(tmp_path, "README.md", "a\nb\nc\n")
    m = h.measure(tmp_path, with_duplicates=False)
    assert m["functions"] == 1 and m["functions_over_80_lines"] == 1
    assert m["longest_functions"][0] == {"path": "pointkd/train/trainer.py", "name": "train", "line": 1, "lines": 92}
    assert m["readme_lines"] == 3
    imports = m["server_imports"]
    assert imports["ok"] and imports["loaded_from_tree"], imports  # the tree, not the installed checkout
    assert imports["heavy_modules"] == ["pointkd.export.compile", "pointkd.train", "pointkd.train.trainer"]
    write(tmp_path, "serving/app.py", "import pointkd\n")
    assert h.server_imports(tmp_path)["heavy_modules"] == []


def test_parse_duplicates():
    h = house()
    out = (
        "16 pairs of places (74 files read), each sharing runs of 6 or more lines\n"
        "D1 a.py:1-9 ~ b.py:3-11\nincomplete: time: read 74 of 142 files\n"
    )
    assert h.parse_duplicates(out) == {
        "pairs": 16,
        "files_read": 74,
        "incomplete": "incomplete: time: read 74 of 142 files",
        "first_line": out.splitlines()[0],
    }
    assert h.parse_duplicates("no duplicates (12 files read)\n")["pairs"] == 0


def test_labels_merge_into_one_report(tmp_path):
    h = house()
    out = tmp_path / "house.json"
    result = {
        "rev": "abc",
        "commit": "a" * 40,
        "dirty": False,
        "functions": 3,
        "functions_over_80_lines": 0,
        "longest_functions": [{"path": "p.py", "name": "f", "line": 1, "lines": 9}],
        "readme_lines": 100,
        "server_imports": {"ok": True, "heavy_modules": [], "error": None},
        "duplicates": None,
        "measured_at": "2026-01-01T00:00:00+00:00",
    }
    out.write_text(json.dumps(h.merge(out, "before", result)))
    report = h.merge(out, "now", {**result, "readme_lines": 90})
    assert list(report["measurements"]) == ["before", "now"]
    md = h.markdown(report)
    assert "| README.md lines | 100 | 90 |" in md and "| duplicate pairs | – | – |" in md
    assert "no training module" in md
