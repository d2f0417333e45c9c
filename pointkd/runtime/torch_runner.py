"""The PyTorch runners: ``torch-cuda`` (the inference form on an NVIDIA GPU, eagerly or as CUDA graphs, without ONNX)
and ``torch`` (a training checkpoint as is, on the CPU: :class:`CheckpointRunner`).

The torch-cuda artifact's model file (``model.pt``, written by :func:`pointkd.export.torch_export.save_torch_model`)
holds the folded :class:`~pointkd.export.deploy_model.DeployDGCNN` weights and the model config
(``torch.load(weights_only=True)`` reads it; rebuilding it needs torch and ``pointkd.models``, not the training code,
ONNX or TensorRT). On the GPU the TopK is *not* seeded: CUDA's TopK is
no heap, so the seeds would only add a ``[B, N, k + N]`` concat (the neighbour sets are the same either way).

:class:`TorchRunner` is the runtime. With ``graphs`` (the default on CUDA) the first call at each batch size
captures the forward pass into a CUDA graph with static input/output buffers, and later calls at that size
copy the batch in and replay it: one launch instead of ~60 kernel launches, which is most of batch-1 latency for
these small models. Graphs of every batch size share one memory pool; this is safe because calls are
sequential (one runner is not called from two threads at once) and each output is copied out before the next
replay. Batches above ``max_graph_batch`` run eagerly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import model_from_config
from .errors import CudaUnavailable

MODEL_FORMAT = "pointkd-torch/1"


def cuda_status(device: str | torch.device = "cuda") -> str | None:
    """``None`` when ``device`` can run here, else the reason it cannot (a CPU device always can)."""
    if torch.device(device).type != "cuda":
        return None
    if torch.version.cuda is None:
        return f"no CUDA device here (torch {torch.__version__} is a CPU-only build)"
    if not torch.cuda.is_available():
        return f"no CUDA device here (torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU)"
    return None


def load_torch_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The :class:`~pointkd.export.deploy_model.DeployDGCNN` in a torch-cuda model file, on ``device``, in eval
    mode."""
    from ..export.deploy_model import DeployDGCNN

    payload: dict[str, Any] = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a pointkd torch model file (format {MODEL_FORMAT!r})")
    deploy = DeployDGCNN(model_from_config(payload["config"]), seeded_topk=bool(payload["seeded_topk"]))
    deploy.load_state_dict(payload["state_dict"])
    return deploy.to(device).eval()


class TorchRunner:
    """``runner(batch [B, N, 3] float32) -> logits [B, C]`` for a torch-cuda model file on ``device``.

    ``graphs``: replay a CUDA graph captured per batch size (CUDA only; see the module docstring). A CPU
    ``device`` runs the same code path eagerly, for machines without a GPU (tests, dry runs)."""

    def __init__(
        self,
        model_file: str | os.PathLike,
        device: str | torch.device = "cuda",
        graphs: bool = True,
        max_graph_batch: int = 64,
        warmup: int = 2,
    ):
        if (reason := cuda_status(device)) is not None:
            raise CudaUnavailable(f"torch-cuda: {reason}")
        self.device = torch.device(device)
        if graphs and self.device.type != "cuda":
            raise CudaUnavailable(f"torch-cuda: CUDA graphs need a CUDA device, not {self.device}")
        self.model = load_torch_model(model_file, self.device)
        self.graphs = graphs
        self.max_graph_batch = max_graph_batch
        self.warmup = warmup
        self._captured: dict[int, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self._pool = torch.cuda.graph_pool_handle() if graphs else None

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.graphs and len(x) <= self.max_graph_batch:
            return self._replay(x)
        return self.model(x.to(self.device)).cpu().numpy()

    @torch.no_grad()
    def logits_and_graphs(self, batch: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Eager logits and the kNN graphs picked on this device (for the tie-aware parity check)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        logits, graphs = self.model.forward_graphs(x)
        return logits.cpu().numpy(), [g.cpu().numpy() for g in graphs]

    @property
    def captured_batches(self) -> list[int]:
        """The batch sizes a CUDA graph has been captured for."""
        return sorted(self._captured)

    def _replay(self, x: torch.Tensor) -> np.ndarray:
        if len(x) not in self._captured:
            self._captured[len(x)] = self._capture(x.shape)
        graph, static_in, static_out = self._captured[len(x)]
        static_in.copy_(x)
        graph.replay()
        return static_out.cpu().numpy()

    def _capture(self, shape: torch.Size) -> tuple[Any, torch.Tensor, torch.Tensor]:
        static_in = torch.zeros(shape, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up off the capture: cuBLAS handles, workspace, lazy kernels
            for _ in range(self.warmup):
                self.model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_out = self.model(static_in)
        return graph, static_in, static_out


class CheckpointRunner:
    """``runner(batch [B, N, 3] float32) -> logits [B, C]`` for a training checkpoint (the ``torch`` format), on the
    CPU with ``threads`` intra-op threads (torch's pool is per process: set on each call when it differs)."""

    def __init__(self, checkpoint: str | os.PathLike, threads: int = 0):
        from ..checkpoint import load_checkpoint, model_from_checkpoint

        self.model = model_from_checkpoint(load_checkpoint(checkpoint)).float().eval()
        self.threads = threads

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()
