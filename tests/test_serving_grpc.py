"""The Open Inference Protocol over gRPC (``pointkd serve --grpc-port``), checked on a real ``python -m pointkd serve``
subprocess on 127.0.0.1 with Triton's own gRPC client (``tritonclient.grpc``) and the raw generated stub: health,
metadata, inference that matches the HTTP v2 route for the same clouds (raw and typed contents), status codes for
bad input, unknown models, missing and wrong keys and an oversized message, the in-flight limit, TLS, and a clear
error for the flag without grpcio."""

from __future__ import annotations

import asyncio
import ssl
import sys

import httpx
import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc as pb_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from serving.launch import free_port, start_server, stop_server  # noqa: E402

KEY = "grpc-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
MAX_BODY_MB = 1


@pytest.fixture(scope="module")
def ports(tiny_artifact):
    """(HTTP port, gRPC port) of one server with a key, 1 MiB bodies and threads for parsing."""
    http_port, grpc_port = free_port(), free_port()
    args = ("--threads", "1", "--parse-workers", "0", "--api-key", KEY, "--max-body-mb", str(MAX_BODY_MB))
    server = start_server(
        tiny_artifact, http_port, *args, "--grpc-port", str(grpc_port), quiet=True, ready_timeout_s=600
    )
    try:
        yield http_port, grpc_port
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def client(ports):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(ports):
    """The generated stub, for requests tritonclient never builds (typed contents, malformed framing)."""
    channel = grpc.insecure_channel(f"127.0.0.1:{ports[1]}")
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def name(client) -> str:
    """The model's name, from its metadata (an empty name picks the one model a server serves)."""
    return client.get_model_metadata("", headers=AUTH).name


@pytest.fixture(scope="module")
def clouds(tiny_data):
    return tiny_data.test_x[:3].numpy().astype(np.float32)


def points(clouds: np.ndarray, datatype: str = "FP32"):
    tensor = grpcclient.InferInput("points", list(clouds.shape), datatype)
    tensor.set_data_from_numpy(clouds)
    return tensor


def code(err: pytest.ExceptionInfo) -> str:
    return err.value.status()


def http_infer(port: int, name: str, clouds: np.ndarray) -> dict:
    """The HTTP v2 route's JSON answer for the same clouds."""
    doc = {
        "inputs": [{"name": "points", "shape": list(clouds.shape), "datatype": "FP32", "data": clouds.ravel().tolist()}]
    }
    r = httpx.post(f"http://127.0.0.1:{port}/v2/models/{name}/infer", json=doc, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_health_is_open_and_metadata_needs_the_key(client, name):
    assert client.is_server_live() and client.is_server_ready()  # no key: health is open, as over HTTP
    meta = client.get_server_metadata(headers=AUTH)
    assert meta.name == "pointkd" and meta.version
    model = client.get_model_metadata(name, headers=AUTH)
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("points", "FP32", [-1, -1, 3])]
    assert model.outputs[0].name == "probabilities" and model.outputs[0].shape[-1] == 8
    assert client.is_model_ready(name, headers=AUTH)
    assert client.is_model_ready(name, model.versions[0], headers=AUTH)
    assert not client.is_model_ready(name, "0", headers=AUTH) and not client.is_model_ready("resnet50", headers=AUTH)
    with pytest.raises(InferenceServerException, match="no model 'resnet50'") as err:
        client.get_model_metadata("resnet50", headers=AUTH)
    assert code(err) == "StatusCode.NOT_FOUND"


def test_infer_matches_the_http_route(client, ports, name, clouds):
    result = client.infer(name, [points(clouds)], request_id="r1", headers=AUTH)
    got = result.as_numpy("probabilities")
    want = http_infer(ports[0], name, clouds)
    assert got.shape == (3, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(want["outputs"][0]["data"]).reshape(3, 8), atol=1e-6)
    response = result.get_response()
    assert response.id == "r1" and response.model_name == name
    classes = response.parameters["classes"].string_param
    assert classes == '["' + '", "'.join(want["parameters"]["classes"]) + '"]'
    one = client.infer(name, [points(clouds[0])], headers={"x-api-key": KEY})  # [P, 3]: one cloud; the other header
    np.testing.assert_allclose(one.as_numpy("probabilities")[0], got[0], atol=1e-6)


