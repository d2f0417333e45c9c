"""``pointkd compile``: checkpoint -> artifact folder (model file + manifest.json), checking accuracy at every step.

The format's row in :mod:`pointkd.runtime.formats` decides the stages:

1. Export the rewritten inference graph to ONNX (fp32) and run it with ONNX Runtime on the whole test split:
   max |Δlogit| against the torch model must be <= ``atol`` (1e-4) and the top-1 class identical on every cloud.
2. Quantized formats (``onnx-int8``, ``trt-int8``): calibrate on a stratified training-split set, quantize (QDQ,
   per-channel, kNN in float; the format's flavour), run the whole test split again, and refuse when OA drops by
   more than ``max_drop`` points, printing the per-node SQNR.
3. Formats with custom operators (``onnx-fused``): rewrite each kNN into the fused ``pointkd.KnnTopK`` and each
   EdgeConv's neighbour gather + max into ``pointkd.GatherMax``, copy the
   operator's library (:func:`~pointkd.export.knn_op.build_knn_op`) into the artifact, and require the fp32
   model's top-1 on every cloud and its logits within ``atol``.
4. TensorRT formats (``trt-fp16`` / ``trt-int8``): build an engine from that ONNX and run the test split on it.
5. ``torch-cuda`` (no ONNX): save the folded inference model (:mod:`pointkd.export.torch_export`), run the test
   split on the GPU with the same tie-aware parity check as the ONNX export, then through CUDA graphs, which must
   give the eager logits. Without a CUDA device it stops before anything is written.

A runtime that cannot run here raises a :class:`~pointkd.runtime.errors.RuntimeUnavailable` before anything is
computed; a failed check raises :class:`~pointkd.runtime.errors.ParityError` or
:class:`~pointkd.runtime.errors.AccuracyDropError`. The artifact is assembled in a temporary folder beside ``out``
and renamed into place only when every check passed, so a failed or interrupted compile never leaves a
half-written artifact.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import PointCloudSplits, fixed_subset, load_modelnet40
from ..hashing import sha256_file
from ..models import DGCNN
from ..runtime.errors import (
    AccuracyDropError,
    CudaUnavailable,
    ExportError,
    ManifestError,
    ParityError,
    TensorRTUnavailable,
)
from ..runtime.formats import ARTIFACT_FORMATS, Format, get_format
from ..runtime.manifest import MANIFEST, input_contract, read_manifest, write_manifest
from ..runtime.ort import make_session, run_in_batches, run_logits
from ..runtime.tensorrt import TensorRTRunner, tensorrt_status
from ..runtime.torch_runner import TorchRunner, cuda_status
from ..train import ClassificationReport, predict
from .onnx_export import EXPORT_REVISION, INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx, reference_model
from .parity import check_parity
from .quantize import quantize_int8, sensitivity
from .tensorrt_engine import EngineSpec, build_engine
from .torch_export import save_torch_model


@dataclass
class CompileOptions:
    fmt: str = "onnx"
    num_points: int | None = None  # None: the checkpoint's training input size
    data: str | None = None
    calib_size: int = 1024  # measured: 256 clouds lost 0.61 OA points on the student, 1024 lost 0.41
    calib_seed: int = 0
    max_drop: float = 1.0  # OA points an int8 model may lose against fp32
    atol: float = 1e-4
    batch_size: int = 32
    # torch-cuda: where its checks run. "cpu" exercises the same code path (eager only) on a machine without a GPU.
    device: str = "cuda"
    log: Any = print


@dataclass
class Inputs:
    """What every stage reads: the model, its torch reference and the test split with the reference's logits."""

    checkpoint: dict[str, Any]
    model: DGCNN
    reference: DGCNN
    data: PointCloudSplits
    num_points: int
    clouds: np.ndarray
    labels: np.ndarray
    ref: np.ndarray  # the reference's logits of ``clouds``
    ref_acc: dict[str, float]


@dataclass
class Compiled:
    """A stage's result: the model file (in the work folder), its test-split logits and the manifest records."""

    model_file: str
    logits: np.ndarray
    parity: dict[str, Any]
    calibration: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None
    custom_op: dict[str, Any] | None = None


def accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    report = ClassificationReport.from_predictions(
        torch.from_numpy(logits.argmax(1)), torch.from_numpy(labels), num_classes
    )
    return {"oa": report.oa, "macc": report.macc}


