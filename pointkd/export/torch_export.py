"""The ``torch-cuda`` model file: the folded inference model and its config, run by
:class:`pointkd.runtime.torch_runner.TorchRunner`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..models import DGCNN
from ..runtime.torch_runner import MODEL_FORMAT
from .deploy_model import DeployDGCNN
from .onnx_export import reference_model


def save_torch_model(model: DGCNN, path: str | os.PathLike) -> Path:
    """Write the torch-cuda model file of a trained ``model``: folded weights (float32) and its config."""
    deploy = DeployDGCNN(reference_model(model), seeded_topk=False)
    payload = {
        "format": MODEL_FORMAT,
        "config": model.config.to_dict(),
        "seeded_topk": False,
        "state_dict": {k: v.detach().float().contiguous() for k, v in deploy.state_dict().items()},
    }
    path = Path(path)
    torch.save(payload, path)
    return path
