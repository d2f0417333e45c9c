"""A benchmark report: one row per (model, format, threads), written as JSON, Markdown and an accuracy-vs-latency
PNG, in the Ultralytics benchmark style (status, size, accuracy, ms, FPS per format)."""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..documents import read_document
from ..runtime.formats import FORMATS

STATUS = {"ok": "✅", "check_failed": "❎", "failed": "❌"}
STATUS_MEANING = {
    "ok": "ran, and its test-split accuracy was validated",
    "check_failed": "exported, but an accuracy check failed",
    "failed": "failed or unavailable here",
}
REPORT_FORMAT = "pointkd-bench/1"
# How `pointkd bench` measures; a report made otherwise (benchmarks/gpu_check.py) says so in its settings.
PROCESS = "in a fresh process per (model, format) with the thread count fixed"
PEAK = (
    "Peak memory: the worker's peak RSS above its baseline (torch, ONNX Runtime and pointkd imported, test clouds "
    "loaded) over the accuracy pass and the timing at the most threads, with the system allocator."
)
BUDGET_MS = 10.0


@dataclass
class BenchRow:
    model: str  # the label: a checkpoint's file stem or an artifact's folder name
    format: str  # a format of pointkd.runtime.formats ("?" for a source that is neither checkpoint nor artifact)
    status: str  # a key of STATUS
    threads: int | None = None  # CPU threads; None for a GPU row and for a row that did not run
    reason: str = ""
    model_name: str | None = None  # the registry name
    source: str = ""
    artifact: str | None = None
    points: int | None = None
    params: int | None = None
    size_mb: float | None = None
    oa: float | None = None
    macc: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    runs: int | None = None
    clouds_per_s: float | None = None  # batch 32
    peak_mb: float | None = None  # peak RSS above the worker's baseline (runtime imported, test clouds loaded)

    def __post_init__(self) -> None:
        if self.status not in STATUS:
            raise ValueError(f"status must be one of {sorted(STATUS)}, got {self.status!r}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchRow:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def _f(value: float | None, fmt: str, scale: float | None = None) -> str:
    if value is None:
        return "–"
    return format(value if scale is None else value * scale, fmt)


def _note(reason: str) -> str:
    """The reason's first line, fit for a table cell (the JSON keeps all of it)."""
    first = reason.strip().splitlines()[0] if reason.strip() else ""
    return first.replace("|", "/")


def to_markdown(device: dict[str, Any], rows: list[BenchRow], settings: dict[str, Any]) -> str:
    v = device["versions"]
    lines = [
        f"# pointkd bench: {device['cpu']}" + (f" + {device['gpu']}" if device.get("gpu") else ""),
        "",
        f"- Device: {device['cpu']}, {device['cores']} logical cores; threads measured: "
        f"{', '.join(map(str, device['threads'])) or '–'}; GPU: {device.get('gpu') or 'none'}; {device['os']}",
        f"- Versions: pointkd {v['pointkd']}, torch {v['torch']}, onnxruntime {v['onnxruntime']}, "
        f"tensorrt {v['tensorrt']}; Python {device['python']}",
        f"- Timing: batch 1, {settings['warmup']} warm-up runs, then up to {settings['repeats']} runs (capped at "
        f"{settings['max_seconds']:g} s) cycling over the same {settings['timing_clouds']} test clouds for every "
        f"format, {settings.get('process', PROCESS)}; p50/p95/p99 of those runs. "
        f"Clouds/s at batch {settings['batch_size']} from the median batch time. OA / mAcc on all "
        f"{settings['test_clouds']} test clouds ({settings['data']}). {settings.get('peak', PEAK)}",
        "- Status: " + "; ".join(f"{STATUS[k]} {m}" for k, m in STATUS_MEANING.items()),
        *([f"- Notes: {settings['notes']}"] if settings.get("notes") else []),
        "",
        "| model | format | threads | status | size MB | params | points | OA % | mAcc % | p50 ms | p95 ms "
        "| p99 ms | FPS (b1) | clouds/s (b32) | peak MiB | note |",
        "| --- | --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- |",
    ]
    for r in rows:
        fps = None if not r.p50_ms else 1000.0 / r.p50_ms
        lines.append(
            f"| {r.model} | {r.format} | {r.threads or '–'} | {STATUS[r.status]} | {_f(r.size_mb, '.3f')} | "
            f"{_f(r.params, ',')} | {r.points or '–'} | {_f(r.oa, '.2f', 100)} | {_f(r.macc, '.2f', 100)} | "
            f"{_f(r.p50_ms, '.2f')} | {_f(r.p95_ms, '.2f')} | {_f(r.p99_ms, '.2f')} | {_f(fps, '.0f')} | "
            f"{_f(r.clouds_per_s, '.0f')} | {_f(r.peak_mb, '.0f')} | {_note(r.reason)} |"
        )
    return "\n".join(lines) + "\n"


def plot_accuracy_latency(rows: list[BenchRow], path: str | os.PathLike, budget_ms: float = BUDGET_MS) -> Path:
    """OA against p50 latency at batch 1, one marker per (model, format, threads) that ran, and the budget line."""
    from ..plotting import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(8, 5.5))
    markers = {f.name: f.marker for f in FORMATS}
    ran = [r for r in rows if r.p50_ms is not None and r.oa is not None]
    for r in ran:
        label = f"{r.model} {r.format}" + (f" {r.threads}t" if r.threads else "")
        ax.scatter(r.p50_ms, r.oa * 100, marker=markers.get(r.format, "x"), s=46, alpha=0.85)
        ax.annotate(label, (r.p50_ms, r.oa * 100), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
    ax.axvline(budget_ms, color="red", linestyle="--", linewidth=1)
    ax.text(budget_ms, ax.get_ylim()[0], f" {budget_ms:g} ms", color="red", fontsize=8, va="bottom")
    if ran:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    ax.set_ylabel("test OA (%)")
    ax.set_title("accuracy vs latency per model / format / threads")
    ax.grid(True, which="both", alpha=0.3)
    return save_png(fig, path, dpi=120)


def write_report(
    out_dir: str | os.PathLike,
    device: dict[str, Any],
    rows: list[BenchRow],
    settings: dict[str, Any],
    plot: bool = True,
) -> dict[str, Path]:
    """``out_dir/bench.json``, ``bench.md`` and (with ``plot``; it needs matplotlib) ``bench.png``; returns the paths
    written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": REPORT_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "settings": settings,
        "rows": [asdict(r) for r in rows],
    }
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md"}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(paths["json"])
    paths["md"].write_text(to_markdown(device, rows, settings))
    if plot:
        paths["png"] = plot_accuracy_latency(rows, out_dir / "bench.png")
    return paths


def read_report(path: str | os.PathLike) -> tuple[dict[str, Any], list[BenchRow]]:
    """``(device, rows)`` from a ``bench.json`` (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "bench.json"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark report at {path} (write one with `pointkd bench`)")
    payload = read_document(path, REPORT_FORMAT, "a pointkd bench report")
    return payload["device"], [BenchRow.from_dict(r) for r in payload["rows"]]
