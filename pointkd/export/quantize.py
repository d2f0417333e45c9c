"""int8 static quantization (ONNX Runtime, QDQ, per-channel weights) that keeps the kNN path in float.

Only the MatMul / Gemm work of the EdgeConvs and the head is quantized. The kNN score MatMul feeding each TopK and
everything upstream of it on the distance path stay float: int8 distances flip neighbours, and TopK has no int8
kernel in TensorRT. The first EdgeConv's projection of the raw xyz stays float too: 8 bits over the unit sphere is
a ~0.008 step, close to the neighbour spacing, and quantizing it cost the most accuracy of any layer (measured on a
student at 512 points: 1.09 pt OA lost with it in int8, none without; its weights are 3 x 2C_out floats).
Every quantized tensor gets its own Q/DQ pair (``DedicatedQDQPair``), so the float kNN branch reads the float
activation, not a fake-quantized copy. Activations are calibrated (MinMax) on the calibration set.

Two flavours: ``"ort"`` (uint8 activations, int8 per-channel weights: ONNX Runtime's fast u8s8 kernels on x86) and
``"tensorrt"`` (symmetric int8 activations and weights, zero points 0: the explicit-quantization form TensorRT
builds int8 engines from).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUANT_FLAVOURS = ("ort", "tensorrt")


@dataclass
class NodeSensitivity:
    tensor: str
    sqnr_db: float  # signal-to-quantization-noise ratio of this activation, int8 model vs float model; low = lossy


def input_projection_nodes(model) -> list[str]:
    """Names of the MatMul / Gemm nodes that read the model input (the first EdgeConv on raw xyz)."""
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[0] in inputs]


def knn_score_nodes(model) -> list[str]:
    """Names of the MatMul nodes whose output feeds a TopK (the kNN distance scores), directly or as the last
    input of a seeded TopK's Concat (see :func:`~pointkd.export.deploy_model.seeded_topk`)."""
    from .onnx_export import knn_nodes

    return [knn.score for knn in knn_nodes(model) if knn.score is not None]


class _CloudReader:
    """``CalibrationDataReader`` over a ``[M, N, 3]`` array, ``batch`` clouds per feed."""

    def __init__(self, input_name: str, clouds: np.ndarray, batch: int = 16):
        self.input_name = input_name
        self.clouds = np.ascontiguousarray(clouds, dtype=np.float32)
        self.batch = batch
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.clouds):
            return None
        feed = {self.input_name: self.clouds[self.pos : self.pos + self.batch]}
        self.pos += self.batch
        return feed

    def rewind(self) -> None:
        self.pos = 0

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)


def _ensure_node_names(model) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def quantize_int8(
    fp32_path: str | os.PathLike, out_path: str | os.PathLike, calib_clouds: np.ndarray, flavour: str = "ort"
) -> Path:
    """Write the int8 QDQ model of ``fp32_path`` to ``out_path``, calibrated on ``calib_clouds`` ``[M, N, 3]``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if flavour not in QUANT_FLAVOURS:
        raise ValueError(f"unknown int8 flavour {flavour!r}; choose from {QUANT_FLAVOURS}")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Symbolic shape inference fails on the dynamo exporter's graphs (ONNX Runtime 1.2x); ONNX's own is enough.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        _ensure_node_names(model)
        onnx.save(model, str(pre))
        keep_float = knn_score_nodes(model) + input_projection_nodes(model)
        input_name = model.graph.input[0].name
        extra = {"DedicatedQDQPair": True, "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}}
        if flavour == "tensorrt":
            extra |= {"ActivationSymmetric": True, "WeightSymmetric": True, "AddQDQPairToWeight": True}
        quantize_static(
            str(pre),
            str(out_path),
            _CloudReader(input_name, calib_clouds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            activation_type=QuantType.QInt8 if flavour == "tensorrt" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_float,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=extra,
        )
    return out_path


def sensitivity(
    fp32_path: str | os.PathLike, int8_path: str | os.PathLike, clouds: np.ndarray, top: int = 8
) -> list[NodeSensitivity]:
    """The ``top`` activations with the lowest SQNR between the int8 and the float model (the likely cause of a drop),
    from ONNX Runtime's ``qdq_loss_debug`` tools on ``clouds``."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    input_name = onnx.load(str(fp32_path)).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        aug_f, aug_q = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        modify_model_output_intermediate_tensors(str(fp32_path), str(aug_f))
        modify_model_output_intermediate_tensors(str(int8_path), str(aug_q))
        float_act = collect_activations(str(aug_f), _CloudReader(input_name, clouds, batch=4))
        qdq_act = collect_activations(str(aug_q), _CloudReader(input_name, clouds, batch=4))
    errors = compute_activation_error(create_activation_matching(qdq_act, float_act))
    rows = [NodeSensitivity(name, float(e["xmodel_err"])) for name, e in errors.items() if "xmodel_err" in e]
    return sorted(rows, key=lambda r: r.sqnr_db)[:top]
