"""Robustness of the shipped models under the ModelNet-C corruptions, with and without the outlier filter.

For the teacher, the shipped student and the served 2-graph copy (torch checkpoints, 1 thread) and for compiled
artifacts of the served copy (``--models`` takes artifact folders too: ``pointkd compile`` output, run as their
format by ONNX Runtime, 1 thread), on one seeded sample of test clouds (the same for every model): OA per corruption
and level, mOA, mCE and RmCE against the published DGCNN and (students) against the shipped teacher measured the
same way, each with ``--outlier-filter`` none and sor (``--filters``; :mod:`pointkd.bench.robustness`,
:mod:`pointkd.data.corruptions`, :mod:`pointkd.data.outliers`) -> ``benchmarks/results/robustness.{json,md}``.
A row is keyed by ``(model, format, filter)``: ``model`` the checkpoint's file name, ``format`` ``torch`` or the
artifact's format.

``--prep-cost`` instead times preparing one cloud (``prepare_cloud`` to 1024 points, with and without the filter)
against the student's batch-1 forward pass, interleaved -> ``benchmarks/results/robustness_prep_cost.{json,md}``;
run it only with the training campaign paused (``/work/logs/paused.sh``-style wrapper on the shared machine).

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/robustness.py --samples 80
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/robustness.py --models ART_DIR --out /tmp/r_art  # then:
    python benchmarks/robustness.py --render --merge /tmp/r_art.json
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/robustness.py --prep-cost

The committed artifact rows (issue #31) ran ``pointkd compile`` artifacts of the served copy built under /tmp with
every check of ``pointkd compile`` but on a 240-cloud test subset, to spare the 2 shared cores the whole split
(their manifests, with the parity and int8 records: ``results/compile/student_g02-1024-*/``)::

    python -c "import numpy as np; d = np.load('../shared/data/modelnet40_1024/modelnet40_1024.npz'); \
o = {k: d[k] for k in d.files}; i = np.sort(np.random.default_rng(7).choice(len(o['test_y']), 240, replace=False)); \
o.update({k: o[k][i] for k in ('test_x', 'test_y', 'test_names')}); np.savez('/tmp/h31b/mn40_test240.npz', **o)"
    for f in onnx onnx-int8 onnx-fused; do pointkd compile checkpoints/student_lsp_tail1024_g02.pt --format $f \
        --data /tmp/h31b/mn40_test240.npz --out /tmp/h31b/art/g02-$f; done
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pointkd.bench import harness
from pointkd.bench.robustness import DGCNN_OA, PUBLISHED_MCE, evaluate_corruptions, sample_indices, with_reference
from pointkd.bench.robustness_doc import REFERENCE_TEACHER
from pointkd.checkpoint import load_checkpoint, model_from_checkpoint
from pointkd.data import load_modelnet40, prepare_cloud
from pointkd.data.corruptions import CORRUPTION_NAMES, corrupt_cloud
from pointkd.data.outliers import OutlierFilter
from pointkd.demo import SHIPPED
from pointkd.models.dgcnn import scaled_k
from pointkd.runtime.manifest import read_manifest
from pointkd.runtime.runner import open_artifact
from pointkd.timing import percentile, time_ms

ROOT = Path(__file__).resolve().parent
RESULT = ROOT / "results" / "robustness"  # --out's default: results/robustness.{json,md}, its _levels.png beside
TEACHER = REFERENCE_TEACHER  # the teacher of "mCE vs teacher" (pointkd.bench.robustness_doc says which and why)
MODELS = (TEACHER, SHIPPED["student"])  # --models' default: that teacher and the served student
FILTERS = ("none", "sor")
FORMATS = ("torch", "onnx", "onnx-int8", "onnx-fused")


def identify(spec: str) -> tuple[Path, str, str]:
    """``(path, model, format)`` of a ``--models`` entry: a file name under ``checkpoints/`` (format ``torch``) or
    an artifact folder (its source checkpoint's file name and its artifact format)."""
    path = Path(spec)
    if path.is_dir():
        m = read_manifest(path, verify=False)
        return path, Path(m["source_checkpoint"]["path"]).name, m["artifact_format"]
    return ROOT / "checkpoints" / spec, spec, "torch"


def key(row: dict) -> tuple[str, str, str]:
    """A row's ``(model, format, filter)``; rows measured before formats were recorded are torch."""
    return row["model"], row.get("format", "torch"), row["outlier_filter"]


def runner(path: Path):
    """``(run, num_points)`` for a checkpoint (torch) or an artifact folder (its format, 1 thread)."""
    if path.is_dir():
        art = open_artifact(path, threads=1, spin=False)
        return art.run, int(art.manifest["input"]["num_points"])
    ckpt = load_checkpoint(path)
    num_points = int(ckpt.get("num_points") or 1024)
    model = model_from_checkpoint(ckpt).float().eval()
    model.set_k(scaled_k(int(ckpt["model_config"]["k"]), num_points, num_points))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return run, num_points


def markdown(r: dict) -> str:
    lines = [
        "# Robustness under ModelNet-C (regenerated), with and without the outlier filter",
        "",
        f"{r['clouds']} test clouds (seeded sample, seed {r['seed']}, the same for every row), torch on the CPU; every "
        "corrupted cloud prepared by `prepare_cloud` to the model's 1024 points, as a served upload. The corruptions "
        "are regenerated with the published parameters (pointkd.data.corruptions), not the official files; "
        "published rows are on the official files. mCE / RmCE against the published DGCNN; 'vs teacher' against "
        "the shipped teacher measured here with the same filter.",
        "",
        "| model | format | filter | clean OA % | mOA % | mCE | RmCE | mCE vs teacher | "
        + " | ".join(f"{c} OA %" for c in CORRUPTION_NAMES)
        + " |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in CORRUPTION_NAMES) + " |",
    ]
    for row in r["rows"]:
        s = row["scores"]
        vs = row.get("scores_vs", {}).get("teacher")
        vs_mce = "–" if vs is None else f"{vs['mCE']:.3f}"
        lines.append(
            f"| {row['model']} | {row.get('format', 'torch')} | {row['outlier_filter']} | "
            f"{row['clean_oa'] * 100:.1f} | {s['mOA'] * 100:.1f} | "
            f"{s['mCE']:.3f} | {s['RmCE']:.3f} | {vs_mce} | "
            + " | ".join(f"{s['corruptions'][c]['oa'] * 100:.1f}" for c in CORRUPTION_NAMES)
            + " |"
        )
    lines.append(
        "| DGCNN (published) | – | – | 92.6 | "
        f"{np.mean([DGCNN_OA[c] for c in CORRUPTION_NAMES]) * 100:.1f} | 1.000 | 1.000 | – | "
        + " | ".join(f"{DGCNN_OA[c] * 100:.1f}" for c in CORRUPTION_NAMES)
        + " |"
    )
    for name, mce in PUBLISHED_MCE.items():
        if name != "DGCNN":
            lines.append(
                f"| {name} (published) | – | – | – | – | {mce:.3f} | – | – | "
                + " | ".join("–" for _ in CORRUPTION_NAMES)
                + " |"
            )
    lines += ["", "OA per level (L0..L4, %):", "", "| model | format | filter | " + " | ".join(CORRUPTION_NAMES) + " |"]
    lines.append("| --- | --- | --- | " + " | ".join("---" for _ in CORRUPTION_NAMES) + " |")
    for row in r["rows"]:
        lines.append(
            f"| {row['model']} | {row.get('format', 'torch')} | {row['outlier_filter']} | "
            + " | ".join(" ".join(f"{v * 100:.0f}" for v in row["oa"][c]) for c in CORRUPTION_NAMES)
            + " |"
        )
    lines += [
        "",
        f"Command: `OMP_NUM_THREADS=1 nice -n 19 python benchmarks/robustness.py --samples {r['clouds']}`",
        "",
    ]
    return "\n".join(lines)


LINE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def plot(r: dict, path: Path) -> Path:
    """``path`` (PNG): OA against the corruption level, one panel per corruption, one line per row (colour: model
    and format; dashed: with sor), the published DGCNN's mean over the levels dotted."""
    from pointkd.plotting import line_panels, save_png

    def label(row: dict) -> str:
        return f"{Path(row['model']).stem} {row.get('format', 'torch')}"

    colours = {m: LINE_COLOURS[i % len(LINE_COLOURS)] for i, m in enumerate(dict.fromkeys(map(label, r["rows"])))}
    panels: dict[str, dict[str, list[float]]] = {c: {} for c in CORRUPTION_NAMES}
    styles = {}
    for row in r["rows"]:
        line = f"{label(row)}, {row['outlier_filter']}"
        dashed = row["outlier_filter"] != "none"
        styles[line] = {"color": colours[label(row)], "linestyle": "--" if dashed else "-", "marker": "o", "ms": 3}
        for c in CORRUPTION_NAMES:
            panels[c][line] = [v * 100 for v in row["oa"][c]]
    fig = line_panels(
        panels,
        range(5),
        "level",
        "OA %",
        f"OA under ModelNet-C (regenerated) by level, {r['clouds']} seeded test clouds",
        styles,
        references={c: DGCNN_OA[c] * 100 for c in CORRUPTION_NAMES},
        reference_label="DGCNN published (mean of levels)",
        ylim=(0, 100),
    )
    return save_png(fig, path, dpi=72)


def published() -> dict:
    """The published figures the tables print beside ours (official ModelNet-C files)."""
    return {"dgcnn_oa": DGCNN_OA, "mce": PUBLISHED_MCE, "source": "Ren, Pan, Liu, ICML 2022 (ModelNet-C)"}


def render(args: argparse.Namespace) -> None:
    """Rewrite the .json (with the published figures) and the .md from the committed .json, measuring nothing;
    ``--merge`` adds the rows of other runs of this script on the same sample (run side by side), and the students'
    scores against the teacher's row with the same filter."""
    folder, name = harness.out_stem(args.out, RESULT)
    result = {**json.loads((folder / f"{name}.json").read_text()), "published": published()}
    rows = {key(r): r for r in result["rows"]}
    for other in args.merge:
        extra = json.loads(Path(other).read_text())
        if extra["indices"] != result["indices"] or extra["seed"] != result["seed"]:
            raise SystemExit(f"{other} was measured on another sample")
        rows.update({key(r): r for r in extra["rows"]})
    for (model, fmt, f), r in rows.items():
        r = {**r, "format": fmt}
        if (model, fmt) != (TEACHER, "torch") and (TEACHER, "torch", f) in rows:
            r = with_reference({**r, "scores_vs": {}}, "teacher", rows[TEACHER, "torch", f])
        rows[model, fmt, f] = r
    order = {m: i for i, m in enumerate(MODELS)}

    def rank(k: tuple[str, str, str]) -> tuple:
        return order.get(k[0], 99), k[0], FORMATS.index(k[1]) if k[1] in FORMATS else 99, k[1], FILTERS.index(k[2])

    result["rows"] = [rows[k] for k in sorted(rows, key=rank)]
    harness.write(folder, name, result, markdown(result))
    plot(result, folder / f"{name}_levels.png")


def robustness(args: argparse.Namespace) -> None:
    data = load_modelnet40(args.data)
    idx = sample_indices(len(data.test_y), args.samples, args.seed)
    x, y = data.test_x.numpy()[idx], data.test_y.numpy()[idx]
    folder, name = harness.out_stem(args.out, RESULT)
    info = harness.device_header([1])
    rows, teacher = [], {}
    for spec in args.models:
        path, model, fmt = identify(spec)
        run, n = runner(path)
        for f in args.filters:
            r = evaluate_corruptions(run, x, y, n, indices=idx, seed=args.seed, outliers=f, batch_size=32)
            r = {"model": model, "format": fmt, **r}
            if (model, fmt) == (TEACHER, "torch"):
                teacher[f] = r
            elif f in teacher:
                r = with_reference(r, "teacher", teacher[f])
            rows.append(r)
            print(
                f"{model} {fmt} filter {f}: clean {r['clean_oa'] * 100:.1f} mCE {r['scores']['mCE']:.3f} "
                f"({r['seconds']:.0f} s)",
                flush=True,
            )
            result = {
                "device": info,
                "data": Path(data.source).name,
                "clouds": len(idx),
                "seed": args.seed,
                "indices": idx.tolist(),
                "rows": rows,
            }
            harness.write(folder, name, result, markdown(result))  # after every row: a stopped run keeps its rows


def prep_cost(args: argparse.Namespace) -> None:
    data = load_modelnet40(args.data)
    clouds = data.test_x.numpy()[: args.cost_clouds]
    model = SHIPPED["student"]
    run, n = runner(ROOT / "checkpoints" / model)
    sor = OutlierFilter()
    cases = {
        "clean (1024 points)": list(clouds),
        "add_local L4 (1524 points)": [corrupt_cloud(c, "add_local", 4, i) for i, c in enumerate(clouds)],
    }
    times: dict[str, list[float]] = {}
    for case, cs in cases.items():
        for c in cs:  # each cloud once per step, the steps in turn
            for what, f in (
                ("prepare, no filter", lambda c=c: prepare_cloud(c, n)),
                ("prepare, sor", lambda c=c: prepare_cloud(c, n, outliers=sor)),
                ("the served student's forward, batch 1", lambda c=c: run(prepare_cloud(c, n)[None])),
            ):
                times.setdefault(f"{case}: {what}", []).extend(time_ms(f, 1, warmup=0))
    rows = {k: {"median_ms": percentile(v, 50), "n": len(v)} for k, v in times.items()}
    result = {"device": harness.device_header([1]), "model": model, "clouds": args.cost_clouds, "rows": rows}
    lines = [
        "# Cost of the outlier filter against the model",
        "",
        f"Median over {args.cost_clouds} test clouds, interleaved, 1 thread, training campaign paused "
        "(other work may still share the 2 cores).",
        "",
        "| case | median ms |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v['median_ms']:.2f} |" for k, v in rows.items()]
    lines += ["", "Command: `OMP_NUM_THREADS=1 nice -n 19 python benchmarks/robustness.py --prep-cost` (paused)", ""]
    folder, name = harness.out_stem(args.out, RESULT)
    harness.write(folder, f"{name}_prep_cost", result, "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="checkpoint names or artifact folders")
    ap.add_argument("--filters", nargs="+", default=list(FILTERS), choices=FILTERS)
    ap.add_argument("--samples", type=int, default=80, help="test clouds in the seeded sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prep-cost", action="store_true")
    ap.add_argument("--render", action="store_true", help="only rewrite the result files from the .json")
    ap.add_argument("--merge", nargs="*", default=[], help="with --render: other result .json files to add")
    ap.add_argument("--cost-clouds", type=int, default=40)
    harness.add_common_args(
        ap, out="DIR/NAME: writes DIR/NAME.{json,md} (default benchmarks/results/robustness)", threads=None
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.render:
        render(args)
    elif args.prep_cost:
        prep_cost(args)
    else:
        robustness(args)


if __name__ == "__main__":
    main()