def check_request(fmt: Format, opts: CompileOptions) -> None:
    """Refuse, before any work, options that cannot work and runtimes that cannot run here (typed errors)."""
    if fmt.needs_calibration and opts.calib_size < 1:
        raise ValueError(f"--calib-size must be at least 1, got {opts.calib_size}")
    if fmt.runtime == "tensorrt" and (reason := tensorrt_status()) is not None:
        raise TensorRTUnavailable(f"cannot build {fmt.name} here: {reason}")
    if fmt.runtime == "torch" and (reason := cuda_status(opts.device)) is not None:
        raise CudaUnavailable(f"cannot build {fmt.name} here: {reason}")
    if fmt.custom_op:
        from ..runtime.knn_op import check_onnxruntime
        from .knn_op import build_knn_op

        check_onnxruntime()
        build_knn_op()  # KnnOpUnavailable without a compiler or headers; a cache lookup once built


def compile_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, opts: CompileOptions) -> dict[str, Any]:
    """Compile ``checkpoint`` into the artifact folder ``out``; returns the manifest written there."""
    fmt = get_format(opts.fmt, among=ARTIFACT_FORMATS)
    check_request(fmt, opts)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ExportError(f"{out} exists and is not a pointkd artifact; choose another --out")
    inputs = load_inputs(checkpoint, opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result = run_stages(fmt, inputs, work, opts)
        manifest = artifact_manifest(fmt, checkpoint, inputs, result, opts)
        write_manifest(work, manifest)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def load_inputs(checkpoint: str | os.PathLike, opts: CompileOptions) -> Inputs:
    """The checkpoint's model, the test split at its point count and the torch reference's logits of it."""
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).float()
    num_points = opts.num_points or int(ckpt.get("num_points") or 1024)
    data = load_modelnet40(opts.data, num_points=num_points)
    if data.classes and ckpt.get("classes") and list(ckpt["classes"]) != list(data.classes):
        raise ExportError("the checkpoint's class names differ from the data's; evaluate on the data it was trained on")
    clouds = fixed_subset(data.test_x, num_points).numpy().astype(np.float32)
    labels = data.test_y.numpy()
    t0 = time.perf_counter()
    reference = reference_model(model)
    ref = predict(reference, torch.from_numpy(clouds), num_points, opts.batch_size).numpy()
    ref_acc = accuracy(ref, labels, data.num_classes)
    opts.log(
        f"torch reference: OA {ref_acc['oa'] * 100:.2f} %  mAcc {ref_acc['macc'] * 100:.2f} %  "
        f"({len(clouds)} test clouds, {num_points} points, {time.perf_counter() - t0:.0f} s)"
    )
    return Inputs(ckpt, model, reference, data, num_points, clouds, labels, ref, ref_acc)


def run_stages(fmt: Format, inputs: Inputs, work: Path, opts: CompileOptions) -> Compiled:
    """The stages ``fmt``'s row asks for (see the module docstring), each checked, into ``work``."""
    if not fmt.onnx:
        return _torch_stage(fmt, inputs, work, opts)
    result = _export_stage(inputs, work, opts)
    if fmt.quantization:
        result = _quantize_stage(fmt, inputs, work, result, opts)
    if fmt.custom_op:
        result = _fuse_stage(fmt, inputs, work, result, opts)
    if fmt.runtime == "tensorrt":
        result = _engine_stage(fmt, inputs, work, result, opts)
    return result


