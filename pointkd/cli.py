"""The ``pointkd`` command line. Heavy imports happen inside the commands, after jemalloc is set up."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import SIGMA_RULES
from .runtime.formats import ARTIFACT_FORMATS, FORMAT_NAMES

if TYPE_CHECKING:
    from .data import PointCloudSplits
    from .train.metrics import ClassificationReport

LONG_RUNNING = {"train", "eval", "distill", "bench", "compile", "demo"}
TORCH_FREE = {"predict", "export"}  # commands that import torch only when their model is a checkpoint


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default=None,
        help="ModelNet40 source: a .npz, the .off mesh tree, modelnet40_ply_hdf5_2048/, a folder of clouds, or "
        "'synthetic'. Default: $POINTKD_DATA, else ../shared/data/modelnet40_1024/modelnet40_1024.npz",
    )


def _set_arg(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def _run_args(p: argparse.ArgumentParser) -> None:
    _data_arg(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    _set_arg(p, "override any config key, e.g. --set data.num_points=256 --set model.overrides.k=16")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pointkd",
        description="Train DGCNN teachers on ModelNet40, distil them into small students with LSP, "
        "compile and serve them.",
    )
    parser.add_argument("--version", action="version", version=f"pointkd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        add_data,
        add_train,
        add_distill,
        add_eval,
        add_slim,
        add_models,
        add_serve,
        add_predict,
        add_export,
        add_compile,
        add_bench,
        add_select,
        add_demo,
        add_campaign,
    ):
        add(sub)
    return parser


def add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect and check a ModelNet40 source")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    info = data_sub.add_parser("info", help="per-split counts per class, and checks of the data")
    _data_arg(info)
    info.add_argument("--num-points", type=int, default=1024, help="points per cloud for mesh/folder sources")
    info.add_argument("--json", action="store_true", help="print the report as JSON")


def add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a model (supervised)",
        description="Train a registered model on ModelNet40. Writes last.pt (resumable), best.pt, metrics.jsonl "
        "and config.yaml to --out. Shipped configs: teacher_paper (GPU recipe), teacher_cpu, student_cpu, "
        "quickstart. Runs on N processes with `torchrun --nproc_per_node=N -m pointkd train ...` (DDP: gloo on "
        "CPU, nccl on CUDA; train.batch_size is the global batch; --set train.sync_bn=true on CUDA).",
    )
    train.add_argument("--config", default=None, help="shipped config name or YAML path (default: teacher_cpu)")
    train.add_argument("--model", default=None, help="registered model name (overrides the config's model)")
    _run_args(train)


def add_distill(sub: argparse._SubParsersAction) -> None:
    distill = sub.add_parser(
        "distill",
        help="distil a trained teacher into a student (LSP, KD, FitNet, AT, HKD, layer attention)",
        description="Train a student against a frozen teacher checkpoint. The objective is a weighted sum of "
        "registered losses: a --method preset (scratch, kd, fitnet, at, lsp, lsp+kd, hkd, hkd+kd, layer_attention; "
        "--list-methods shows what each expands to), or a config's distill.terms (pointkd/configs/"
        "distill_terms.yaml). Shipped configs: distill_cpu (CPU budget), distill_paper (the paper's protocol), "
        "distill_terms. Writes the same run folder as `train`. Runs under `torchrun --nproc_per_node=N -m pointkd "
        "distill ...` too (DDP).",
    )
    distill.add_argument("--teacher", default=None, help="the teacher's checkpoint (required unless --method scratch)")
    distill.add_argument("--student", default=None, help="registered student model (default: the config's)")
    distill.add_argument("--config", default=None, help="shipped config name or YAML path (default: distill_cpu)")
    distill.add_argument("--method", default=None, help="a preset of the loss registry (see --list-methods)")
    distill.add_argument(
        "--list-methods", action="store_true", help="list the presets with the terms each expands to, and exit"
    )
    distill.add_argument("--kernel", default=None, help="LSP kernel: rbf (default) | poly | linear | l2")
    distill.add_argument("--lambda", dest="lsp_lambda", type=float, default=None, help="LSP weight λ (default 100)")
    distill.add_argument(
        "--sigma", type=float, default=None, help="RBF bandwidth σ under --sigma-rule fixed (default 1)"
    )
    distill.add_argument(
        "--sigma-rule",
        choices=SIGMA_RULES,
        default=None,
        help="fixed: one σ for every layer (the paper's, default); median: σ per layer pair and step = the median "
        "teacher distance over the compared edges, so deep layers, whose features lie far apart, keep a "
        "neighbour structure to match (benchmarks/results/lsp_target_shape.md)",
    )
    distill.add_argument("--kd-alpha", type=float, default=None, help="KD weight α (default 0.1)")
    distill.add_argument("--kd-temperature", type=float, default=None, help="KD temperature T (default 4)")
    _run_args(distill)


def add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on the test split (with --corruptions: a checkpoint or artifact under ModelNet-C)",
        description="Overall accuracy, mean class accuracy, a per-class table and a confusion-matrix PNG. With "
        "--corruptions: OA under the seven ModelNet-C corruptions at 5 levels each (regenerated from the test split, "
        "pointkd.data.corruptions), every cloud prepared as a served upload, and mOA, mCE and RmCE against the "
        "published DGCNN (and --reference models); writes robustness.json and robustness.md.",
    )
    ev.add_argument(
        "checkpoint", help="a pointkd checkpoint (.pt), or with --corruptions an artifact folder (pointkd compile)"
    )
    _data_arg(ev)
    ev.add_argument("--num-points", type=int, default=None, help="points per cloud (default: the checkpoint's)")
    ev.add_argument(
        "--k",
        default="auto",
        help="neighbours per kNN graph: an int, or auto (default): the trained k scaled by test / training points",
    )
    ev.add_argument("--out", default=None, help="folder for metrics.json, per_class.md, confusion.png")
    ev.add_argument(
        "--votes",
        type=int,
        default=1,
        help="test-time voting: average the probabilities of the cloud and N-1 copies scaled per axis by 0.85-1.15 "
        "(seeded); reported as its own figure, never a model's headline (default 1: no voting)",
    )
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--no-progress", action="store_true")
    ev.add_argument("--corruptions", action="store_true", help="evaluate under the ModelNet-C corruptions")
    ev.add_argument(
        "--corruption-samples",
        type=int,
        default=None,
        metavar="M",
        help="--corruptions on a seeded random M of the test clouds (default: all 2,468: 36 passes over them)",
    )
    ev.add_argument("--corruption-seed", type=int, default=0, help="seeds the corruptions and the sample (default 0)")
    ev.add_argument(
        "--outlier-filter",
        choices=("none", "sor"),
        default="none",
        help="remove outliers before normalising each cloud, as pointkd serve --outlier-filter (default none)",
    )
    ev.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME=robustness.json",
        help="also score mCE / RmCE against another model's --corruptions result, e.g. teacher=runs/t/robustness.json",
    )
    ev.add_argument("--threads", type=int, default=0, help="CPU threads of the model (default 0: the runtime's)")


def add_slim(sub: argparse._SubParsersAction) -> None:
    slim = sub.add_parser(
        "slim",
        help="write a small release copy of a checkpoint (fp16 weights, no optimizer)",
        description="A release copy of a checkpoint: fp16 weights, no optimizer or RNG state. With --knn-layers, "
        "only the named EdgeConvs build kNN graphs and the others reuse the last one (the same weights, fewer "
        "N x N distance matrices): e.g. pointkd slim runs/lsp/best.pt runs/lsp/g02.pt --knn-layers 0,2 --eval",
    )
    slim.add_argument("checkpoint", help="a pointkd checkpoint (.pt)")
    slim.add_argument("output", help="where to write the copy (.pt)")
    slim.add_argument("--fp32", action="store_true", help="keep float32 weights")
    slim.add_argument(
        "--knn-layers",
        metavar="0,2",
        help="comma-separated EdgeConv layers that build a kNN graph (layer 0 always does; 'all': every layer); "
        "the others reuse the previous layer's graph: fewer N x N distance matrices, so faster, with the same "
        "weights. Measure the accuracy after (--eval, or pointkd eval); benchmarks/results/graph_reuse.md measured "
        "trained students",
    )
    slim.add_argument(
        "--eval",
        action="store_true",
        help="with --knn-layers: measure the new model on the test split (--data) and record its test OA and mAcc "
        "in the copy, as training records them",
    )
    _data_arg(slim)


def add_models(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("models", help="list the registered model configs with their parameter counts")


def add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a compiled artifact over HTTP (FastAPI + uvicorn)",
        description="KServe-v2 endpoints (/v2/health/live, /v2/health/ready, /v2/models/<name>, "
        "/v2/models/<name>/infer), POST /predict for JSON / raw float32 / .npy / uploaded cloud files, and "
        "Prometheus /metrics. Requests are micro-batched. Clouds are centred, scaled to the unit sphere and "
        "resampled to the model's point count; send them z-up, as ModelNet40.",
    )
    serve.add_argument(
        "artifact",
        help="an artifact folder written by `pointkd compile` (with manifest.json), or a model repository: a folder "
        "of artifact folders, each served under its folder's name",
    )
    from serving.settings import ServeSettings  # a dataclass only: the server itself is imported when it runs

    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default 0: one per core)")
    serve.add_argument("--max-batch", type=int, default=8, help="largest micro-batch (default 8)")
    serve.add_argument(
        "--max-delay-ms", type=float, default=0.0, help="longest wait to fill a batch (default 0: no added wait)"
    )
    serve.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (default 32 MiB)")
    serve.add_argument("--max-points", type=int, default=1_000_000, help="largest cloud (default 1e6 points)")
    serve.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=ServeSettings.spin,
        help="ONNX Runtime threads busy-wait between runs (--spin) or sleep (--no-spin); "
        f"default {'--spin' if ServeSettings.spin else '--no-spin'}",
    )
    serve.add_argument(
        "--parse-workers",
        type=int,
        default=2,
        help="worker processes that read and resample uploads (default 2; 0: threads of the server, no isolation)",
    )
    serve.add_argument(
        "--raw-in-threads",
        action=argparse.BooleanOptionalAction,
        default=ServeSettings.raw_in_threads,
        help="parse raw float32 bodies (application/octet-stream: no file reader) in threads of the server, the "
        "other formats in the worker processes (default); --no-raw-in-threads sends them to the workers too",
    )
    serve.add_argument(
        "--json-in-threads",
        action=argparse.BooleanOptionalAction,
        default=ServeSettings.json_in_threads,
        help="parse JSON /predict bodies in threads of the server too (default: orjson under the body and value "
        "limits, no file reader); --no-json-in-threads sends them to the isolated workers",
    )
    serve.add_argument(
        "--spool-body-mb",
        type=float,
        default=ServeSettings.spool_body_bytes / (1 << 20),
        help="a request body past this many MiB is written to a temporary file as it arrives, not held in memory "
        f"(default {ServeSettings.spool_body_bytes >> 20}; 0: never)",
    )
    serve.add_argument(
        "--inline-parse-kib",
        type=float,
        default=ServeSettings.inline_parse_bytes / 1024,
        help="raw float32 and JSON bodies up to this size, when parsed in the server, are parsed on its event loop "
        f"rather than in a thread (default {ServeSettings.inline_parse_bytes >> 10}; 0: always in a thread)",
    )
    serve.add_argument(
        "--outlier-filter",
        choices=("none", "sor"),
        default=ServeSettings.outlier_filter,
        help="remove outliers from every cloud before it is normalised: none, or sor (statistical outlier removal, "
        "k 20, 2 standard deviations; pointkd.data.outliers, measured in benchmarks/results/robustness.md); "
        f"default {ServeSettings.outlier_filter}",
    )
    serve.add_argument(
        "--parse-timeout-s", type=float, default=10.0, help="longest a worker may spend on one body (default 10 s)"
    )
    serve.add_argument(
        "--worker-memory-x",
        type=float,
        default=24.0,
        help="a worker's memory cap: its baseline + this many times --max-body-mb (default 24; JSON needs ~22x)",
    )
    serve.add_argument(
        "--keep-awake",
        action=argparse.BooleanOptionalAction,
        default=ServeSettings.keep_awake,
        help="run an idle-priority busy process on each CPU so that an idle (virtual) CPU never halts: lower latency "
        "at low request rates, at the price of CPUs that show 100%% busy (default off)",
    )
    serve.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="uvicorn's event loop (default auto: uvloop when installed, as the serve extra does)",
    )
    serve.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="uvicorn's HTTP parser (default auto: httptools, a C parser, when installed; h11 is pure Python)",
    )
    serve.add_argument("--log-level", default="warning")
    _add_serve_edge(serve)


def _add_serve_edge(serve: argparse.ArgumentParser) -> None:
    """``pointkd serve``'s network edge: API keys, TLS, deadlines and limits (serving.access, serving.edge)."""
    from serving.settings import EdgeLimits

    e = EdgeLimits()
    net = serve.add_argument_group("access control and TLS")
    net.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a key a client must send (Authorization: Bearer KEY or X-API-Key: KEY), else 401; repeatable; "
        "$POINTKD_API_KEY adds one. Without any key, every client may infer",
    )
    net.add_argument(
        "--api-key-file", action="append", default=[], metavar="FILE", help="a file of API keys, one a line"
    )
    net.add_argument(
        "--guard-health",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="liveness and readiness need a key too (default: they answer anyone, for load balancers)",
    )
    net.add_argument(
        "--open-metrics",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="/metrics answers without a key (default: it needs one, as inference does)",
    )
    net.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    net.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    lim = serve.add_argument_group("deadlines and limits (0 turns one off)")
    lim.add_argument(
        "--idle-timeout-s",
        type=float,
        default=e.idle_timeout_s,
        help="close a connection that sends nothing for this long, new or between requests "
        f"(default {e.idle_timeout_s:g})",
    )
    lim.add_argument(
        "--header-timeout-s",
        type=float,
        default=e.header_timeout_s,
        help=f"a request's headers must arrive within this, else 408 (default {e.header_timeout_s:g})",
    )
    lim.add_argument(
        "--body-timeout-s",
        type=float,
        default=e.body_timeout_s,
        help="a body must arrive within this grace plus its size at --min-body-rate-kib, else 408 "
        f"(default {e.body_timeout_s:g})",
    )
    lim.add_argument(
        "--min-body-rate-kib",
        type=float,
        default=e.min_body_rate / 1024,
        help=f"slowest average body upload after the grace, KiB/s (default {e.min_body_rate / 1024:g})",
    )
    lim.add_argument(
        "--max-header-kib",
        type=float,
        default=e.max_header_bytes / 1024,
        help=f"request line + headers, KiB, else 431 (default {e.max_header_bytes / 1024:g})",
    )
    lim.add_argument(
        "--max-header-fields",
        type=int,
        default=e.max_header_fields,
        help=f"header fields per request, else 431 (default {e.max_header_fields})",
    )
    lim.add_argument(
        "--max-connections",
        type=int,
        default=e.max_connections,
        help=f"open connections; one more gets 503 + Retry-After and is closed (default {e.max_connections})",
    )
    lim.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="requests the app works on at once; more get 503 + Retry-After, health is always answered (default 64)",
    )
    lim.add_argument(
        "--body-budget-mb",
        type=float,
        default=e.body_budget_bytes / (1 << 20),
        help="request body bytes the server holds at once, over all connections; a request that would pass it gets "
        f"503 + Retry-After (default {e.body_budget_bytes / (1 << 20):g} MiB)",
    )
    lim.add_argument(
        "--trim-after-mb",
        type=float,
        default=e.trim_after_bytes / (1 << 20),
        help="when the held body bytes drain to zero after a burst of at least this many MiB, glibc's "
        f"malloc_trim gives the freed memory back (default {e.trim_after_bytes / (1 << 20):g}; 0: never)",
    )