def test_typed_fp32_contents_match_raw_contents(stub, client, name, clouds):
    request = pb.ModelInferRequest(model_name=name)
    tensor = request.inputs.add(name="points", datatype="FP32", shape=list(clouds.shape))
    tensor.contents.fp32_contents.extend(clouds.ravel().tolist())
    response = stub.ModelInfer(request, metadata=list(AUTH.items()), timeout=60)
    typed = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 8)
    raw = client.infer(name, [points(clouds)], headers=AUTH).as_numpy("probabilities")
    np.testing.assert_allclose(typed, raw, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "datatype", "match"),
    [
        ([3, 128, 4], "FP32", "shape must end in 3"),
        ([3, 64, 3], "FP32", "needs 2304"),
        ([0, 128, 3], "FP32", "batch of 0 clouds"),
        ([3, 128, 3], "INT32", "datatype must be FP32 or FP64"),
        ([3, 128, 3], "FP16", "datatype must be FP32 or FP64"),
    ],
)
def test_bad_shapes_and_datatypes_are_invalid_argument(stub, client, name, clouds, shape, datatype, match):
    dtype = {"FP32": np.float32, "INT32": np.int32, "FP16": np.float16}[datatype]
    request = pb.ModelInferRequest(model_name=name, raw_input_contents=[clouds.astype(dtype).tobytes()])
    request.inputs.add(name="points", datatype=datatype, shape=shape)  # what it claims, whatever the bytes
    with pytest.raises(grpc.RpcError) as rpc:
        stub.ModelInfer(request, metadata=list(AUTH.items()), timeout=60)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and match in rpc.value.details()
    if shape == list(clouds.shape):  # the same through Triton's client
        with pytest.raises(InferenceServerException, match=match) as err:
            client.infer(name, [points(clouds.astype(dtype), datatype)], headers=AUTH)
        assert code(err) == "StatusCode.INVALID_ARGUMENT"


def test_bad_clouds_framing_and_outputs_are_invalid_argument(stub, client, name, clouds):
    bad = clouds.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InferenceServerException, match="NaN") as err:
        client.infer(name, [points(bad)], headers=AUTH)
    assert code(err) == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="unknown output 'logits'") as err:
        client.infer(name, [points(clouds)], outputs=[grpcclient.InferRequestedOutput("logits")], headers=AUTH)
    assert code(err) == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="one input tensor") as err:
        client.infer(name, [points(clouds), points(clouds)], headers=AUTH)
    assert code(err) == "StatusCode.INVALID_ARGUMENT"
    request = pb.ModelInferRequest(model_name=name, raw_input_contents=[clouds.tobytes()])
    tensor = request.inputs.add(name="points", datatype="FP32", shape=list(clouds.shape))
    tensor.contents.int_contents.extend([1, 2, 3])
    with pytest.raises(grpc.RpcError) as rpc:
        stub.ModelInfer(request, metadata=list(AUTH.items()), timeout=60)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "both contents and raw" in rpc.value.details()
    with pytest.raises(InferenceServerException, match="has no version '7'") as err:
        client.infer(name, [points(clouds)], model_version="7", headers=AUTH)
    assert code(err) == "StatusCode.NOT_FOUND"


def test_a_missing_or_wrong_key_is_unauthenticated(client, name, clouds):
    for headers in (None, {"authorization": "Bearer nope"}, {"x-api-key": "nope"}, {"authorization": KEY}):
        with pytest.raises(InferenceServerException) as err:
            client.infer(name, [points(clouds)], headers=headers)
        assert code(err) == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException) as err:
            client.get_model_metadata(name, headers=headers)
        assert code(err) == "StatusCode.UNAUTHENTICATED"
    assert "not valid" in str(err.value) or "needs an API key" in str(err.value)
    assert client.infer(name, [points(clouds)], headers={"authorization": f"bearer {KEY}"}).as_numpy(
        "probabilities"
    ).shape == (3, 8)