def artifact_manifest(
    fmt: Format, checkpoint: str | os.PathLike, inputs: Inputs, result: Compiled, opts: CompileOptions
) -> dict[str, Any]:
    """The manifest of a compiled artifact (``files`` is added by :func:`write_manifest`)."""
    data, model = inputs.data, inputs.model
    acc = accuracy(result.logits, inputs.labels, data.num_classes)
    opts.log(f"{fmt.name}: OA {acc['oa'] * 100:.2f} %  mAcc {acc['macc'] * 100:.2f} %")
    return {
        "artifact_format": fmt.name,
        "model_file": result.model_file,
        "model": {
            "name": inputs.checkpoint.get("model_name"),
            "config": model.config.to_dict(),
            "parameters": model.num_parameters,
        },
        "classes": list(data.classes),
        "input": input_contract(inputs.num_points, INPUT_NAME),
        "output": {"name": OUTPUT_NAME, "shape": ["batch", data.num_classes], "dtype": "float32", "kind": "logits"},
        "source_checkpoint": {"path": str(checkpoint), "sha256": sha256_file(Path(checkpoint))},
        "accuracy": {
            "split": "test",
            "clouds": len(inputs.clouds),
            "data": data.source,
            **acc,
            "reference": inputs.ref_acc,
            "oa_drop_pt": (inputs.ref_acc["oa"] - acc["oa"]) * 100,
        },
        "parity": result.parity,
        "calibration": result.calibration,
        "runtime": result.runtime,
        "custom_op": result.custom_op,
        "versions": _versions(),
        "opset": OPSET if fmt.onnx else None,
        "export_revision": EXPORT_REVISION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _log_parity(log: Any, what: str, report: Any) -> None:
    log(
        f"{what}: max |Δlogit| {report.max_abs_logit_diff:.2e}, top-1 agreement "
        f"{report.top1_agreement * 100:.2f} %; {report.off_clouds} clouds off only through kNN ties "
        f"(on the same graphs: max |Δlogit| "
        f"{report.max_diff_same_graphs:.2e}; largest tie gap {report.max_tie_gap:.1e})"
    )


def _export_stage(inputs: Inputs, work: Path, opts: CompileOptions) -> Compiled:
    """ONNX fp32 and its tie-aware parity check against the torch reference."""
    fp32 = export_onnx(inputs.model, work / "model.onnx", inputs.num_points)
    got = run_logits(make_session(fp32), inputs.clouds, opts.batch_size)
    report = check_parity(inputs.reference, fp32, inputs.clouds, inputs.ref, got, opts.atol)
    _log_parity(opts.log, "onnx fp32", report)
    if not report.ok:
        raise ParityError(f"ONNX parity failed: {report.reason}")
    return Compiled(fp32.name, got, report.to_dict())


def _quantize_stage(fmt: Format, inputs: Inputs, work: Path, fp32: Compiled, opts: CompileOptions) -> Compiled:
    """int8 (the format's flavour) from a stratified training-split calibration set, gated on the OA drop."""
    from calibration import build_calibration_set

    data = inputs.data
    size = min(opts.calib_size, len(data.train_y))
    if size < opts.calib_size:
        opts.log(f"calibration: the training split has only {size} clouds; using all of them")
    calib = build_calibration_set(data, size, inputs.num_points, opts.calib_seed)
    calib.save(work / "calibration.json")
    flavour = fmt.quantization
    int8 = quantize_int8(work / fp32.model_file, work / "model.int8.onnx", calib.clouds, flavour)
    record = {"file": "calibration.json", "size": len(calib.ids), "seed": opts.calib_seed, "split": "train"}
    q = run_logits(make_session(int8), inputs.clouds, opts.batch_size)
    drop = (inputs.ref_acc["oa"] - accuracy(q, inputs.labels, data.num_classes)["oa"]) * 100
    opts.log(f"onnx int8 ({flavour}): OA drop {drop:+.2f} pt against fp32")
    if drop > opts.max_drop:
        rows = sensitivity(work / fp32.model_file, int8, calib.clouds[:16])
        table = "\n".join(f"  {r.tensor:<40} SQNR {r.sqnr_db:6.1f} dB" for r in rows)
        raise AccuracyDropError(
            f"int8 loses {drop:.2f} OA points (> --max-drop {opts.max_drop}); least accurate activations:\n{table}"
        )
    return dataclasses.replace(fp32, model_file=int8.name, logits=q, calibration={**record, "flavour": flavour})


def _fuse_stage(fmt: Format, inputs: Inputs, work: Path, fp32: Compiled, opts: CompileOptions) -> Compiled:
    """The fused rewrite of the fp32 model (each kNN a ``KnnTopK``, each EdgeConv's gather + max a ``GatherMax``),
    its operator library copied in, checked against the fp32 model."""
    from ..runtime.knn_op import make_fused_session
    from .knn_op import DOMAIN, OP_TYPE, build_knn_op, fuse_knn
    from .knn_op.fuse_gather_max import GATHER_MAX

    library = work / str(fmt.custom_op)
    shutil.copyfile(build_knn_op(), library)
    fused = fuse_knn(work / fp32.model_file, work / str(fmt.model_file))
    session = make_fused_session(work / str(fmt.model_file), library)
    got = run_logits(session, inputs.clouds, opts.batch_size)
    diff = float(np.abs(got - fp32.logits).max())
    agree = float((got.argmax(1) == fp32.logits.argmax(1)).mean())
    opts.log(f"fused kNN ({len(fused)} layers): max |Δlogit| {diff:.2e} against onnx fp32, top-1 {agree * 100:.2f} %")
    if diff > opts.atol or agree < 1.0:
        raise ParityError(f"fused kNN parity failed: max |Δlogit| {diff:.3g}, top-1 agreement {agree * 100:.2f} %")
    record = {"library": library.name, "sha256": sha256_file(library), "domain": DOMAIN, "op_type": OP_TYPE}
    record |= {
        "nodes": len(fused),
        "op_types": {OP_TYPE: len(fused), GATHER_MAX: _count_ops(work / str(fmt.model_file), GATHER_MAX)},
    }
    parity = {**fp32.parity, "fused_vs_fp32": {"max_abs_logit_diff": diff, "top1_agreement": agree}}
    return dataclasses.replace(fp32, model_file=str(fmt.model_file), logits=got, parity=parity, custom_op=record)


def _count_ops(path: Path, op_type: str) -> int:
    import onnx

    return sum(node.op_type == op_type for node in onnx.load(str(path)).graph.node)


def _engine_stage(fmt: Format, inputs: Inputs, work: Path, onnx: Compiled, opts: CompileOptions) -> Compiled:
    """A TensorRT engine built from the ONNX model (fp32, or the symmetric Q/DQ int8), run on the test split."""
    spec = EngineSpec(fmt.precision, inputs.num_points, max_batch=opts.batch_size)
    engine = build_engine(work / onnx.model_file, work / str(fmt.model_file), spec)
    final = run_in_batches(TensorRTRunner(engine), inputs.clouds, opts.batch_size)
    return dataclasses.replace(onnx, model_file=engine.name, logits=final)


def _torch_stage(fmt: Format, inputs: Inputs, work: Path, opts: CompileOptions) -> Compiled:
    """The torch-cuda model file, checked eagerly on ``opts.device`` (tie-aware parity) and, on CUDA, replayed
    through CUDA graphs."""
    clouds = inputs.clouds
    path = save_torch_model(inputs.model, work / str(fmt.model_file))
    eager = TorchRunner(path, opts.device, graphs=False)
    got = run_in_batches(eager, clouds, opts.batch_size)
    report = check_parity(inputs.reference, eager.logits_and_graphs, clouds, inputs.ref, got, opts.atol)
    _log_parity(opts.log, f"torch eager on {opts.device}", report)
    if not report.ok:
        raise ParityError(f"torch-cuda parity failed: {report.reason}")
    runtime: dict[str, Any] = {"device": _device_name(opts.device), "seeded_topk": False, "cuda_graphs": None}
    if torch.device(opts.device).type == "cuda":
        graphs = TorchRunner(path, opts.device, graphs=True)
        replayed = run_in_batches(graphs, clouds, opts.batch_size)
        diff = float(np.abs(replayed - got).max())
        opts.log(f"CUDA graphs (batch sizes {graphs.captured_batches}): max |Δlogit| {diff:.2e} against eager")
        if diff > opts.atol:
            raise ParityError(f"torch-cuda parity failed: CUDA graph replay differs from eager by {diff:.3g}")
        runtime["cuda_graphs"] = {"max_abs_diff_vs_eager": diff, "batches_checked": graphs.captured_batches}
    return Compiled(path.name, got, report.to_dict(), runtime=runtime)


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def compile_cached(checkpoint: str | os.PathLike, out: str | os.PathLike, opts: CompileOptions) -> dict[str, Any]:
    """:func:`compile_checkpoint`, unless ``out`` already holds a valid artifact of the same checkpoint (sha256),
    format, point count and export revision: then its manifest is returned and nothing is recompiled."""
    out = Path(out)
    if (out / MANIFEST).is_file():
        try:
            m = read_manifest(out, verify=True)
        except ManifestError:
            m = None
        points = opts.num_points or int(load_checkpoint(checkpoint).get("num_points") or 1024)
        if (
            m is not None
            and m["artifact_format"] == opts.fmt
            and m["input"]["num_points"] == points
            and m["source_checkpoint"]["sha256"] == sha256_file(Path(checkpoint))
            and m.get("export_revision") == EXPORT_REVISION
        ):
            opts.log(f"{out}: already compiled from this checkpoint; reusing it")
            return m
    return compile_checkpoint(checkpoint, out, opts)


def _versions() -> dict[str, str]:
    from .. import __version__

    versions = {"pointkd": __version__, "torch": torch.__version__}
    for name in ("onnx", "onnxruntime"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    if torch.version.cuda is not None:
        versions["cuda"] = str(torch.version.cuda)
    return versions
