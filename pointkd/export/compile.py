"""``pointkd compile``: checkpoint -> artifact folder (model file + manifest.json), checking accuracy at every step.

1. Export the rewritten inference graph to ONNX (fp32) and run it with ONNX Runtime on the whole test split:
   max |Δlogit| against the torch model must be <= ``atol`` (1e-4) and the top-1 class identical on every cloud.
2. ``onnx-int8``: calibrate on a stratified training-split set, quantize (QDQ, per-channel, kNN in float), run the
   whole test split again, and refuse when OA drops by more than ``max_drop`` points, printing the per-node SQNR.
3. ``trt-fp16`` / ``trt-int8``: build a TensorRT engine from the same ONNX (int8 from the symmetric Q/DQ graph) and
   run the test split on it.
4. ``torch-cuda`` (no ONNX): save the folded inference model (:mod:`pointkd.export.torch_backend`), run the test
   split on the GPU with the same tie-aware parity check as the ONNX export, then through CUDA graphs, which must
   give the eager logits. Without a CUDA device it stops before anything is written.
The artifact is assembled in a temporary folder beside ``out`` and renamed into place only when every check
passed, so a failed or interrupted compile never leaves a half-written artifact.
"""

from __future__ import annotations

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

from ..data import fixed_subset, load_modelnet40
from ..data.modelnet40 import sha256_file
from ..train import ClassificationReport, load_checkpoint, model_from_checkpoint, predict
from .manifest import MANIFEST, input_contract, write_manifest
from .onnx_export import (
    EXPORT_REVISION,
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    ExportError,
    export_onnx,
    reference_model,
)
from .ort_session import make_session, run_in_batches, run_logits
from .parity import check_parity
from .quantize import quantize_int8, sensitivity
from .tensorrt_backend import TRT_FORMATS, EngineSpec, TensorRTRunner, build_engine, tensorrt_status
from .torch_backend import TORCH_FORMATS, TorchRunner, cuda_status, save_torch_model

FORMATS = ("onnx", "onnx-int8", *TORCH_FORMATS, *TRT_FORMATS)


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


def accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    report = ClassificationReport.from_predictions(
        torch.from_numpy(logits.argmax(1)), torch.from_numpy(labels), num_classes
    )
    return {"oa": report.oa, "macc": report.macc}


