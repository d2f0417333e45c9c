"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors and builtins (so ``torch.load(weights_only=True)`` accepts it):
``format``, ``model_name``, ``model_config`` (``DGCNNConfig.to_dict()``), ``state_dict``, ``classes``,
``num_points`` (the input contract), ``config`` (the run config), ``epoch``/``batch`` (where training resumes),
``optimizer``, ``metrics``, ``history``. Release checkpoints (:func:`slim_checkpoint`) keep only
what inference needs, with weights in fp16.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .models import DGCNN, model_from_config

FORMAT = "pointkd-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a pointkd checkpoint."""


def save_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``ckpt`` to ``path`` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **ckpt}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a pointkd checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else '?'})"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any] | str | os.PathLike) -> DGCNN:
    """The model in ``ckpt`` (a dict or a path), in eval mode and float32."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    model = model_from_config(ckpt["model_config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval()


def slim_checkpoint(ckpt: dict[str, Any], half: bool = True) -> dict[str, Any]:
    """A release copy: no optimizer or RNG state; floating weights in fp16 when ``half``."""
    keep = (
        "model_name",
        "model_config",
        "classes",
        "num_points",
        "config",
        "epoch",
        "metrics",
        "data_source",
        "derived",
    )
    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in ckpt["state_dict"].items()}
    return {**{k: ckpt[k] for k in keep if k in ckpt}, "state_dict": state, "batch": 0}


def half_resume_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``ckpt`` whole (optimizer, position, history) with every fp32 tensor in it in fp16: a resume state at about
    half the size, for parking a teacher across machines (:mod:`pointkd.campaign.inflight`). Resuming casts the
    weights back to fp32 and the momentum to its parameter's dtype (``Optimizer.load_state_dict``), so the run goes
    on from weights rounded to fp16 (relative error <= 2**-11): close to, not bit for bit, where it stopped."""

    def half(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.half() if value.dtype == torch.float32 else value
        if isinstance(value, dict):
            return {k: half(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(half(v) for v in value)
        return value

    return {k: (v if k == "history" else half(v)) for k, v in ckpt.items()}


def regraph_checkpoint(ckpt: dict[str, Any], knn_layers: list[int] | None) -> dict[str, Any]:
    """``ckpt`` with only ``knn_layers`` building a kNN graph (layer 0 always does; ``None``: every layer); the
    other EdgeConvs aggregate over the most recent graph. The weights are unchanged, so the accuracy is not: the
    test metrics measured on the old graphs are dropped and ``derived`` records what was changed, from what.
    ``benchmarks/studies/graph_reuse/graph_reuse.md`` measures what such a change costs trained students."""
    import dataclasses

    config = model_from_config(ckpt["model_config"]).config  # validates the source's config
    new = dataclasses.replace(config, knn_layers=None if knn_layers is None else tuple(knn_layers))
    graphs = "every layer" if new.knn_layers is None else "layers " + ", ".join(map(str, new.knn_layers))
    new = dataclasses.replace(new, description=f"{config.description.split(' [')[0]} [kNN graphs at {graphs}]")
    metrics = {k: v for k, v in (ckpt.get("metrics") or {}).items() if not k.startswith("test_")}
    derived = {
        "from_state_sha256": state_sha256(ckpt["state_dict"]),
        "from_knn_layers": None if config.knn_layers is None else list(config.knn_layers),
        "knn_layers": None if new.knn_layers is None else list(new.knn_layers),
        "note": "kNN graphs changed after training: the source's test metrics were dropped; measure with pointkd eval",
    }
    return {**ckpt, "model_config": new.to_dict(), "metrics": metrics, "derived": derived}


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of a state dict's names, dtypes, shapes and values (what identifies the weights)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