def test_an_oversized_message_is_refused_and_the_server_carries_on(client, ports, name, clouds):
    big = np.random.default_rng(0).standard_normal((1, (MAX_BODY_MB << 20) // 12 + 1024, 3)).astype(np.float32)
    with pytest.raises(InferenceServerException) as err:
        client.infer(name, [points(big)], headers=AUTH)
    assert code(err) == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_ready()
    assert client.infer(name, [points(clouds)], headers=AUTH).as_numpy("probabilities").shape == (3, 8)
    metrics = httpx.get(f"http://127.0.0.1:{ports[0]}/metrics", headers=AUTH, timeout=30).text
    assert 'endpoint="grpc:ModelInfer",status="OK"' in metrics  # gRPC RPCs are counted beside HTTP requests


class Aborted(Exception):
    pass


class FakeContext:
    """A ``grpc.aio.ServicerContext`` reduced to ``abort``, which raises (as grpc's does)."""

    def __init__(self):
        self.code = None

    async def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted(details)


def test_the_in_flight_limit_is_resource_exhausted_and_spares_health():
    from serving.context import ServerContext
    from serving.grpc_service import InferenceService
    from serving.settings import ServeSettings

    async def scenario():
        service = InferenceService(ServerContext(ServeSettings(max_in_flight=2)))
        gate = asyncio.Event()

        async def slow(request, context):
            await gate.wait()
            return pb.ModelInferResponse(model_name="m")

        service.ModelInfer = slow
        infer, live = service.handler("ModelInfer"), service.handler("ServerLive")
        running = [asyncio.create_task(infer(None, FakeContext())) for _ in range(2)]
        await asyncio.sleep(0)
        refused = FakeContext()
        with pytest.raises(Aborted, match="working on 2 requests"):
            await infer(None, refused)
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await live(pb.ServerLiveRequest(), FakeContext())).live  # health is never refused
        gate.set()
        assert [r.model_name for r in await asyncio.gather(*running)] == ["m", "m"]
        assert service.in_flight == 0
        assert (await infer(None, FakeContext())).model_name == "m"

    asyncio.run(scenario())


def test_the_flag_without_grpcio_is_a_clear_error(monkeypatch, capsys):
    from pointkd.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["serve", "x", "--grpc-port", "9999"])
    for module in ("grpc", "serving.grpc_server", "serving.grpc_service"):
        monkeypatch.setitem(sys.modules, module, None)  # import grpc raises ImportError, as when it is absent
    from serving.grpc_cli import attach_grpc

    with pytest.raises(SystemExit):
        attach_grpc(object(), args, parser)
    assert "pip install 'pointkd[grpc]'" in capsys.readouterr().err
    assert attach_grpc("app", parser.parse_args(["serve", "x"]), parser) == "app"  # off: nothing imported


def test_tls_with_the_http_servers_certificate(tiny_artifact, tmp_path, clouds):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    http_port, grpc_port = free_port(), free_port()
    args = ("--threads", "1", "--parse-workers", "0", "--ssl-certfile", str(tmp_path / "server.pem"))
    verify = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    proc = start_server(
        tiny_artifact,
        http_port,
        *args,
        "--grpc-port",
        str(grpc_port),
        quiet=True,
        ready_timeout_s=600,
        tls_verify=verify,
    )
    try:
        url = f"127.0.0.1:{grpc_port}"
        client = grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(tmp_path / "ca.pem"))
        name = client.get_model_metadata("").name
        assert client.infer(name, [points(clouds)]).as_numpy("probabilities").shape == (3, 8)  # no key: none set
        with pytest.raises(InferenceServerException) as err:  # plain text to the TLS port
            grpcclient.InferenceServerClient(url).is_server_live(client_timeout=10)
        assert code(err) == "StatusCode.UNAVAILABLE"
    finally:
        stop_server(proc)
