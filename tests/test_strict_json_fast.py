"""The JSON fast path (:func:`serving.strict_json.rows_of_three`) gives exactly what the general path gives, declines
every document that is not ``{"points": [[x, y, z], ...]}`` of numbers, and small JSON and raw bodies are parsed on
the event loop (no thread hand-off) while larger ones still go to the parse threads."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from serving import ServeSettings, create_app
from serving.strict_json import load_json, numbers_of, rows_of_three
from serving.workers import ThreadPool

LIMIT = 10**7


def both(text: str | bytes):
    body = text.encode() if isinstance(text, str) else text
    doc = load_json(body, LIMIT)
    return rows_of_three(body, doc), doc


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"points": np.random.default_rng(0).standard_normal((1024, 3)).astype(np.float32).tolist()}),
        orjson.dumps({"points": np.random.default_rng(1).standard_normal((50, 3)).tolist()}).decode(),
        '{"points": [[1, 2, 3]]}',
        '{ "points" :\n [ [ -0 , 1e5 , 2E-3 ] ,\t[0.5, -1.25e+2, 18446744073709551615] ] }\n',
        '{"points": [[' + "9" * 300 + ", 0, 0]" + ", [1, 2, 3]" * 6 + "]}",  # an int json.loads keeps, 300 digits
        '{"points": [[1e400, 0, 0], [0, 1, 0]]}',  # inf, refused later as overflow, exactly as the general path
        '{"\\u0070oints": [[1, 2, 3]]}',
    ],
)
def test_the_fast_path_gives_what_numbers_of_gives(text):
    fast, doc = both(text)
    assert fast is not None
    general = numbers_of(doc["points"], "points")
    assert fast.dtype == general.dtype == np.float64 and fast.shape == general.shape
    assert np.array_equal(fast, general)


@pytest.mark.parametrize(
    "text",
    [
        '{"points": [[true, 0, 0]]}',
        '{"points": [[1, 2, 3], [null, 1, 2]]}',
        '{"points": [["1.5", 2, 3]]}',
        '{"points": [[1, 2, 3], 4]}',
        '{"points": [[1, 2, 3, 4]]}',
        '{"points": [[1, 2]]}',
        '{"points": [[[1], 2, 3]]}',
        '{"points": [[1, 2, 3]], "x": [0]}',  # a second key: its brackets could be anywhere
        '{"points": []}',
        '{"points": [1, 2, 3]}',
        '{"points": {"a": [1, 2, 3]}}',
        "[[1, 2, 3]]",
    ],
)
def test_the_fast_path_declines_anything_else(text):
    fast, _ = both(text)
    assert fast is None


@pytest.fixture(scope="module")
def served(tiny_artifact):
    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1, parse_workers=0, spin=False))) as c:
        yield c


def test_small_json_raw_and_v2_bodies_skip_the_parse_threads_large_ones_use_them(served, monkeypatch):
    calls = []
    real = ThreadPool.run

    async def counted(self, job, meta, body):
        calls.append(len(body))
        return await real(self, job, meta, body)

    monkeypatch.setattr(ThreadPool, "run", counted)
    rng = np.random.default_rng(0)
    small = rng.standard_normal((200, 3))
    r = served.post("/predict", json={"points": small.tolist()})
    assert r.status_code == 200, r.text
    raw = {"content-type": "application/octet-stream"}
    r = served.post("/predict", content=small.astype("<f4").tobytes(), headers=raw)
    assert r.status_code == 200, r.text
    tensor = {"name": "points", "shape": [1, 200, 3], "datatype": "FP32", "data": small.ravel().tolist()}
    r = served.post("/v2/models/dgcnn_student/infer", json={"inputs": [tensor]})
    assert r.status_code == 200, r.text
    assert calls == []
    large = rng.standard_normal((20000, 3))  # ~1 MiB of JSON, over inline_parse_bytes
    r = served.post("/predict", json={"points": large.tolist()})
    assert r.status_code == 200 and r.json()["points_received"] == 20000, r.text
    assert len(calls) == 1 and calls[0] > ServeSettings.inline_parse_bytes
    r = served.post("/predict", json={"points": [[True, 0, 0]] * 10})  # errors inline are the same 422
    assert r.status_code == 422 and "true/false" in r.json()["error"]
