"""``pointkd predict``: classify cloud files with a checkpoint or an artifact, without a server.

Each file is read and prepared exactly as the server prepares an upload (:meth:`pointkd.inference.Model.prepare`),
``batch_size`` clouds run at a time. One line a cloud goes to stdout (file, class, probability; ``top_k`` classes
with ``top_k > 1``), an unreadable file's reason to stderr, a per-class count at the end; ``--jsonl`` / ``--csv``
write one row a file, the unreadable ones with their error. Progress goes to stderr: a bar on a terminal, and a
plain line every tenth of the files (or every 30 s) into a log file, never a carriage return there.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .inference import BadCloud, Model, Prediction

PROGRESS_MIN_FILES = 20  # fewer files than this: no progress report
LOG_INTERVAL_S = 30.0


@dataclass
class Outcome:
    """What ``pointkd predict`` did: the predictions in file order and the files it could not classify."""

    predictions: list[Prediction] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(p.label for p in self.predictions)


class Progress:
    """Files done out of ``total``, on ``stream``: a tqdm bar on a terminal; else a line per tenth (or per 30 s)."""

    def __init__(self, total: int, stream: IO[str], enabled: bool = True):
        self.total = total
        self.stream = stream
        self.done = 0
        self.failed = 0
        self.start = time.monotonic()
        self.last_line = self.start
        self.next_tenth = 1
        self.enabled = enabled and total >= PROGRESS_MIN_FILES
        self.bar: Any = None
        if self.enabled and _isatty(stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="predict", file=stream, mininterval=0.1, leave=False)

    def write(self, line: str, out: IO[str]) -> None:
        """Print ``line`` to ``out`` without breaking the bar."""
        if self.bar is not None and _isatty(out):
            self.bar.write(line, file=out)
        else:
            print(line, file=out, flush=True)

    def step(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        tenth = self.done * 10 // self.total
        if tenth >= self.next_tenth or now - self.last_line >= LOG_INTERVAL_S or self.done == self.total:
            self.next_tenth = tenth + 1
            self.last_line = now
            rate = self.done / max(now - self.start, 1e-9)
            print(
                f"predict: {self.done}/{self.total} files ({100 * self.done / self.total:.0f} %), "
                f"{self.failed} unreadable, {now - self.start:.1f} s, {rate:.1f} files/s",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def classify_files(
    model: Model,
    files: Sequence[Path],
    batch_size: int = 32,
    on_prediction: Callable[[Prediction], None] | None = None,
    on_failure: Callable[[str, str], None] | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Classify ``files`` in order, ``batch_size`` clouds per model call; a file that cannot be read or taken is
    passed to ``on_failure`` with its reason and the others go on."""
    outcome = Outcome()
    pending: list[tuple[np.ndarray, int, str]] = []

    def flush() -> None:
        if not pending:
            return
        batch = np.stack([c for c, _, _ in pending])
        preds = model.predict_prepared(batch, [s for _, _, s in pending], [n for _, n, _ in pending])
        for p in preds:
            outcome.predictions.append(p)
            if on_prediction is not None:
                on_prediction(p)
        if progress is not None:
            progress.step(len(pending))
        pending.clear()

    for path in files:
        try:
            cloud, n = model.prepare(path)
        except (BadCloud, OSError, ValueError) as err:
            reason = str(err) if not isinstance(err, OSError) else f"cannot read it ({err.strerror or err})"
            outcome.failures.append((str(path), reason))
            if on_failure is not None:
                on_failure(str(path), reason)
            if progress is not None:
                progress.step(1, failed=1)
            continue
        pending.append((cloud, n, str(path)))
        if len(pending) >= batch_size:
            flush()
    flush()
    return outcome


def terminal_line(p: Prediction, top_k: int, width: int) -> str:
    """``file  class  probability`` (and the next classes with ``top_k > 1``)."""
    label, prob = p.top(1)[0]
    line = f"{p.source:<{width}}  {label:<14} {prob:.4f}"
    rest = p.top(top_k)[1:]
    if rest:
        line += "   " + "  ".join(f"{c} {q:.4f}" for c, q in rest)
    return line


def count_table(outcome: Outcome, classes: Sequence[str]) -> str:
    """The per-class count of the predictions (classes predicted at least once, most first) and the totals."""
    counts = outcome.counts()
    lines = ["", f"{'class':<16} {'clouds':>6}"]
    for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], classes.index(kv[0]))):
        lines.append(f"{label:<16} {n:>6}")
    total = len(outcome.predictions)
    lines.append(f"{'total':<16} {total:>6}" + (f"   ({len(outcome.failures)} unreadable)" if outcome.failures else ""))
    return "\n".join(lines)


class RowWriter:
    """``--jsonl`` or ``--csv``: one row a file, written as it is classified (an unreadable file with ``error``)."""

    def __init__(self, path: Path, kind: str, top_k: int):
        self.kind = kind
        self.top_k = top_k
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: io.TextIOWrapper = open(path, "w", newline="" if kind == "csv" else None)  # noqa: SIM115
        self.csv: Any = None
        if kind == "csv":
            header = ["file", "class", "probability"]
            for i in range(2, top_k + 1):
                header += [f"class_{i}", f"probability_{i}"]
            self.csv = csv.writer(self.file)
            self.csv.writerow([*header, "points", "error"])

    def prediction(self, p: Prediction) -> None:
        top = p.top(self.top_k)
        if self.csv is not None:
            row: list[Any] = [p.source]
            for c, q in top:
                row += [c, f"{q:.6g}"]
            row += [""] * (2 * (self.top_k - len(top)))
            self.csv.writerow([*row, p.points, ""])
        else:
            doc = {"file": p.source, "class": p.label, "probability": p.probability, "points": p.points}
            doc["top_k"] = [{"class": c, "probability": q} for c, q in top]
            self.file.write(json.dumps(doc) + "\n")
        self.file.flush()

    def failure(self, source: str, reason: str) -> None:
        if self.csv is not None:
            self.csv.writerow([source, *[""] * (2 * self.top_k), "", reason])
        else:
            self.file.write(json.dumps({"file": source, "error": reason}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def run_predict(
    model: Model,
    files: Sequence[Path],
    missing: Sequence[tuple[str, str]],
    top_k: int = 1,
    batch_size: int = 32,
    rows: RowWriter | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    progress: bool = True,
) -> Outcome:
    """``pointkd predict``'s work and output (see the module docstring); the exit status is the caller's."""
    out = out or sys.stdout
    err = err or sys.stderr
    width = min(60, max((len(str(f)) for f in files), default=4))
    bar = Progress(len(files), err, progress)

    def failure(source: str, reason: str) -> None:
        bar.write(f"{source}: unreadable: {reason}", err)
        if rows is not None:
            rows.failure(source, reason)

    for source, reason in missing:
        failure(source, reason)

    def prediction(p: Prediction) -> None:
        bar.write(terminal_line(p, top_k, width), out)
        if rows is not None:
            rows.prediction(p)

    try:
        outcome = classify_files(model, files, batch_size, prediction, failure, bar)
    finally:
        bar.close()
    outcome.failures[:0] = list(missing)
    print(count_table(outcome, model.classes), file=out, flush=True)
    return outcome


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