def add_predict(sub: argparse._SubParsersAction) -> None:
    pred = sub.add_parser(
        "predict",
        help="classify cloud files with a checkpoint or an artifact, without a server",
        description="Classify clouds: one line a cloud (file, class, probability) and a per-class count at the "
        "end. Each file is read and prepared exactly as the server prepares an upload (centred, scaled to the unit "
        "sphere, resampled to the model's point count; send clouds z-up, as ModelNet40). An unreadable file is "
        "reported with its reason and the rest go on; the exit status is 1 only when nothing could be classified.",
    )
    pred.add_argument("model", help="an artifact folder written by `pointkd compile`, or a .pt checkpoint")
    pred.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="cloud files (.ply .pcd .xyz .pts .txt .off .npy), folders (searched recursively) or glob patterns "
        "(quote them for ** )",
    )
    pred.add_argument("--top-k", type=int, default=1, help="classes shown per cloud (default 1)")
    rows = pred.add_mutually_exclusive_group()
    rows.add_argument("--jsonl", default=None, metavar="OUT", help="also write one JSON object a file to OUT")
    rows.add_argument("--csv", default=None, metavar="OUT", help="also write one CSV row a file to OUT")
    pred.add_argument("--batch-size", type=int, default=32, help="clouds per model call (default 32)")
    pred.add_argument("--threads", type=int, default=0, help="runtime CPU threads (default 0: one per core)")
    pred.add_argument("--no-progress", action="store_true", help="no progress report on stderr")


