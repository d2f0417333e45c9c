"""docs/results.md's ``pointkd bench`` sections (:mod:`pointkd.bench`): latency across devices, each device's report,
and the compiled artifacts' manifests (``pointkd compile``)."""

from __future__ import annotations

import json
from pathlib import Path

from pointkd.results import RESULTS, device_dirs, glob, load, num, pct, source, table


def cpu_identity(dev: dict) -> str:
    """`` (zen5, family 26 model 2 stepping 1, avx512vnni, fused kNN avx512)`` from a device header that records
    them ('' for a header written before they were)."""
    if not dev.get("simd"):
        return ""
    fms = f"family {dev.get('family')} model {dev.get('model')} stepping {dev.get('stepping')}"
    return f" ({dev.get('microarch')}, {fms}, {dev['simd']}, fused kNN {dev.get('knn_dispatch', '?')})"


def bench_rows(d: dict) -> dict[tuple[str, str, int | None], dict]:
    """A bench report's measured rows by (model, format, threads)."""
    return {(r["model"], r["format"], r.get("threads")): r for r in d.get("rows", []) if r.get("status") == "ok"}


def section_cross_device(root: Path) -> list[str]:
    """p50 / p99 (ms, batch 1) of every (model, format, threads) measured by a committed bench.json, one column per
    device folder, so the same model and format sit side by side."""
    reports = {rel.parent.name: bench_rows(load(root, rel)) for rel in device_dirs(root, "bench.json")}
    if len(reports) < 2:
        return []
    devices = sorted(reports)
    keys = sorted({k for rows in reports.values() for k in rows}, key=lambda k: (k[0], k[1], k[2] or 0))
    rows = []
    for model, fmt, threads in keys:
        cells = []
        for dev in devices:
            r = reports[dev].get((model, fmt, threads))
            cells.append(f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if r else "–")
        points = next(
            reports[d][(model, fmt, threads)].get("points", "–") for d in devices if (model, fmt, threads) in reports[d]
        )
        rows.append([model, fmt, points, threads or "–", *cells])
    header = ["model", "format", "points", "threads", *(f"{d} p50 / p99" for d in devices)]
    return [
        "### Across devices",
        "",
        "Batch-1 latency (ms, p50 / p99) of the same model and format on each device that has a `pointkd bench` "
        "report; – where that device's report has no such row. The device sections below give each one's settings "
        "and OA.",
        "",
        *table(header, rows, "llrr" + "r" * len(devices)),
        "",
        source(*device_dirs(root, "bench.json")),
        "",
    ]


def section_bench(root: Path) -> list[str]:
    lines = []
    for rel in device_dirs(root, "bench.json"):
        d = load(root, rel)
        dev = d.get("device", {})
        v = dev.get("versions", {})
        lines += [
            f"### `pointkd bench`: {rel.parent.name}",
            "",
            f"{dev.get('cpu', '?')}{cpu_identity(dev)}, {dev.get('cores', '?')} cores, "
            f"GPU {dev.get('gpu') or 'none'}; torch "
            f"{v.get('torch', '?')}, onnxruntime {v.get('onnxruntime', '?')}, tensorrt {v.get('tensorrt', '?')}; "
            f"{d.get('created', '')}. Batch 1 latency (ms), batch-32 throughput, OA on the whole test split.",
            "",
        ]
        rows = []
        failed: dict[str, list[str]] = {}
        for r in d.get("rows", []):
            if r.get("status") == "failed":
                failed.setdefault(r.get("reason") or "failed", []).append(f"{r['model']} {r['format']}")
                continue
            rows.append(
                [
                    r["model"],
                    r["format"],
                    r.get("points", "–"),
                    r.get("threads", "–"),
                    "ok" if r.get("status") == "ok" else r.get("status"),
                    pct(r.get("oa")),
                    num(r.get("size_mb"), 3),
                    num(r.get("p50_ms")),
                    num(r.get("p95_ms")),
                    num(r.get("p99_ms")),
                    num(r.get("clouds_per_s"), 0),
                    num(r.get("peak_mb"), 0),
                ]
            )
        header = ["model", "format", "points", "threads", "status", "OA %", "MB", "p50", "p95", "p99", "clouds/s"]
        lines += table([*header, "peak MB"], rows, "llrrlrrrrrrr")
        for reason, which in failed.items():
            lines += ["", f"Not run ({reason}): {', '.join(which)}."]
        lines += ["", source(rel), ""]
    return lines


def section_artifacts(root: Path) -> list[str]:
    rels = glob(root, "**/manifest.json")
    if not rels:
        return []
    rows = []
    for rel in rels:
        m = json.loads((root / rel).read_text())
        acc, par = m.get("accuracy") or {}, m.get("parity") or {}
        shape = (m.get("input") or {}).get("shape") or [None, "–"]
        rows.append(
            [
                f"[`{rel.parent.relative_to(RESULTS)}`](../{rel})",
                m.get("artifact_format", "–"),
                shape[1],
                pct(acc.get("oa")),
                num(acc.get("oa_drop_pt")),
                f"{par.get('off_clouds', '–')} / {par.get('clouds', '–')}",
                "–" if par.get("max_diff_same_graphs") is None else f"{par['max_diff_same_graphs']:.1e}",
            ]
        )
    header = ["artifact", "format", "points", "OA %", "OA drop pt", "clouds off (kNN ties)", "max Δlogit, same graphs"]
    return [
        "### Compiled artifacts",
        "",
        "Each artifact's manifest: test OA after compile and the tie-aware parity check.",
        "",
        *table(header, rows, "llrrrrr"),
        "",
        "Source: each row's `manifest.json`.",
        "",
    ]
