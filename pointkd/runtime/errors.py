"""The typed errors of compiled models: what compile raises, what a runtime raises, what the bench reads a row's
status from (never the message text)."""

from __future__ import annotations


class UnknownFormat(ValueError):
    """A format name that is not in the format table; the message lists the choices."""


class ManifestError(ValueError):
    """An artifact folder has no valid manifest, or its files do not match it."""


class ExportError(RuntimeError):
    """An export, a parity check or an accuracy gate failed."""


class ParityError(ExportError):
    """A compiled model does not compute what the torch model computes (logits or top-1 off beyond the tolerance)."""


class AccuracyDropError(ExportError):
    """A quantized model loses more accuracy than allowed against fp32."""


class RuntimeUnavailable(RuntimeError):
    """A compiled model's runtime cannot run on this machine (no TensorRT, no CUDA device, no fused-kNN library,
    ...): the message says which and why."""


class TensorRTUnavailable(RuntimeUnavailable):
    """TensorRT (or a CUDA GPU) is not available on this machine."""


class CudaUnavailable(RuntimeUnavailable):
    """The torch-cuda format was asked for where torch sees no CUDA device."""


class KnnOpUnavailable(RuntimeUnavailable):
    """The fused kNN operator cannot be built or loaded here (no C++ compiler, no headers, an old ONNX Runtime, a
    missing library); the message says which. The stock ONNX model runs without it."""