def add_export(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "export",
        help="write ONNX artifacts as a Triton model repository, or a KServe InferenceService serving one",
        description="--to triton: DIR/<name>/config.pbtxt, DIR/<name>/1/model.onnx and labels.txt per artifact "
        "(onnx, onnx-int8, onnx-fused with its custom-op library), dynamic batching. --to kserve: the same "
        "repository for KServe's /mnt/models and DIR/inferenceservice.yaml serving it with the Triton runtime (copy "
        "DIR to --storage-uri). Triton answers logits for prepared [B, N, 3] clouds.",
    )
    exp.add_argument("--to", choices=("triton", "kserve"), required=True, dest="target")
    exp.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifact folders written by `pointkd compile`")
    exp.add_argument("--out", required=True, help="the repository folder to write")
    exp.add_argument("--max-batch", type=int, default=64, help="Triton's max_batch_size (default 64)")
    exp.add_argument(
        "--max-delay-us", type=int, default=0, help="dynamic batching's max_queue_delay_microseconds (default 0)"
    )
    exp.add_argument("--instances", type=int, default=1, help="model instances on the CPU (default 1)")
    exp.add_argument(
        "--mount", default=None, help="where the repository sits on the Triton server (default: --out's absolute path)"
    )
    exp.add_argument("--name", default="pointkd", help="the InferenceService's name (kserve)")
    exp.add_argument(
        "--storage-uri", default="pvc://pointkd-models", help="where the repository is stored for KServe (kserve)"
    )