def compile_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, opts: CompileOptions) -> dict[str, Any]:
    """Compile ``checkpoint`` into the artifact folder ``out``; returns the manifest written there."""
    if opts.fmt not in FORMATS:
        raise ValueError(f"unknown format {opts.fmt!r}; choose from {', '.join(FORMATS)}")
    if opts.fmt in ("onnx-int8", "trt-int8") and opts.calib_size < 1:
        raise ValueError(f"--calib-size must be at least 1, got {opts.calib_size}")
    if opts.fmt in TRT_FORMATS and (reason := tensorrt_status()) is not None:
        raise ExportError(f"cannot build {opts.fmt} here: {reason}")
    if opts.fmt in TORCH_FORMATS and (reason := cuda_status(opts.device)) is not None:
        raise ExportError(f"cannot build {opts.fmt} here: {reason}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ExportError(f"{out} exists and is not a pointkd artifact; choose another --out")
    log = opts.log
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).float()
    num_points = opts.num_points or int(ckpt.get("num_points") or 1024)
    data = load_modelnet40(opts.data, num_points=num_points)
    if data.classes and ckpt.get("classes") and list(ckpt["classes"]) != list(data.classes):
        raise ExportError("the checkpoint's class names differ from the data's; evaluate on the data it was trained on")
    clouds = fixed_subset(data.test_x, num_points).numpy().astype(np.float32)
    labels = data.test_y.numpy()
    num_classes = data.num_classes

    t0 = time.perf_counter()
    reference = reference_model(model)
    ref = predict(reference, torch.from_numpy(clouds), num_points, opts.batch_size).numpy()
    ref_acc = accuracy(ref, labels, num_classes)
    log(
        f"torch reference: OA {ref_acc['oa'] * 100:.2f} %  mAcc {ref_acc['macc'] * 100:.2f} %  "
        f"({len(clouds)} test clouds, {num_points} points, {time.perf_counter() - t0:.0f} s)"
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if opts.fmt in TORCH_FORMATS:
            model_file, final, parity, runtime = _torch_stage(model, reference, work, clouds, ref, opts)
            calibration = None
        else:
            model_file, final, parity, calibration = _onnx_stages(
                model, reference, work, clouds, ref, ref_acc["oa"], data, num_points, opts
            )
            runtime = None
        acc = accuracy(final, labels, num_classes)
        log(f"{opts.fmt}: OA {acc['oa'] * 100:.2f} %  mAcc {acc['macc'] * 100:.2f} %")
        manifest = {
            "artifact_format": opts.fmt,
            "model_file": model_file,
            "model": {
                "name": ckpt.get("model_name"),
                "config": model.config.to_dict(),
                "parameters": model.num_parameters,
            },
            "classes": list(data.classes),
            "input": input_contract(num_points, INPUT_NAME),
            "output": {"name": OUTPUT_NAME, "shape": ["batch", num_classes], "dtype": "float32", "kind": "logits"},
            "source_checkpoint": {"path": str(checkpoint), "sha256": sha256_file(Path(checkpoint))},
            "accuracy": {
                "split": "test",
                "clouds": len(clouds),
                "data": data.source,
                **acc,
                "reference": ref_acc,
                "oa_drop_pt": (ref_acc["oa"] - acc["oa"]) * 100,
            },
            "parity": parity,
            "calibration": calibration,
            "runtime": runtime,
            "versions": _versions(),
            "opset": None if opts.fmt in TORCH_FORMATS else OPSET,
            "export_revision": EXPORT_REVISION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        write_manifest(work, manifest)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _log_parity(log: Any, what: str, report: Any) -> None:
    log(
        f"{what}: max |Δlogit| {report.max_abs_logit_diff:.2e}, top-1 agreement "
        f"{report.top1_agreement * 100:.2f} %; {report.off_clouds} clouds off only through kNN ties "
        f"(on the same graphs: max |Δlogit| "
        f"{report.max_diff_same_graphs:.2e}; largest tie gap {report.max_tie_gap:.1e})"
    )


def _onnx_stages(
    model: Any,
    reference: Any,
    work: Path,
    clouds: np.ndarray,
    ref: np.ndarray,
    ref_oa: float,
    data: Any,
    num_points: int,
    opts: CompileOptions,
) -> tuple[str, np.ndarray, dict[str, Any], dict[str, Any] | None]:
    """ONNX fp32 with its parity check, then int8 and / or a TensorRT engine as ``opts.fmt`` asks; returns
    ``(model file name, its test-split logits, the parity report, the calibration record or None)``."""
    log = opts.log
    labels = data.test_y.numpy()
    fp32 = export_onnx(model, work / "model.onnx", num_points)
    got = run_logits(make_session(fp32), clouds, opts.batch_size)
    report = check_parity(reference, fp32, clouds, ref, got, opts.atol)
    _log_parity(log, "onnx fp32", report)
    if not report.ok:
        raise ExportError(f"ONNX parity failed: {report.reason}")
    model_file, final, calibration = fp32.name, got, None
    if opts.fmt in ("onnx-int8", "trt-int8"):
        from calibration import build_calibration_set

        size = min(opts.calib_size, len(data.train_y))
        if size < opts.calib_size:
            log(f"calibration: the training split has only {size} clouds; using all of them")
        calib = build_calibration_set(data, size, num_points, opts.calib_seed)
        calib.save(work / "calibration.json")
        flavour = "ort" if opts.fmt == "onnx-int8" else "tensorrt"
        int8 = quantize_int8(fp32, work / "model.int8.onnx", calib.clouds, flavour)
        calibration = {
            "file": "calibration.json",
            "size": len(calib.ids),
            "seed": opts.calib_seed,
            "split": "train",
            "flavour": flavour,
        }
        q = run_logits(make_session(int8), clouds, opts.batch_size)
        drop = (ref_oa - accuracy(q, labels, data.num_classes)["oa"]) * 100
        log(f"onnx int8 ({flavour}): OA drop {drop:+.2f} pt against fp32")
        if drop > opts.max_drop:
            rows = sensitivity(fp32, int8, calib.clouds[:16])
            table = "\n".join(f"  {r.tensor:<40} SQNR {r.sqnr_db:6.1f} dB" for r in rows)
            raise ExportError(
                f"int8 loses {drop:.2f} OA points (> --max-drop {opts.max_drop}); least accurate activations:\n{table}"
            )
        model_file, final = int8.name, q
    if opts.fmt in TRT_FORMATS:
        spec = EngineSpec("fp16" if opts.fmt == "trt-fp16" else "int8", num_points, max_batch=opts.batch_size)
        engine = build_engine(work / model_file, work / f"model.{spec.precision}.engine", spec)
        final = run_in_batches(TensorRTRunner(engine), clouds, opts.batch_size)
        model_file = engine.name
    return model_file, final, report.to_dict(), calibration


def _torch_stage(
    model: Any, reference: Any, work: Path, clouds: np.ndarray, ref: np.ndarray, opts: CompileOptions
) -> tuple[str, np.ndarray, dict[str, Any], dict[str, Any]]:
    """The torch-cuda model file, checked eagerly on ``opts.device`` (tie-aware parity) and, on CUDA, replayed
    through CUDA graphs; returns ``(model file name, its test-split logits, the parity report, the runtime
    record)``."""
    path = save_torch_model(model, work / "model.pt")
    eager = TorchRunner(path, opts.device, graphs=False)
    got = run_in_batches(eager, clouds, opts.batch_size)
    report = check_parity(reference, eager.logits_and_graphs, clouds, ref, got, opts.atol)
    _log_parity(opts.log, f"torch eager on {opts.device}", report)
    if not report.ok:
        raise ExportError(f"torch-cuda parity failed: {report.reason}")
    runtime: dict[str, Any] = {"device": _device_name(opts.device), "seeded_topk": False, "cuda_graphs": None}
    if torch.device(opts.device).type == "cuda":
        graphs = TorchRunner(path, opts.device, graphs=True)
        replayed = run_in_batches(graphs, clouds, opts.batch_size)
        diff = float(np.abs(replayed - got).max())
        opts.log(f"CUDA graphs (batch sizes {graphs.captured_batches}): max |Δlogit| {diff:.2e} against eager")
        if diff > opts.atol:
            raise ExportError(f"torch-cuda parity failed: CUDA graph replay differs from eager by {diff:.3g}")
        runtime["cuda_graphs"] = {"max_abs_diff_vs_eager": diff, "batches_checked": graphs.captured_batches}
    return path.name, got, report.to_dict(), runtime


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def compile_cached(checkpoint: str | os.PathLike, out: str | os.PathLike, opts: CompileOptions) -> dict[str, Any]:
    """:func:`compile_checkpoint`, unless ``out`` already holds a valid artifact of the same checkpoint (sha256),
    format, point count and export revision: then its manifest is returned and nothing is recompiled."""
    from .manifest import ManifestError, read_manifest

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
