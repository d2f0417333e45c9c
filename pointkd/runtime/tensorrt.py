"""The TensorRT runner (GPU): a serialized engine run through TensorRT 10's tensor API.

Import-guarded: ``tensorrt`` is imported only when an engine is opened, so pointkd installs and runs without it
(PyPI serves only placeholder wheels; install it from NVIDIA's index or use an NVIDIA TensorRT container).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import TensorRTUnavailable


def tensorrt_status() -> str | None:
    """``None`` when an engine can be built here, else the reason it cannot."""
    try:
        import tensorrt  # noqa: F401
    except Exception as err:  # ImportError, or the placeholder wheel's RuntimeError
        return (
            f"the tensorrt package is not importable ({type(err).__name__}: {err}); install it from NVIDIA's index "
            "(pip install --extra-index-url https://pypi.nvidia.com tensorrt) on a machine with an NVIDIA GPU"
        )
    return None


class TensorRTRunner:
    """``runner(batch [B, N, 3] float32) -> logits [B, C]`` from a serialized engine (TensorRT 10 tensor API; the
    buffers are torch tensors on ``device``, so this needs a CUDA build of torch). ``device`` other than CUDA only
    makes sense against a stand-in ``tensorrt`` module (the tests'), which reads and writes host memory."""

    def __init__(
        self,
        engine_path: str | os.PathLike,
        input_name: str = "points",
        output_name: str = "logits",
        device: str = "cuda",
    ):
        reason = tensorrt_status()
        if reason is not None:
            raise TensorRTUnavailable(reason)
        import tensorrt as trt
        import torch

        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TensorRTUnavailable("TensorRT engines need a CUDA device, and torch sees none")
        self.torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {engine_path} (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = input_name, output_name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(batch).to(self.device, torch.float32).contiguous()
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        y = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, y.data_ptr())
        cuda = self.device.type == "cuda"
        stream = torch.cuda.current_stream(self.device) if cuda else None
        if not self.context.execute_async_v3(stream.cuda_stream if cuda else 0):
            raise RuntimeError("TensorRT execution failed")
        if cuda:
            stream.synchronize()
        return y.cpu().numpy()