def add_compile(sub: argparse._SubParsersAction) -> None:
    comp = sub.add_parser(
        "compile",
        help="export a checkpoint to an ONNX / int8 / torch-cuda / TensorRT artifact, checking accuracy at every step",
        description="Write an artifact folder (model file + manifest.json) for serving and benchmarks. The ONNX "
        "export must match the torch model on the whole test split (max |Δlogit| <= --atol, identical top-1); "
        "onnx-int8 is calibrated on a stratified training-split set and refused if it loses more than --max-drop "
        "OA points; onnx-fused rewrites each kNN and each EdgeConv's gather + max into fused custom operators "
        "(built with a C++ compiler, copied into the artifact); torch-cuda needs an NVIDIA GPU, trt-* formats "
        "TensorRT and an NVIDIA GPU.",
    )
    comp.add_argument("checkpoint", help="a pointkd checkpoint (.pt)")
    comp.add_argument(
        "--format",
        dest="fmt",
        default="onnx",
        help=" | ".join(f"{name} (default)" if name == "onnx" else name for name in ARTIFACT_FORMATS),
    )
    comp.add_argument(
        "--num-points", type=int, default=None, help="points per cloud the artifact takes (default: the checkpoint's)"
    )
    comp.add_argument("--out", default=None, help="artifact folder (default runs/artifacts/<model>-<format>)")
    _data_arg(comp)
    comp.add_argument(
        "--calib-size", type=int, default=1024, help="int8: calibration clouds from the train split (default 1024)"
    )
    comp.add_argument("--calib-seed", type=int, default=0)
    comp.add_argument("--max-drop", type=float, default=1.0, help="int8: largest OA loss in points (default 1.0)")
    comp.add_argument("--atol", type=float, default=1e-4, help="fp32 parity: largest |Δlogit| (default 1e-4)")


def add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="latency / accuracy report per model and format on this device",
        description="One row per (model, format, threads): status (✅ ran and validated, ❎ exported but an "
        "accuracy check failed, ❌ failed or unavailable, with the reason), file size, parameters, OA / mAcc on the "
        "test split, p50/p95/p99 ms at batch 1, clouds/s at batch 32 and peak memory, each (model, format) in a "
        "fresh process on the same clouds. Checkpoints are compiled to each format first (cached); artifact "
        "folders run in their own format. Writes OUT/<device-id>/bench.{json,md,png}.",
    )
    bench.add_argument("sources", nargs="+", metavar="CKPT_OR_ARTIFACT", help="checkpoints (.pt) or artifact folders")
    bench.add_argument(
        "--formats",
        default=",".join(FORMAT_NAMES),
        help="comma-separated formats for checkpoints (default: all; torch-cuda runs eagerly, torch-cuda-graphs "
        "through CUDA graphs; GPU rows say why they cannot run here)",
    )
    bench.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts (default 1,2)")
    bench.add_argument("--out", default="runs/bench", help="results root (default runs/bench)")
    _data_arg(bench)
    bench.add_argument("--num-points", type=int, default=None, help="points per cloud (default: each model's own)")
    bench.add_argument("--repeats", type=int, default=200, help="timed batch-1 runs per thread count (default 200)")
    bench.add_argument(
        "--max-seconds", type=float, default=20.0, help="cap on one thread count's batch-1 runs (default 20 s)"
    )
    bench.add_argument("--calib-size", type=int, default=1024, help="int8 calibration clouds (default 1024)")
    bench.add_argument("--max-drop", type=float, default=1.0, help="int8: largest OA loss in points (default 1.0)")
    bench.add_argument(
        "--add",
        action="store_true",
        help="add the rows to OUT/<device-id>/bench.json (rows of the same model and format are replaced, the "
        "others kept; its settings must match): one report from several shorter runs",
    )
    bench.add_argument("--no-progress", action="store_true")


