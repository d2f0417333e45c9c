"""The Open Inference Protocol over gRPC (KServe v2 / Triton ``inference.GRPCInferenceService``): the same models,
micro-batchers, validation and answers as the HTTP v2 routes (:mod:`serving.oip_routes`).

A ``ModelInferRequest`` is turned into exactly the body an HTTP client sends with Triton's binary tensor data
extension (a JSON header naming the input's shape and datatype, then its raw little-endian bytes, taken from
``raw_input_contents`` or from ``contents.fp32_contents`` / ``fp64_contents``), and that body goes through the HTTP
route's own parse job (:func:`serving.jobs.prepare_infer`: :func:`serving.kserve.infer_request`'s checks, then the
one preprocessing), so that there is one validator for both protocols. The answer is the ``probabilities`` output
``[B, C]`` FP32 in ``raw_output_contents`` (as Triton answers), with the top-1 class names as the JSON list in the
response parameter ``classes``.

Errors are gRPC status codes: INVALID_ARGUMENT for input the protocol or the model does not take (what HTTP answers with
a 400 or 422), NOT_FOUND for an unknown model or version (ModelReady answers false, as Triton does), UNAVAILABLE while
the models load or when a parse worker ran out of time, RESOURCE_EXHAUSTED past the in-flight limit, INTERNAL (the
exception's type only) otherwise. The messages are the HTTP answers' ``error`` strings. The generated messages are
``tritonclient.grpc.service_pb2``, the ones Triton's own client sends, rather than a second copy of Triton's
``grpc_service.proto`` compiled here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb

import pointkd

from .context import ServerContext
from .errors import HTTPProblem
from .jobs import REQUEST_ERRORS
from .kserve import OUTPUT, BadRequest
from .oip_routes import model_metadata
from .workers import WorkerFailed

SERVICE = "inference.GRPCInferenceService"
HEALTH_METHODS = frozenset({"ServerLive", "ServerReady"})  # open without a key, as /v2/health/*, and never refused
CONTENTS = {"FP32": ("fp32_contents", "<f4"), "FP64": ("fp64_contents", "<f8")}  # datatype -> typed field, dtype
HTTP_TO_GRPC = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


def infer_body(request: pb.ModelInferRequest) -> tuple[bytes, int]:
    """``request`` as an HTTP v2 infer body with the binary tensor data extension: ``(body, json_length)``, the
    JSON header first. Only the gRPC framing is checked here (one input, its data in one place); the tensor itself
    is checked by :func:`serving.kserve.infer_request`, as for HTTP."""
    if len(request.inputs) != 1:
        raise BadRequest(f"expected one input tensor ('points'), got {len(request.inputs)}")
    tensor = request.inputs[0]
    if "shared_memory_region" in tensor.parameters:
        raise BadRequest("shared memory inputs are not supported; send the data in the request")
    raw = request.raw_input_contents
    if raw and len(raw) != 1:
        raise BadRequest(f"raw_input_contents holds {len(raw)} tensors for 1 input")
    if raw and tensor.HasField("contents"):
        raise BadRequest("an input has both contents and raw_input_contents")
    data = raw[0] if raw else typed_contents(tensor)
    doc: dict = {
        "inputs": [
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "parameters": {"binary_data_size": len(data)},
            }
        ]
    }
    if request.id:
        doc["id"] = request.id
    if request.outputs:
        doc["outputs"] = [
            {"name": out.name, "parameters": {k: parameter(v) for k, v in out.parameters.items()}}
            for out in request.outputs
        ]
    header = json.dumps(doc).encode()
    return header + data, len(header)


def typed_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> bytes:
    """The little-endian bytes of an input's ``contents`` field for its datatype (``fp32_contents`` for FP32,
    ``fp64_contents`` for FP64); another datatype gives no bytes, and its name is refused with the header."""
    held = [field.name for field, _ in tensor.contents.ListFields()]
    if tensor.datatype not in CONTENTS:
        return b""
    name, dtype = CONTENTS[tensor.datatype]
    if any(f != name for f in held):
        raise BadRequest(f"{tensor.datatype} data goes in contents.{name} or raw_input_contents, got contents.{held}")
    return np.asarray(getattr(tensor.contents, name), dtype=dtype).tobytes()


def parameter(value: pb.InferParameter) -> object:
    """An ``InferParameter``'s value (None when unset)."""
    kind = value.WhichOneof("parameter_choice")
    return None if kind is None else getattr(value, kind)


