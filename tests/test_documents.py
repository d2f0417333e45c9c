"""The one reader of pointkd's versioned JSON documents (manifests, bench reports, calibration sets)."""

from __future__ import annotations

import json

import pytest

from pointkd.documents import read_document
from pointkd.runtime.errors import ManifestError


def test_a_document_of_the_right_format_is_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"format": "x/1", "a": [1, 2]}))
    assert read_document(path, "x/1", "an x") == {"format": "x/1", "a": [1, 2]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "x/2"}', "is not an x \\(format 'x/2', expected 'x/1'\\)"),
        ("[1, 2]", "is not an x \\(format None"),
        ('{"a": 1}', "is not an x \\(format None"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_anything_else_is_refused_with_the_callers_error(tmp_path, text, message):
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        read_document(path, "x/1", "an x", ManifestError)


def test_write_result_writes_the_report_and_its_markdown_and_reads_back(tmp_path):
    from pointkd.documents import write_result

    report = {"rows": [{"p50_ms": 1.5}], "note": "ü"}
    md = write_result(tmp_path / "new" / "device", "bench", report, "# Bench\n")
    assert md == tmp_path / "new" / "device" / "bench.md" and md.read_text() == "# Bench\n"
    assert json.loads((md.parent / "bench.json").read_text()) == report