def add_select(sub: argparse._SubParsersAction) -> None:
    sel = sub.add_parser(
        "select",
        help="pick the most accurate benchmarked model within a latency budget, and say why",
        description="Reads a `pointkd bench` report and picks, among the rows that ran and were validated, the "
        "most accurate one whose latency (default p95 at batch 1) meets --budget-ms; prints every candidate with "
        "the reason it won or lost. Exit status 1 when none meets the budget.",
    )
    sel.add_argument("--budget-ms", type=float, required=True, help="latency budget in ms")
    sel.add_argument("--device-report", required=True, help="a bench.json (or the folder holding it)")
    sel.add_argument("--metric", default="p95", choices=("p50", "p95", "p99"), help="latency percentile (p95)")
    sel.add_argument("--threads", type=int, default=None, help="thread count to judge (default: the most measured)")
    sel.add_argument(
        "--models", nargs="+", default=None, metavar="LABEL", help="choose only among these models (e.g. the students)"
    )
    sel.add_argument(
        "--max-mce",
        type=float,
        default=None,
        help="a robustness floor: only rows whose ModelNet-C mCE (vs DGCNN, from --robustness) is at most this; a "
        "row never measured under corruption is not eligible",
    )
    sel.add_argument(
        "--robustness",
        default="benchmarks/results/robustness.json",
        help="the robustness report --max-mce reads (benchmarks/robustness.py; default %(default)s)",
    )
    sel.add_argument(
        "--outlier-filter", default="none", choices=("none", "sor"), help="the served filter its mCE is read for"
    )
    sel.add_argument("--json", action="store_true", help="print the chosen row as JSON")


def add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline end to end: teacher, LSP student, ONNX + int8, bench, server",
        description="Train a small teacher, distil a student from it with LSP, compile the student to ONNX and "
        "int8, benchmark them, serve the int8 model and classify real test clouds over HTTP, then print the report "
        "paths. Uses the shared ModelNet40 when present, else a generated synthetic set. Every stage resumes: "
        "re-running continues where an interrupted demo stopped.",
    )
    demo.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo)")
    _data_arg(demo)
    demo.add_argument("--requests", type=int, default=200, help="test clouds sent to the server (default 200)")
    _set_arg(demo, "override a key of both training configs, e.g. --set train.epochs=4 for a longer, better demo")
    demo.add_argument(
        "--shipped",
        action="store_true",
        help="no training: compile, bench and serve the repository's shipped teacher and LSP student "
        "(benchmarks/checkpoints/teacher_tail1024.pt, student_lsp_tail1024_g02.pt; needs ModelNet40)",
    )
    demo.add_argument("--no-progress", action="store_true")


def add_campaign(sub: argparse._SubParsersAction) -> None:
    camp = sub.add_parser(
        "campaign",
        help="run a plan of training runs that survives interruptions; its status; its summary",
        description="A plan (YAML) lists runs: a config, overrides, a teacher, the runs it waits for. `run` starts "
        "the next unfinished run, resumes an interrupted one from its last checkpoint, skips finished ones, and "
        "finishes each with evaluations at 512 and 1024 test points (k scaled), a shipped checkpoint and a small "
        "committed record. Runs train from one pinned commit (a git worktree) in folders outside the checkout.",
    )
    camp_sub = camp.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    for action, text in (
        ("run", "work through the plan (Ctrl-C or SIGTERM: the current run saves and stops)"),
        ("status", "per run: state, epochs, latest test OA, time left"),
        ("summary", "write summary.json / summary.md from the committed records"),
        ("park", "copy each unfinished run's resume state into the records (commit it; `run` restores it)"),
    ):
        p = camp_sub.add_parser(action, help=text)
        p.add_argument("plan", help="the plan's YAML file")
        p.add_argument("--runs-dir", default=None, help="run folders (default: $POINTKD_CAMPAIGNS or ~/.cache/...)")
        if action == "run":
            p.add_argument("--code", default=None, help="commit for new runs (default: the pinned one, else HEAD)")
            p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="only these runs")
            p.add_argument("--max-runs", type=int, default=None, help="stop after finishing this many runs")
            p.add_argument(
                "--wait", action="store_true", help="while another process holds a run, wait for it (poll every 60 s)"
            )
        if action == "park":
            p.add_argument("--max-mb", type=float, default=8.0, help="skip a run whose state is larger (default 8)")


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if from_shell and args.command in LONG_RUNNING:
        from .process import reexec_with_jemalloc

        reexec_with_jemalloc()
    if from_shell and args.command in LONG_RUNNING | {"campaign"}:
        from .process import stop_on_signals

        stop_on_signals()
    try:
        return COMMANDS[args.command](args, parser)
    except handled_errors(args.command) as e:
        if os.environ.get("POINTKD_DEBUG"):
            raise
        print(f"pointkd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pointkd {args.command}: interrupted", file=sys.stderr)
        return 130


def handled_errors(command: str) -> tuple[type[BaseException], ...]:
    """The errors a command reports in one line (exit status 2) rather than as a traceback. The torch-free commands
    (:data:`TORCH_FREE`) do not import the trainer, the checkpoint module or the campaign runner to name theirs."""
    from .runtime.errors import ExportError, RuntimeUnavailable

    light = (ExportError, RuntimeUnavailable, FileExistsError, FileNotFoundError, KeyError, TypeError, ValueError)
    if command in TORCH_FREE:
        return light  # DataError, CheckpointError, ManifestError and ConfigError are ValueErrors
    from .campaign.runner import CampaignError
    from .train.trainer import TrainingDiverged

    return (*light, CampaignError, TrainingDiverged)


