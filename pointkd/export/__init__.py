"""Export and compile: the inference rewrite (:mod:`.deploy_model`), ONNX (:mod:`.onnx_export`), tie-aware parity
(:mod:`.parity`), int8 (:mod:`.quantize`), TensorRT engines (:mod:`.tensorrt_engine`), the torch-cuda model file
(:mod:`.torch_export`), the fused kNN operator (:mod:`.knn_op`) and ``pointkd compile`` (:mod:`.compile`).

Import from the submodules: this package imports nothing, so running a compiled model (:mod:`pointkd.runtime`)
never loads the exporters or the trainer.
"""