def infer_response(name: str, version: str, probs: np.ndarray, classes: list[str], rid: str | None):
    """The ``ModelInferResponse`` for ``probs`` ``[B, C]``: the ``probabilities`` FP32 output as raw bytes, the id
    echoed, each cloud's top-1 class in the ``classes`` parameter (a JSON list)."""
    response = pb.ModelInferResponse(model_name=name, model_version=version, id=rid or "")
    response.outputs.add(name=OUTPUT, datatype="FP32", shape=list(probs.shape))
    response.raw_output_contents.append(np.ascontiguousarray(probs, dtype="<f4").tobytes())
    response.parameters["classes"].string_param = json.dumps([classes[i] for i in probs.argmax(1)])
    return response


def grpc_status(err: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message a failed RPC answers for ``err`` (an HTTP status mapped, as the HTTP routes
    answer the same error)."""
    if isinstance(err, tuple(REQUEST_ERRORS.values())):
        return grpc.StatusCode.INVALID_ARGUMENT, str(err)
    if isinstance(err, HTTPProblem | WorkerFailed):
        return HTTP_TO_GRPC.get(err.status, grpc.StatusCode.INTERNAL), err.message
    return grpc.StatusCode.INTERNAL, f"internal server error ({type(err).__name__})"


class InferenceService:
    """The six RPCs of ``inference.GRPCInferenceService`` this server answers, from ``ctx``'s models. The others
    (streaming, model config, statistics, repository control, shared memory) are UNIMPLEMENTED."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.limit = ctx.settings.max_in_flight  # RPCs at once, health apart (0: no limit)
        self.in_flight = 0

    async def ServerLive(self, request: pb.ServerLiveRequest, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready="models" in self.ctx.state)

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        """Ready, or not (an unknown model or version, or the models still loading), as Triton answers it."""
        try:
            self.ctx.served_model(request.name or None, request.version or None)
        except HTTPProblem as err:
            if err.status not in (404, 503):
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="pointkd", version=pointkd.__version__, extensions=["binary_tensor_data"])

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        meta = model_metadata(self.ctx.served_model(request.name or None, request.version or None).predictor)
        tensors = {
            key: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta[key]] for key in ("inputs", "outputs")
        }
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"], **tensors
        )

    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        served = self.ctx.served_model(request.model_name or None, request.model_version or None)
        p = served.predictor
        body, json_length = infer_body(request)
        info, clouds = await self.ctx.parse(
            self.ctx.raw_pool, "infer", self.ctx.job_meta(p, json_length=json_length), body
        )
        probs = await asyncio.gather(*(served.batcher.submit(c) for c in clouds))
        return infer_response(p.name, p.version, np.stack(probs).astype(np.float32), p.classes, info.get("id"))

    def handler(self, method: str) -> Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]:
        """``method`` behind the in-flight limit (health apart), its errors answered as status codes, counted and
        timed in the server's request metrics (endpoint ``grpc:<method>``, status: the code's name)."""
        run = getattr(self, method)
        limited = method not in HEALTH_METHODS and self.limit > 0
        endpoint = f"grpc:{method}"

        async def call(request, context: grpc.aio.ServicerContext):
            start = time.perf_counter()
            code, message, response = grpc.StatusCode.OK, "", None
            if limited and self.in_flight >= self.limit:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                message = f"the server is working on {self.limit} requests, its limit; retry shortly"
            else:
                self.in_flight += limited
                try:
                    response = await run(request, context)
                except asyncio.CancelledError:  # the client went away, or its deadline passed
                    self.record(endpoint, grpc.StatusCode.CANCELLED, start)
                    raise
                except Exception as err:
                    code, message = grpc_status(err)
                finally:
                    self.in_flight -= limited
            self.record(endpoint, code, start)
            if code is grpc.StatusCode.OK:
                return response
            await context.abort(code, message)

        return call

    def record(self, endpoint: str, code: grpc.StatusCode, start: float) -> None:
        self.ctx.metrics.requests.labels(endpoint, code.name).inc()
        self.ctx.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")


def generic_handler(service: InferenceService) -> grpc.GenericRpcHandler:
    """The service's RPCs under ``inference.GRPCInferenceService``, (de)serialised with tritonclient's messages."""
    handlers = {
        m: grpc.unary_unary_rpc_method_handler(
            service.handler(m),
            request_deserializer=getattr(pb, f"{m}Request").FromString,
            response_serializer=getattr(pb, f"{m}Response").SerializeToString,
        )
        for m in METHODS
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
