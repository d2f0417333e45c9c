"""Which teacher EdgeConv layer each student layer is matched with, for the feature-level losses."""

from __future__ import annotations

from collections.abc import Sequence


def default_layer_map(teacher_layers: int, student_layers: int) -> list[tuple[int, int]]:
    """``[(teacher_layer, student_layer), ...]``: 1:1 when depths match; otherwise every student layer ``s``
    is aligned with teacher layer ``ceil((s + 1)·T/S) − 1``, i.e. every n-th teacher layer, ending on the
    last layer of both."""
    if teacher_layers < 1 or student_layers < 1:
        raise ValueError("both models need at least one EdgeConv layer")
    if student_layers > teacher_layers:
        raise ValueError(
            f"student has more EdgeConv layers ({student_layers}) than the teacher ({teacher_layers}); "
            "give an explicit layer_map"
        )
    return [(-(-(s + 1) * teacher_layers // student_layers) - 1, s) for s in range(student_layers)]


def validate_layer_map(
    layer_map: Sequence[Sequence[int]], teacher_layers: int, student_layers: int
) -> list[tuple[int, int]]:
    """Check an explicit map (pairs of 0-based indices) against the two models, with errors that say why."""
    pairs = []
    for item in layer_map:
        if len(item) != 2:
            raise ValueError(f"layer_map entries are [teacher_layer, student_layer] pairs, got {list(item)}")
        t, s = int(item[0]), int(item[1])
        if not 0 <= t < teacher_layers:
            raise ValueError(f"layer_map names teacher layer {t}, but the teacher has layers 0..{teacher_layers - 1}")
        if not 0 <= s < student_layers:
            raise ValueError(f"layer_map names student layer {s}, but the student has layers 0..{student_layers - 1}")
        pairs.append((t, s))
    if not pairs:
        raise ValueError("layer_map is empty")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"layer_map repeats a pair: {pairs}")
    return pairs
