"""The server against hostile clients: strict JSON, KServe shapes, one error shape, HEAD, disconnects, resampling
edge cases, and good clients beside bad ones (no good request may fail)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import ServeSettings, create_app
from serving.batcher import MicroBatcher
from serving.metrics import ServerMetrics
from serving.middleware import BodyLimit, RequestMetrics
from serving.preprocess import BadCloud, prepare

INFER = "/v2/models/dgcnn_student/infer"


def post_json(client, text: str, url: str = "/predict"):
    return client.post(url, content=text.encode(), headers={"content-type": "application/json"})


def tensor(shape, data) -> str:
    return json.dumps({"inputs": [{"name": "points", "shape": shape, "datatype": "FP32", "data": data}]})


# ------------------------------------------------------------------ resampling


GRID = np.round(np.random.default_rng(1).standard_normal((500, 3)))  # 500 points, ~100 distinct
CLOUDS = {
    "grid-snapped": GRID,
    "30 distinct, each 10 times": np.repeat(np.random.default_rng(2).standard_normal((30, 3)), 10, axis=0),
    "two points": np.array([[0, 0, 0], [1, 1, 1]] * 50),
    "collinear": np.outer(np.arange(100), [1, 2, 3]),
    "1e38 coordinates": np.random.default_rng(3).uniform(-1, 1, (100, 3)) * 1e38,
    "float32 extremes": np.array([[3.4e38, -3.4e38, 0], [-3.4e38, 3.4e38, 1e-45]] * 40),
    "subnormal extent": np.array([[0, 0, 0], [0, 0, 1e-44]] * 40),
}


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_resampling_always_gives_n_finite_points(name):
    out = prepare(CLOUDS[name].astype(np.float32), 64, 6, 10**6)
    assert out.shape == (64, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    assert 0 < np.linalg.norm(out, axis=1).max() <= 1 + 1e-6


def test_fewer_distinct_points_than_n_are_all_kept():
    out = prepare(CLOUDS["30 distinct, each 10 times"].astype(np.float32), 64, 6, 10**6)
    assert len(np.unique(out, axis=0)) == 30


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (np.zeros((10, 3)), "no extent"),
        (np.full((10, 3), 1e39), "overflow float32"),
        (np.full((10, 3), 7.0), "no extent"),
    ],
)
def test_degenerate_clouds_are_refused(points, message):
    with pytest.raises(BadCloud, match=message):
        prepare(points, 64, 6, 10**6)


# ------------------------------------------------------------------ strict JSON


@pytest.mark.parametrize(
    ("text", "status", "message"),
    [
        ('{"points": [[true, 0, 0]]}', 422, "true/false"),
        ('{"points": [[1, 2, 3], [null, 1, 2]]}', 422, "null"),
        ('{"points": [["1.5", 2, 3]]}', 422, "a string"),
        ('{"points": [["1_000", 2, 3]]}', 422, "a string"),
        ('{"points": [[NaN, 1, 2]]}', 400, "NaN is not a JSON number"),
        ('{"points": [[Infinity, 1, 2]]}', 400, "Infinity"),
        ('{"points": [[1e39, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [2, 2, 2], [3, 3, 3]]}', 422, "overflow float32"),
        ('{"points": [[1e400, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [2, 2, 2], [3, 3, 3]]}', 422, "overflow"),
        ('{"points": [[' + "9" * 400 + ", 0, 0]" + ", [1, 2, 3]" * 6 + "]}", 422, "overflow"),
        ('{"points": ' + "[" * 2000 + "]" * 2000 + "}", 400, "nested deeper"),
        ("[" * 100000, 400, "nested deeper"),
        ('{"points": [[1, 2, 3], 4]}', 422, "mixed"),
        ('{"points": [[1, 2', 400, "not valid JSON"),
        ("\xff", 400, "not valid JSON"),
    ],
)
def test_strict_json(client, text, status, message):
    r = post_json(client, text)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([True, 10, 3], [0.0] * 30, "true"),
        ([-1, 10, 3], [0.0] * 30, "non-negative"),
        ([2**62, 4, 3], [0.0] * 30, "batch of 4611686018427387904 clouds"),
        ([1, 2**62, 3], [0.0] * 30, "needs 13835058055282163712"),
        ([1, 10, 4], [0.0] * 40, "end in 3"),
        ([10.0, 3], [0.0] * 30, "integers"),
        ("10,3", [0.0] * 30, "integers"),
        ([1, 10, 3], [[0.0, True, 0.0]] * 10, "true/false"),
        ([1, 10, 3], {"a": 1}, "list of numbers"),
    ],
)
def test_kserve_shapes_are_checked(client, shape, data, message):
    r = post_json(client, tensor(shape, data), INFER)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]


@pytest.mark.parametrize("datatype", [["FP32"], {"t": "FP32"}, [], {}, None, 32, True, "fp32", "BYTES"])
@pytest.mark.parametrize("binary", [False, True])
def test_a_datatype_that_is_not_fp32_or_fp64_is_400(client, datatype, binary):
    doc = {"inputs": [{"name": "points", "shape": [1, 10, 3], "datatype": datatype}]}
    raw = np.zeros((10, 3), "<f4").tobytes()
    if binary:
        doc["inputs"][0]["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps(doc).encode()
        r = client.post(INFER, content=header + raw, headers={"inference-header-content-length": str(len(header))})
    else:
        doc["inputs"][0]["data"] = [0.0] * 30
        r = post_json(client, json.dumps(doc), INFER)
    assert r.status_code == 400, r.text
    assert list(r.json()) == ["error"] and "datatype must be FP32 or FP64" in r.json()["error"]


def test_unreadable_json_is_400_on_every_endpoint(client):
    for url in ("/predict", INFER):
        r = post_json(client, '{"points": [[1,', url)
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"], url


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(["points", "inputs", "x"]), kids),
        max_leaves=30,
    )
)
def test_any_json_document_gets_a_4xx_or_an_answer(client, doc):
    for url in ("/predict", INFER):
        r = post_json(client, json.dumps(doc), url)
        assert r.status_code in (200, 400, 422), (url, r.status_code, r.text)
        assert r.status_code == 200 or "error" in r.json()


# ------------------------------------------------------------------ one error shape, HEAD, uploads


def test_every_error_body_has_the_error_shape(client):
    cases = [
        (client.get("/no/such/path"), 404),
        (client.post("/v2/health/live"), 405),
        (client.get("/predict"), 405),
        (client.post("/predict", content=b"\0" * (2 << 20), headers={"content-type": "application/octet-stream"}), 413),
        (client.post("/predict", content=b"x", headers={"content-type": "text/plain"}), 415),
        (client.get("/v2/models/other"), 404),
    ]
    for r, status in cases:
        assert r.status_code == status, r.text
        assert isinstance(r.json()["error"], str) and r.json()["error"], r.text
    assert "POST" in cases[2][0].headers["allow"]


def test_head_works_on_get_routes(client):
    for url in ("/v2/health/live", "/v2/health/ready", "/v2/models/dgcnn_student", "/metrics"):
        r = client.head(url)
        assert r.status_code == 200 and r.content == b"", url
    assert client.head("/no/such/path").status_code == 404
    assert 'endpoint="/v2/health/live",status="200"' in client.get("/metrics").text


def test_xyz_with_a_byte_order_mark_is_read(client, cloud):
    text = "\n".join(" ".join(repr(float(v)) for v in p) for p in cloud)
    plain = client.post("/predict?top_k=3", files={"file": ("c.xyz", text.encode())})
    bom = client.post("/predict?top_k=3", files={"file": ("c.xyz", ("\ufeff" + text).encode())})
    assert plain.status_code == bom.status_code == 200, bom.text
    assert plain.json()["top_k"] == bom.json()["top_k"]


def test_malformed_multipart_is_400(client):
    r = client.post(
        "/predict", content=b"--b\r\nnot a part", headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code in (400, 422), r.text
    assert "error" in r.json()


def test_client_disconnects_are_counted_apart_from_server_errors():
    metrics = ServerMetrics()

    async def app(scope, receive, send):  # never reached: the client leaves mid-upload
        raise AssertionError("the app ran")

    stack = RequestMetrics(BodyLimit(app, limit=1 << 20), metrics)
    messages = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        raise AssertionError("nothing is sent to a client that left")

    asyncio.run(stack({"type": "http", "method": "POST", "path": "/predict", "headers": []}, receive, send))
    text = generate(metrics)
    assert 'status="499"' in text and 'status="500"' not in text


def generate(metrics: ServerMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


# ------------------------------------------------------------------ isolation


def test_a_wrong_row_is_refused_to_its_caller_only(tiny_artifact):
    from serving.predictor import Predictor

    predictor = Predictor(tiny_artifact, threads=1)
    good = prepare(CLOUDS["grid-snapped"].astype(np.float32), 64, 6, 10**6)

    async def run():
        batcher = MicroBatcher(predictor.predict, max_batch=8, max_delay_ms=20, row_shape=(64, 3))
        batcher.start()
        try:
            bad = [np.zeros((63, 3), np.float32), np.full((64, 3), np.nan, np.float32), good.astype(np.float64)]
            results = await asyncio.gather(
                *(batcher.submit(good) for _ in range(4)), *(batcher.submit(b) for b in bad), return_exceptions=True
            )
        finally:
            await batcher.stop()
        return results

    results = asyncio.run(run())
    want = predictor.predict(good[None])[0]
    for row in results[:4]:
        np.testing.assert_allclose(row, want, atol=1e-6)
    assert all(isinstance(r, BadCloud) for r in results[4:])


def test_a_model_failure_on_one_row_spares_the_others():
    def picky(batch):
        if (batch[:, 0, 0] == 7).any():
            raise RuntimeError("row 7 breaks the model")
        return batch[:, 0, :2].astype(np.float64)

    async def run():
        batcher = MicroBatcher(picky, max_batch=8, max_delay_ms=20, row_shape=(4, 3))
        batcher.start()
        try:
            clouds = [np.full((4, 3), v, np.float32) for v in (1, 7, 2, 3)]
            return await asyncio.gather(*(batcher.submit(c) for c in clouds), return_exceptions=True)
        finally:
            await batcher.stop()

    one, seven, two, three = asyncio.run(run())
    assert isinstance(seven, RuntimeError)
    assert [one[0], two[0], three[0]] == [1, 2, 3]


def test_good_clients_beside_bad_clients_never_fail(tiny_artifact, cloud):
    """7 clients send valid clouds while 1 sends grid-snapped, degenerate and malformed ones, all at once."""
    app = create_app(tiny_artifact, ServeSettings(threads=1, max_batch=8, max_delay_ms=5))
    bad_bodies = [
        {"json": {"points": CLOUDS["grid-snapped"].tolist()}},
        {"json": {"points": CLOUDS["30 distinct, each 10 times"].tolist()}},
        {"json": {"points": [[0, 0, 0]] * 10}},
        {"content": b'{"points": [[1,', "headers": {"content-type": "application/json"}},
        {"files": {"file": ("c.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 9\nend_header\n")}},
    ]

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def good_client():
                return [await c.post("/predict", json={"points": cloud.tolist()}) for _ in range(6)]

            async def bad_client():
                return [await c.post("/predict", **bad_bodies[i % len(bad_bodies)]) for i in range(15)]

            return await asyncio.gather(*(good_client() for _ in range(7)), bad_client())

    *good, bad = asyncio.run(run())
    answers = [r for rs in good for r in rs]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200][:3]
    assert len({r.json()["class"] for r in answers}) == 1
    assert all(r.status_code < 500 for r in bad), [r.text for r in bad if r.status_code >= 500]
    assert sum(r.status_code == 200 for r in bad) >= 6  # the grid-snapped and duplicate clouds are valid input
