"""Access control (API keys) in process, the in-flight limit, and ``pointkd serve``'s edge options as uvicorn gets
them. The same against a real server subprocess, with TLS and the attacks, is tests/test_serving_edge.py."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from serving import ServeSettings, create_app
from serving.access import ApiKeyGuard, is_loopback, key_matches, load_api_keys, presented_key
from serving.middleware import InFlightLimit

RAW = {"content-type": "application/octet-stream"}


def test_keys_come_from_flags_files_and_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "keys"
    f.write_text("# operators\nalpha\n\n  beta  \n")
    monkeypatch.setenv("POINTKD_API_KEY", "gamma")
    assert load_api_keys(["delta", "alpha"], [f]) == ("delta", "alpha", "beta", "gamma")
    monkeypatch.delenv("POINTKD_API_KEY")
    assert load_api_keys() == ()
    with pytest.raises(ValueError, match="whitespace"):
        load_api_keys(["two words"])


def test_loopback_hosts():
    assert all(map(is_loopback, ("127.0.0.1", "127.3.2.1", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.4", "example.org")))


def test_presented_key_and_comparison():
    assert presented_key([(b"authorization", b"Bearer k1")]) == b"k1"
    assert presented_key([(b"authorization", b"bearer  k1 ")]) == b"k1"
    assert presented_key([(b"authorization", b"Basic azE=")]) is None
    assert presented_key([(b"x-api-key", b"k2")]) == b"k2"
    assert key_matches(b"k2", (b"k1", b"k2")) and not key_matches(b"k", (b"k1", b"k2"))


@pytest.fixture(scope="module")
def guarded(tiny_artifact):
    settings = ServeSettings(threads=1, parse_workers=0, api_keys=("k1", "k2"))
    with TestClient(create_app(tiny_artifact, settings)) as c:
        yield c


def test_a_request_without_a_valid_key_is_401_before_its_body_is_read(guarded, cloud):
    body = cloud.tobytes()
    for headers in ({}, {"x-api-key": "k3"}, {"authorization": "Bearer k1x"}, {"authorization": "Basic k1"}):
        r = guarded.post("/predict", content=body, headers={**RAW, **headers})
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert list(r.json()) == ["error"] and "key" in r.json()["error"]
    for headers in ({"x-api-key": "k1"}, {"authorization": "Bearer k2"}, {"authorization": "bearer k1"}):
        r = guarded.post("/predict", content=body, headers={**RAW, **headers})
        assert r.status_code == 200, (headers, r.text)


def test_health_is_open_and_the_rest_is_guarded(guarded):
    for url in ("/v2/health/live", "/v2/health/ready"):
        assert guarded.get(url).status_code == 200
        assert guarded.head(url).status_code == 200
    for url in ("/metrics", "/v2", "/v2/models/dgcnn_student", "/openapi.json", "/no/such/path"):
        assert guarded.get(url).status_code == 401, url
    assert guarded.get("/metrics", headers={"x-api-key": "k2"}).status_code == 200
    assert 'status="401"' in guarded.get("/metrics", headers={"x-api-key": "k2"}).text


def test_guard_health_and_open_metrics():
    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    c = TestClient(ApiKeyGuard(ok, ("k",), guard_health=True, open_metrics=True))  # no lifespan: no `with`
    assert c.get("/v2/health/ready").status_code == 401
    assert c.get("/v2/health/ready", headers={"x-api-key": "k"}).status_code == 200
    assert c.get("/metrics").status_code == 200
    assert TestClient(ApiKeyGuard(ok, ())).get("/predict").status_code == 200  # no keys: no access control


def test_requests_past_the_in_flight_limit_are_503_and_health_still_answers():
    gate = asyncio.Event()

    async def slow(scope, receive, send):
        if scope["path"] == "/slow":
            await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = InFlightLimit(slow, limit=2)

    async def call(path):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await limited({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    async def run():
        held = [asyncio.create_task(call("/slow")) for _ in range(2)]
        await asyncio.sleep(0.01)
        refused = await call("/predict")
        health = await call("/v2/health/ready")
        gate.set()
        return refused, health, [await t for t in held], limited.in_flight

    (status, headers), health, held, left = asyncio.run(run())
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert health[0] == 200 and [s for s, _ in held] == [200, 200] and left == 0


def test_serve_gives_uvicorn_the_edge_protocol_tls_and_warns_without_a_key(tiny_artifact, monkeypatch, capsys):
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from pointkd.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.delenv("POINTKD_API_KEY", raising=False)
    args = ["serve", str(tiny_artifact), "--host", "0.0.0.0", "--http", "httptools", "--header-timeout-s", "3"]
    assert main([*args, "--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem", "--max-header-kib", "4"]) == 0
    assert "WARNING" in capsys.readouterr().err
    assert issubclass(seen["http"], HttpToolsProtocol)
    limits = seen["http"].edge_limits
    assert limits.header_timeout_s == 3 and limits.max_header_bytes == 4096
    assert (seen["ssl_certfile"], seen["ssl_keyfile"]) == ("c.pem", "k.pem")
    assert main([*args, "--api-key", "k"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    monkeypatch.setenv("POINTKD_API_KEY", "k")
    assert main(["serve", str(tiny_artifact), "--host", "127.0.0.1"]) == 0
    assert "WARNING" not in capsys.readouterr().err
