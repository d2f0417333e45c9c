"""Parse worker processes: a reader crash, exit, hang or memory blow-up costs only its own request, the worker is
replaced, and the server (health, other requests, identical answers) carries on. The faults are injected through
``ServeSettings(worker_faults=True)``, which the command line never sets."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving import ServeSettings, create_app
from serving.worker_main import FAULT_CTYPE

BODY_LIMIT = 1 << 20
TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def client(tiny_artifact):
    settings = ServeSettings(  # raw float32 answers through the workers too: they are the "other requests" here
        threads=1,
        max_body_bytes=BODY_LIMIT,
        parse_timeout_s=TIMEOUT_S,
        worker_memory_x=16,
        worker_faults=True,
        raw_in_threads=False,
    )
    with TestClient(create_app(tiny_artifact, settings)) as c:
        yield c


def pool_of(client):
    return client.app.state.serving["pool"]


def fault(client, name: str):
    return client.post("/predict", content=name.encode(), headers={"content-type": FAULT_CTYPE})


def wait_until_busy(pool, busy: int = 1, timeout_s: float = 30) -> None:
    """Until ``busy`` workers of ``pool`` hold a job (are out of its idle queue)."""
    deadline = time.monotonic() + timeout_s
    while pool.idle is None or pool.size - pool.idle.qsize() < busy:
        assert time.monotonic() < deadline, "the hung job never reached a worker"
        time.sleep(0.01)


def answer(client, cloud) -> dict:
    r = client.post("/predict?top_k=8", content=cloud.tobytes(), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    return {row["class"]: row["probability"] for row in r.json()["top_k"]}


def wait_for_workers(client, count: int = 2, timeout_s: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pool = pool_of(client)
        if len(pool.pids()) == count and pool.idle is not None and pool.idle.qsize() == count:
            return pool.pids()
        time.sleep(0.05)
    raise AssertionError(f"the pool did not get back to {count} idle workers")


def test_workers_start_warm_and_capped(client):
    pool = pool_of(client)
    workers = pool.workers
    assert len(workers) == 2
    for w in workers:
        info = w.info
        assert info["limit_bytes"] == info["baseline_bytes"] + 16 * BODY_LIMIT
        limits = Path(f"/proc/{info['pid']}/limits").read_text()
        row = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
        assert row.split()[3] == str(info["limit_bytes"])  # soft limit, in bytes


@pytest.mark.parametrize(
    "name, status, message, reason",
    [
        ("segfault", 422, "crashed the worker reading it (killed by SIGSEGV)", "crash"),
        ("exit", 422, "crashed the worker reading it (exit status 3)", "crash"),
        ("memory", 422, "needed more memory than this server allows", "memory"),
        ("hang", 503, f"took over {TIMEOUT_S:g} s", "timeout"),
    ],
)
def test_a_broken_worker_costs_only_its_request(client, cloud, name, status, message, reason):
    want = answer(client, cloud)
    before = wait_for_workers(client)
    r = fault(client, name)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert (r.headers.get("retry-after") == "1") == (status == 503)
    assert answer(client, cloud) == want  # at once, from the other worker
    after = wait_for_workers(client)
    assert len(set(before) - set(after)) == 1  # exactly one worker was replaced
    assert answer(client, cloud) == want
    metrics = client.get("/metrics").text
    assert f'pointkd_parse_worker_replacements_total{{reason="{reason}"}}' in metrics


def test_health_and_other_requests_answer_during_a_hang(client, cloud):
    want = answer(client, cloud)
    wait_for_workers(client)
    with ThreadPoolExecutor(1) as one:
        hung = one.submit(fault, client, "hang")
        wait_until_busy(pool_of(client))
        health_s, answers = [], []
        while not hung.done():
            start = time.perf_counter()
            assert client.get("/v2/health/ready").status_code == 200
            health_s.append(time.perf_counter() - start)
            answers.append(answer(client, cloud))
        assert hung.result().status_code == 503
    # A blocked event loop would hold every probe for the whole hang (TIMEOUT_S); slack for busy shared cores.
    assert len(answers) >= 2 and all(a == want for a in answers)
    assert max(health_s) < TIMEOUT_S / 2, health_s


def test_an_unexpected_reader_error_is_a_500_and_the_worker_stays(client):
    before = wait_for_workers(client)
    r = fault(client, "raise")
    assert r.status_code == 500 and r.json() == {"error": "internal server error (RuntimeError)"}
    assert wait_for_workers(client) == before


def test_faults_are_unreachable_unless_enabled(tiny_artifact):
    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1, parse_workers=1))) as plain:
        r = fault(plain, "segfault")
        assert r.status_code == 415 and "not supported" in r.json()["error"]
        assert len(pool_of(plain).pids()) == 1


def test_thread_fallback_gives_identical_answers(client, tiny_artifact, cloud):
    want = answer(client, cloud)
    with TestClient(create_app(tiny_artifact, ServeSettings(threads=1, parse_workers=0))) as threads:
        assert pool_of(threads).pids() == []
        assert answer(threads, cloud) == want
        assert fault(threads, "segfault").status_code == 415


def test_raw_float32_is_parsed_in_threads_by_default(client, tiny_artifact, cloud):
    """No file reader touches a raw float32 body, so by default it skips the worker hop: it is answered while the
    only worker hangs, with the answer the workers give."""
    want = answer(client, cloud)
    settings = ServeSettings(threads=1, parse_workers=1, parse_timeout_s=3.0, worker_faults=True)
    with TestClient(create_app(tiny_artifact, settings)) as c:
        assert c.app.state.serving["raw_pool"].pids() == []  # threads of the server
        with ThreadPoolExecutor(1) as one:
            hung = one.submit(fault, c, "hang")
            wait_until_busy(pool_of(c))
            assert answer(c, cloud) == want
            assert hung.result().status_code == 503
        json_body = {"points": cloud.tolist()}
        assert c.post("/predict?top_k=8", json=json_body).status_code == 200  # other formats: the (new) worker


@pytest.mark.parametrize("in_threads", [True, False])
def test_json_bodies_skip_the_workers_unless_told_not_to(tiny_artifact, cloud, in_threads):
    """JSON is parsed by orjson under the body and value limits: by default in threads (answered while the only
    worker hangs); with json_in_threads off it waits for a worker like the file formats."""
    settings = ServeSettings(
        threads=1, parse_workers=1, parse_timeout_s=2.0, worker_faults=True, json_in_threads=in_threads
    )
    body = {"points": cloud.tolist()}
    with TestClient(create_app(tiny_artifact, settings)) as c:
        want = {row["class"]: row["probability"] for row in c.post("/predict?top_k=8", json=body).json()["top_k"]}
        with ThreadPoolExecutor(1) as one:
            hung = one.submit(fault, c, "hang")
            wait_until_busy(pool_of(c))
            r = c.post("/predict?top_k=8", json=body)
            if in_threads:
                assert r.status_code == 200
                assert {row["class"]: row["probability"] for row in r.json()["top_k"]} == pytest.approx(want)
            else:
                assert r.status_code == 503  # no free worker within the parse timeout
            assert hung.result().status_code == 503