def cmd_data(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.data_command != "info":
        parser.parse_args(["data", "--help"])
        return 2
    from .data.report import data_report, format_data_report

    report = data_report(args.data, num_points=args.num_points)
    print(json.dumps(report, indent=2) if args.json else format_data_report(report))
    return 0 if report["ok"] else 1


def _run(args: argparse.Namespace, default_config: str, overrides: list[str]) -> int:
    from .config import load_config
    from .train import train

    overrides = overrides + list(args.overrides)
    for flag, key in (("epochs", "train.epochs"), ("threads", "train.threads"), ("data", "data.source")):
        if getattr(args, flag):
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_config(args.config or default_config, overrides)
    out = Path(args.out or Path("runs") / (cfg.name or cfg.model.name))
    result = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone reports
        print(f"best test OA {result.best_oa * 100:.2f} % in {result.seconds / 60:.1f} min; checkpoints in {out}")
    from .train.distributed import shutdown_distributed

    shutdown_distributed()
    return 0


def cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return _run(args, "teacher_cpu", [f"model.name={args.model}"] if args.model else [])


def cmd_distill(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.list_methods:
        print(list_methods())
        return 0
    return _run(args, "distill_cpu", distill_overrides(args))


def distill_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides that the distill flags given stand for."""
    flags = {
        "teacher": "distill.teacher",
        "student": "model.name",
        "method": "distill.method",
        "kernel": "distill.kernel",
        "lsp_lambda": "distill.lsp_lambda",
        "sigma": "distill.sigma",
        "sigma_rule": "distill.sigma_rule",
        "kd_alpha": "distill.kd_alpha",
        "kd_temperature": "distill.kd_temperature",
    }
    return [f"{key}={getattr(args, flag)}" for flag, key in flags.items() if getattr(args, flag) is not None]


def list_methods() -> str:
    """The ``distill.method`` presets of the registry, each with its doc line and its terms at the defaults."""
    from .config import DistillSection
    from .distill import PRESETS

    lines = []
    for name, expand in PRESETS.items():
        doc = " ".join((expand.__doc__ or "").split("\n\n")[0].split())
        terms = ", ".join(f"{t['weight']:g}·{t['loss']}" for t in expand(DistillSection(method=name)))
        lines.append(f"{name:<16} {terms:<32} {doc}")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoint import load_checkpoint
    from .train import per_class_table, plot_confusion

    if args.corruptions:
        return eval_corruptions(args, parser)
    if Path(args.checkpoint).is_dir():
        raise ValueError("an artifact folder is evaluated with --corruptions (its clean OA is in its manifest)")

    ckpt = load_checkpoint(args.checkpoint)
    num_points = args.num_points or ckpt.get("num_points", 1024)
    k = eval_k(args.k, ckpt, num_points)
    if args.votes < 1:
        parser.error(f"--votes must be at least 1, got {args.votes}")
    report, data = evaluate_checkpoint(
        ckpt, args.data, num_points, k, args.batch_size, not args.no_progress, votes=args.votes
    )
    print(per_class_table(report, data.classes))
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "checkpoint": str(args.checkpoint),
        "data": data.source,
        "num_points": num_points,
        "k": k,
        "votes": args.votes,
        "oa": report.oa,
        "macc": report.macc,
        "per_class": dict(zip(data.classes, report.per_class, strict=True)),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "per_class.md").write_text(per_class_table(report, data.classes) + "\n")
    png = plot_confusion(report, data.classes, out / "confusion.png")
    print(
        f"OA {report.oa * 100:.2f} %  mAcc {report.macc * 100:.2f} %  ({num_points} points, k = {k}"
        f"{f', {args.votes} votes' if args.votes > 1 else ''}); wrote {out}/ ({png.name})"
    )
    return 0


def eval_corruptions(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``pointkd eval --corruptions``: see :mod:`pointkd.bench.robustness`."""
    from .bench.robustness import evaluate_corruptions, sample_indices, with_reference, write_robustness
    from .data import load_modelnet40

    references = {}
    for item in args.reference:
        name, sep, path = item.partition("=")
        if not sep or not name:
            parser.error(f"--reference takes NAME=robustness.json, got {item!r}")
        references[name] = json.loads(Path(path).read_text())
    run, num_points, classes, label = corruption_runner(args)
    # ModelNet-C corrupts 1024-point clouds (dropout_local removes up to 500): sources that sample, at least that
    data = load_modelnet40(args.data, num_points=max(num_points, 1024))
    if list(data.classes) != list(classes):
        raise ValueError(f"the data's classes differ from the model's ({len(data.classes)} vs {len(classes)})")
    idx = sample_indices(len(data.test_y), args.corruption_samples, args.corruption_seed)
    result = evaluate_corruptions(
        run,
        data.test_x.numpy()[idx],
        data.test_y.numpy()[idx],
        num_points,
        indices=idx,
        seed=args.corruption_seed,
        outliers=args.outlier_filter,
        batch_size=args.batch_size,
        log=None if args.no_progress else print,
    )
    result = {"model": str(args.checkpoint), "runs_as": label, "data": data.source, **result}
    for name, ref in references.items():
        result = with_reference(result, name, ref)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    write_robustness(out, result, f"ModelNet-C (regenerated): {Path(args.checkpoint).name} as {label}")
    s = result["scores"]
    vs = "".join(f"; vs {n}: mCE {v['mCE']:.3f}" for n, v in result.get("scores_vs", {}).items())
    print(
        f"clean OA {result['clean_oa'] * 100:.2f} %  mOA {s['mOA'] * 100:.2f} %  mCE {s['mCE']:.3f}  "
        f"RmCE {s['RmCE']:.3f}{vs} ({result['clouds']} clouds, {result['seconds']:.0f} s); wrote {out}/robustness.*"
    )
    return 0


def corruption_runner(args: argparse.Namespace):
    """``(run, num_points, classes, label)`` for ``args.checkpoint``: a checkpoint run by torch at ``--k`` (default
    auto), or an artifact folder run as its format."""
    import numpy as np
    import torch

    path = Path(args.checkpoint)
    if path.is_dir():
        from .runtime.runner import open_artifact

        art = open_artifact(path, threads=args.threads)
        return art.run, int(art.manifest["input"]["num_points"]), art.manifest["classes"], art.format.name
    from .checkpoint import load_checkpoint, model_from_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(path)
    num_points = args.num_points or int(ckpt.get("num_points") or 1024)
    model = model_from_checkpoint(ckpt).float().eval()
    model.set_k(eval_k(args.k, ckpt, num_points))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    return run, num_points, ckpt["classes"], "torch"


def eval_k(choice: str, ckpt: dict, num_points: int) -> int:
    """``--k``: an int as given, or ``auto``: the checkpoint's k scaled from its training points to ``num_points``."""
    from .models.dgcnn import scaled_k

    k = int(ckpt["model_config"]["k"])
    if choice == "auto":
        trained = int(
            (ckpt.get("config") or {}).get("data", {}).get("num_points") or ckpt.get("num_points", num_points)
        )
        return scaled_k(k, trained, num_points)
    if not choice.isdigit() or int(choice) < 1:
        raise ValueError(f"--k must be a positive integer or auto, got {choice!r}")
    return int(choice)


def cmd_slim(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoint import load_checkpoint, regraph_checkpoint, save_checkpoint, slim_checkpoint

    if args.eval and args.knn_layers is None:
        parser.error("--eval measures a re-graphed copy: give --knn-layers too")
    ckpt = load_checkpoint(args.checkpoint)
    if args.knn_layers is not None:
        ckpt = regraph_checkpoint(ckpt, parse_knn_layers(args.knn_layers, parser))
    ckpt = slim_checkpoint(ckpt, half=not args.fp32)
    if args.eval:
        ckpt = evaluated_copy(ckpt, args.data)
    path = save_checkpoint(ckpt, args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.knn_layers is not None:
        layers = ckpt["model_config"]["knn_layers"]
        hint = "" if args.eval else f"; measure it: pointkd eval {path}"
        print(f"graphs built at layers {'all' if layers is None else layers}{hint}")
    return 0


def evaluate_checkpoint(
    ckpt: dict,
    data_source: str | None,
    num_points: int,
    k: int,
    batch_size: int = 64,
    progress: bool = False,
    votes: int = 1,
) -> tuple[ClassificationReport, PointCloudSplits]:
    """``(report, data)``: ``ckpt``'s model with ``k`` neighbours on the test split at ``num_points``; a ValueError
    when the data's classes are not the checkpoint's."""
    from .checkpoint import model_from_checkpoint
    from .data import load_modelnet40
    from .train import evaluate

    data = load_modelnet40(data_source, num_points=num_points)
    if list(data.classes) != list(ckpt["classes"]):
        raise ValueError(
            f"the data's classes differ from the checkpoint's ({len(data.classes)} vs {len(ckpt['classes'])})"
        )
    model = model_from_checkpoint(ckpt)
    model.set_k(k)
    report = evaluate(model, data.test_x, data.test_y, num_points, data.num_classes, batch_size, progress, votes)
    return report, data


def evaluated_copy(ckpt: dict, data_source: str | None) -> dict:
    """``ckpt`` with its test OA and mAcc measured now (at its points, ``eval --k auto``), as training records them."""
    num_points = int(ckpt.get("num_points") or 1024)
    k = eval_k("auto", ckpt, num_points)
    report, data = evaluate_checkpoint(ckpt, data_source, num_points, k)
    print(f"OA {report.oa * 100:.2f} %  mAcc {report.macc * 100:.2f} %  ({num_points} points, k = {k})")
    metrics = {**ckpt.get("metrics", {}), "test_oa": report.oa, "test_macc": report.macc}
    derived = {**ckpt.get("derived", {}), "evaluated": {"data": data.source, "num_points": num_points, "k": k}}
    return {**ckpt, "metrics": metrics, "derived": derived}


def parse_knn_layers(text: str, parser: argparse.ArgumentParser) -> list[int] | None:
    """``--knn-layers``: ``all`` or comma-separated layer numbers (0-based)."""
    if text.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--knn-layers takes comma-separated layer numbers or 'all', got {text!r}")


def cmd_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .models import create_model, list_models, model_config

    print(f"{'name':<22} {'params':>10}  description")
    for name in list_models():
        print(f"{name:<22} {create_model(name).num_parameters:>10,}  {model_config(name).description}")
    return 0


def cmd_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import uvicorn

    from serving import ServeSettings, create_app
    from serving.access import is_loopback, load_api_keys
    from serving.launch import server_stack
    from serving.repository import model_folders
    from serving.settings import EdgeLimits

    from .runtime.manifest import read_manifest

    for _, folder in model_folders(args.artifact):
        read_manifest(folder)  # fail here, with one line, rather than inside the server's start-up
    try:
        keys = load_api_keys(args.api_key, args.api_key_file)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    if bool(args.ssl_keyfile) and not args.ssl_certfile:
        parser.error("--ssl-keyfile needs --ssl-certfile")
    if not keys and not is_loopback(args.host):
        print(
            f"WARNING: serving on {args.host}, beyond this machine, without an API key: anyone who can reach port "
            f"{args.port} may infer and read the metrics. Give --api-key / --api-key-file / $POINTKD_API_KEY "
            "(and --ssl-certfile / --ssl-keyfile for TLS).",
            file=sys.stderr,
        )
    settings = ServeSettings(
        threads=args.threads,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_points=args.max_points,
        spin=args.spin,
        parse_workers=args.parse_workers,
        raw_in_threads=args.raw_in_threads,
        json_in_threads=args.json_in_threads,
        inline_parse_bytes=int(args.inline_parse_kib * 1024),
        spool_body_bytes=int(args.spool_body_mb * (1 << 20)),
        parse_timeout_s=args.parse_timeout_s,
        worker_memory_x=args.worker_memory_x,
        outlier_filter=args.outlier_filter,
        keep_awake=args.keep_awake,
        api_keys=keys,
        guard_health=args.guard_health,
        open_metrics=args.open_metrics,
        max_in_flight=args.max_in_flight,
    )
    limits = EdgeLimits(
        idle_timeout_s=args.idle_timeout_s,
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        min_body_rate=int(args.min_body_rate_kib * 1024),
        max_header_bytes=int(args.max_header_kib * 1024),
        max_header_fields=args.max_header_fields,
        max_connections=args.max_connections,
        body_budget_bytes=int(args.body_budget_mb * (1 << 20)),
        trim_after_bytes=int(args.trim_after_mb * (1 << 20)),
    )
    loop, http = server_stack(args.loop, args.http)
    protocol: object = http
    if http == "httptools":
        from serving.edge import edge_protocol  # imports httptools

        protocol = edge_protocol(limits)
    else:
        print("WARNING: --http h11 has no header, body or body-budget limits (they need httptools)", file=sys.stderr)
    uvicorn.run(
        create_app(args.artifact, settings),
        host=args.host,
        port=args.port,
        loop=loop,
        http=protocol,
        log_level=args.log_level,
        access_log=False,
        timeout_keep_alive=max(args.idle_timeout_s, 0.001) if args.idle_timeout_s else 3600,
        h11_max_incomplete_event_size=int(args.max_header_kib * 1024) or None,
        limit_concurrency=None if http == "httptools" else (args.max_connections or None),
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    return 0


def cmd_predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .classify import RowWriter, run_predict
    from .inference import find_clouds, load

    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be at least 1")
    files, missing = find_clouds(args.sources)
    model = load(args.model, threads=args.threads)
    top_k = min(args.top_k, len(model.classes))
    target, kind = (args.jsonl, "jsonl") if args.jsonl else (args.csv, "csv")
    rows = RowWriter(Path(target), kind, top_k) if target else None
    try:
        outcome = run_predict(model, files, missing, top_k, args.batch_size, rows, progress=not args.no_progress)
    finally:
        if rows is not None:
            rows.close()
    if not outcome.predictions:
        print(
            f"pointkd predict: error: no cloud could be classified ({len(outcome.failures)} unreadable)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .export.triton import KSERVE_MOUNT, export_triton, kserve_manifest

    mount = KSERVE_MOUNT if args.target == "kserve" and args.mount is None else args.mount
    folders = export_triton(args.artifacts, args.out, mount, args.max_batch, args.max_delay_us, args.instances)
    for folder in folders:
        print(f"wrote {folder}/config.pbtxt and {folder}/1/model.onnx")
    if args.target == "kserve":
        path = Path(args.out) / "inferenceservice.yaml"
        path.write_text(kserve_manifest(args.name, args.storage_uri))
        print(f"wrote {path}: copy {args.out} to {args.storage_uri}, then kubectl apply -f {path}")
    return 0


def cmd_compile(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .checkpoint import load_checkpoint
    from .export.compile import CompileOptions, compile_checkpoint
    from .runtime.formats import get_format

    get_format(args.fmt, among=ARTIFACT_FORMATS)  # an unknown --format fails before the checkpoint is read
    out = args.out
    if out is None:
        name = load_checkpoint(args.checkpoint).get("model_name") or Path(args.checkpoint).stem
        out = Path("runs") / "artifacts" / f"{name}-{args.fmt}"
    opts = CompileOptions(
        args.fmt, args.num_points, args.data, args.calib_size, args.calib_seed, args.max_drop, args.atol
    )
    manifest = compile_checkpoint(args.checkpoint, out, opts)
    size = (Path(out) / manifest["model_file"]).stat().st_size
    print(f"wrote {out}/{manifest['model_file']} ({size / 1024:.0f} KiB) and {out}/manifest.json")
    return 0


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{what} is empty")
    return values


def cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .bench import BenchOptions, run_bench

    opts = BenchOptions(
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        threads=_int_list(args.threads, "--threads"),
        data=args.data,
        num_points=args.num_points,
        repeats=args.repeats,
        max_seconds=args.max_seconds,
        calib_size=args.calib_size,
        max_drop=args.max_drop,
        add=args.add,
        progress=not args.no_progress,
    )
    paths, rows = run_bench(args.sources, args.out, opts)
    print(paths["md"].read_text())
    print(f"wrote {paths['md']}, {paths['json'].name} and {paths['png'].name}")
    return 0 if any(r.status == "ok" for r in rows) else 1


def cmd_select(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from dataclasses import asdict

    from .bench import read_report, select_model
    from .bench.select import mce_index

    _, rows = read_report(args.device_report)
    mce = None
    if args.max_mce is not None:
        path = Path(args.robustness)
        if not path.is_file():
            parser.error(f"--max-mce needs a robustness report: {path} does not exist (benchmarks/robustness.py)")
        mce = mce_index(json.loads(path.read_text()), args.outlier_filter)
    metric = f"{args.metric}_ms"
    selection = select_model(rows, args.budget_ms, metric, args.threads, args.models, mce, args.max_mce)
    if args.json:
        print(json.dumps(asdict(selection.chosen) if selection.chosen else None, indent=2))
    else:
        print(selection.explain())
    return 0 if selection.chosen is not None else 1


def cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .demo import run_demo

    report = run_demo(
        args.out,
        data=args.data,
        requests=args.requests,
        progress=not args.no_progress,
        overrides=args.overrides,
        shipped=args.shipped,
    )
    print(f"demo report: {report}")
    return 0


def cmd_campaign(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .campaign import load_plan, run_campaign, status_table, write_summary

    plan = load_plan(args.plan, args.runs_dir)
    if args.campaign_command == "status":
        print(status_table(plan))
    elif args.campaign_command == "summary":
        print(f"wrote {write_summary(plan)}")
    elif args.campaign_command == "park":
        from .campaign.inflight import park

        parked = park(plan, args.max_mb)
        print(f"{len(parked)} run(s) parked under {plan.records / 'inflight'}" if parked else "nothing to park")
    else:
        log = lambda m: print(m, flush=True)  # noqa: E731
        n = run_campaign(plan, args.code, args.only, args.max_runs, log, wait_s=60.0 if args.wait else None)
        print(status_table(plan))  # summary.json/md: rewritten by the runner after each finished run
        print(f"{n} run(s) finished in this sitting")
    return 0


COMMANDS = {
    "data": cmd_data,
    "train": cmd_train,
    "distill": cmd_distill,
    "eval": cmd_eval,
    "slim": cmd_slim,
    "models": cmd_models,
    "compile": cmd_compile,
    "serve": cmd_serve,
    "predict": cmd_predict,
    "export": cmd_export,
    "bench": cmd_bench,
    "select": cmd_select,
    "demo": cmd_demo,
    "campaign": cmd_campaign,
}

if __name__ == "__main__":
    raise SystemExit(main())
