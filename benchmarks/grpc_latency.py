"""Round-trip latency of `pointkd serve`'s Open Inference Protocol over gRPC against HTTP with binary tensors.

Starts one server (``--grpc-port``) on a compiled artifact, then sends the same real test clouds (1024 points, so the
server also resamples them) one request at a time, paced at ``--rate`` requests/s (no two in flight: each protocol
sees the same idle gaps), through four clients taking turns request by request, so that drift on a shared machine
reaches all four alike:

- ``grpc``: Triton's gRPC client, ``tritonclient.grpc.InferenceServerClient.infer`` (raw input contents);
- ``grpc-stub``: the generated stub with a prebuilt ``ModelInferRequest`` (the least client work gRPC allows);
- ``http-binary``: one kept-alive ``http.client`` connection posting a prebuilt v2 infer body with Triton's binary
  tensor data extension (the load test's ``v2-binary`` payload; the least client work HTTP allows);
- ``http``: Triton's HTTP client, ``tritonclient.http.InferenceServerClient.infer`` (binary data).

Each answer's probabilities are checked against the first client's for the same cloud. The server settings are the
load test's defaults (benchmarks/load_test.py). Client and server share this machine's cores.

Run (while the training campaign is paused): ``python benchmarks/grpc_latency.py ARTIFACT_DIR`` ->
``benchmarks/results/grpc_latency.{json,md}``.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from pointkd.bench import device_id, device_info
from pointkd.data import load_modelnet40
from pointkd.documents import write_result
from pointkd.process import busy_cores, cpu_model
from pointkd.runtime.manifest import read_manifest
from pointkd.timing import percentile
from serving.launch import free_port, server_stack, start_server, stop_server

RESULTS = Path(__file__).parent / "results"
CLIENTS = ("grpc", "grpc-stub", "http-binary", "http")
Client = Callable[[int], np.ndarray]  # cloud index -> probabilities [1, C]


def v2_binary_body(cloud: np.ndarray) -> tuple[bytes, int]:
    """A v2 infer body with the binary tensor data extension asking for a binary output, and its JSON length."""
    data = cloud.astype("<f4").tobytes()
    tensor = {"name": "points", "shape": [1, *cloud.shape], "datatype": "FP32"}
    tensor["parameters"] = {"binary_data_size": len(data)}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    return header + data, len(header)


def http_binary_client(port: int, model: str, clouds: np.ndarray) -> Client:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bodies = [v2_binary_body(c) for c in clouds]
    path = f"/v2/models/{model}/infer"

    def call(i: int) -> np.ndarray:
        body, length = bodies[i]
        headers = {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(length)}
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
        n = int(r.getheader("Inference-Header-Content-Length"))
        return np.frombuffer(data, "<f4", offset=n)[None]

    return call


def grpc_stub_client(port: int, model: str, clouds: np.ndarray) -> Client:
    import grpc

    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    requests = []
    for c in clouds:
        request = pb.ModelInferRequest(model_name=model, raw_input_contents=[c.astype("<f4").tobytes()])
        request.inputs.add(name="points", datatype="FP32", shape=[1, *c.shape])
        requests.append(request)

    def call(i: int) -> np.ndarray:
        return np.frombuffer(stub.ModelInfer(requests[i], timeout=30).raw_output_contents[0], "<f4")[None]

    return call


def triton_client(module, url: str, model: str, clouds: np.ndarray) -> Client:
    """``module`` is tritonclient.grpc or tritonclient.http; the input built per request, as a caller would."""
    client = module.InferenceServerClient(url)

    def call(i: int) -> np.ndarray:
        tensor = module.InferInput("points", [1, *clouds[i].shape], "FP32")
        tensor.set_data_from_numpy(clouds[i][None])
        return client.infer(model, [tensor]).as_numpy("probabilities")

    return call


def paced(clients: dict[str, Client], n: int, rate: float, reference: dict[int, np.ndarray]) -> dict[str, dict]:
    """``n`` rounds; in each, every client sends one request (the order rotating), each request starting ``1/rate``
    s after the last one started. Latencies in ms, errors, and the largest |Δp| from ``reference``."""
    names = list(clients)
    times: dict[str, list[float]] = {k: [] for k in names}
    errors = dict.fromkeys(names, 0)
    diff = dict.fromkeys(names, 0.0)
    period = 1.0 / rate
    next_start = time.perf_counter()
    for r in range(n):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            delay = next_start - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_start = max(next_start + period, time.perf_counter())
            i = r % len(reference)
            start = time.perf_counter()
            try:
                probs = clients[name](i)
            except Exception:
                errors[name] += 1
                continue
            times[name].append((time.perf_counter() - start) * 1000)
            diff[name] = max(diff[name], float(np.abs(probs - reference[i]).max()))
    return {k: summary(times[k]) | {"errors": errors[k], "max_abs_diff": diff[k]} for k in names}


def summary(times: list[float]) -> dict:
    if not times:
        return {"requests": 0}
    return {
        "requests": len(times),
        "p50_ms": percentile(times, 50),
        "p90_ms": percentile(times, 90),
        "p99_ms": percentile(times, 99),
        "mean_ms": statistics.fmean(times),
        "max_ms": max(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--requests", type=int, default=500, help="requests per client")
    parser.add_argument("--rate", type=float, default=50.0, help="requests started per second, over all clients")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="server ONNX Runtime threads")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    manifest = read_manifest(args.artifact)
    clouds = load_modelnet40(args.data).test_x[:64].numpy().astype(np.float32)
    gc.collect()
    gc.freeze()  # as the load test: the data's heap is no garbage, and a full collection would stall a client
    busy = busy_cores()
    http_port, grpc_port = free_port(), free_port()
    serve_args = ["--threads", str(args.threads), "--max-batch", "8", "--max-delay-ms", "0", "--spin"]
    serve_args += ["--parse-workers", "2", "--raw-in-threads", "--grpc-port", str(grpc_port)]
    loop, http_parser = server_stack()
    server = start_server(args.artifact, http_port, *serve_args)
    model = (manifest.get("model") or {}).get("name") or args.artifact.name
    try:
        clients = {
            "grpc": triton_client(grpcclient, f"127.0.0.1:{grpc_port}", model, clouds),
            "grpc-stub": grpc_stub_client(grpc_port, model, clouds),
            "http-binary": http_binary_client(http_port, model, clouds),
            "http": triton_client(httpclient, f"127.0.0.1:{http_port}", model, clouds),
        }
        reference = {i: clients["http-binary"](i) for i in range(len(clouds))}
        paced(clients, args.warmup, args.rate, reference)
        rows = paced(clients, args.requests, args.rate, reference)
    finally:
        stop_server(server)
    report = {
        "cpu": cpu_model(),
        "device": device_id(device_info()),
        "busy_cores_before": busy,
        "artifact": str(args.artifact),
        "model_sha256": manifest["files"][manifest["model_file"]],
        "model": manifest["model"]["name"],
        "format": manifest["artifact_format"],
        "num_points": manifest["input"]["num_points"],
        "cloud_points_sent": int(clouds.shape[1]),
        "server": {"threads": args.threads, "max_batch": 8, "spin": True, "parse_workers": 2, "loop": loop},
        "rate": args.rate,
        "clients": {
            "grpc": f"tritonclient.grpc {version('tritonclient')} (grpcio {version('grpcio')})",
            "grpc-stub": "tritonclient's generated stub, prebuilt request",
            "http-binary": "http.client, kept-alive connection, prebuilt v2 binary body",
            "http": "tritonclient.http (geventhttpclient), binary data",
        },
        "rows": rows,
    }
    lines = [
        "# gRPC against HTTP: round trips to `pointkd serve` on 127.0.0.1",
        "",
        f"Model {report['model']} ({report['format']}, {report['num_points']} points, `{args.artifact}`); "
        f"{report['cloud_points_sent']}-point test clouds, one request at a time, started at {args.rate:g}/s over "
        f"the four clients taking turns ({args.requests} each after {args.warmup} untimed rounds). Server: "
        f"{args.threads} ORT thread(s), spinning, 2 parse workers, raw bodies parsed in threads, uvicorn on "
        f"{loop} + {http_parser}, gRPC on grpc.aio in the same process. CPU: {report['cpu']} (client and server "
        f"share it; busy cores before: {busy:.2f}). Written by `benchmarks/grpc_latency.py`.",
        "",
        "| client | protocol | requests | errors | p50 ms | p90 ms | p99 ms | mean ms | max ms | max abs Δp |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in CLIENTS:
        r = rows[name]
        protocol = "gRPC" if name.startswith("grpc") else "HTTP, binary tensors"
        lines.append(
            f"| {report['clients'][name]} | {protocol} | {r['requests']} | {r['errors']} | {r['p50_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['max_ms']:.2f} | "
            f"{r['max_abs_diff']:.1e} |"
        )
    write_result(args.out_dir, "grpc_latency", report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
