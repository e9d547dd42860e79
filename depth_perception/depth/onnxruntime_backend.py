"""ONNX Runtime backend: CPU, or the CUDA / TensorRT execution providers when present.

Graph optimisation is on (``ORT_ENABLE_ALL``: fused attention, GELU, LayerNorm). ``quantize_int8``
writes a dynamically quantised copy (int8 weights of MatMul/Gemm, activations quantised per batch),
which uses AVX-512 VNNI on this CPU; its accuracy cost is measured by ``bench/inference.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .onnx_export import FOV_NAME, INPUT_NAME, OUTPUT_NAME, PROMPT_NAME

KNOWN_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def default_providers(device: str | None = None) -> list[str]:
    """Available providers, fastest first; ``device="cpu"`` keeps only the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    return [p for p in KNOWN_PROVIDERS if p in available and p != "TensorrtExecutionProvider"] or [
        "CPUExecutionProvider"]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, providers: list[str] | None = None,
                 threads: int | None = None, device: str | None = None) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=providers or default_providers(device))
        except Exception as exc:  # noqa: BLE001 - InvalidGraph, Fail, NoSuchFile...
            raise ValueError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        self.path = path
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if INPUT_NAME not in self.input_names or OUTPUT_NAME not in self.output_names:
            raise ValueError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got "
                             f"inputs {self.input_names} and outputs {self.output_names}")
        shape = self.session.get_inputs()[self.input_names.index(INPUT_NAME)].shape
        #: (h, w) when the graph has a fixed input size, else None
        self.fixed_hw = tuple(shape[2:]) if all(isinstance(s, int) for s in shape[2:]) else None
        self.providers = self.session.get_providers()

    def infer(self, pixel_values: Any, prompt_depth: Any = None) -> dict[str, Any]:
        """``pixel_values`` N x 3 x h x w float32 (numpy or torch) → {"predicted_depth": N x h x w
        numpy, and "field_of_view" for Depth Pro}."""
        feeds = {INPUT_NAME: _numpy(pixel_values)}
        if PROMPT_NAME in self.input_names:
            if prompt_depth is None:
                raise ValueError(f"{self.path} needs a prompt depth (N x 1 x h x w metres)")
            feeds[PROMPT_NAME] = _numpy(prompt_depth)
        if self.fixed_hw is not None and tuple(feeds[INPUT_NAME].shape[2:]) != self.fixed_hw:
            raise ValueError(f"{self.path} was exported for {self.fixed_hw[1]}x{self.fixed_hw[0]} input, "
                             f"got {feeds[INPUT_NAME].shape[3]}x{feeds[INPUT_NAME].shape[2]}; "
                             "re-export with --dynamic or that size")
        outs = self.session.run(None, feeds)
        result = {"predicted_depth": outs[self.output_names.index(OUTPUT_NAME)]}
        if FOV_NAME in self.output_names:
            result["field_of_view"] = outs[self.output_names.index(FOV_NAME)]
        return result


def _numpy(x: Any) -> Any:
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def quantize_int8_static(src: str | os.PathLike, dst: str | os.PathLike,
                         calibration: Iterable[Any], op_types: Sequence[str] = ("MatMul",),
                         ) -> Path:
    """Static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations with min/max
    ranges calibrated on ``calibration``: 1x3xhxw float32 network inputs, e.g. real photos through
    :func:`~depth_perception.depth.processing.preprocess_numpy`).

    Only nodes of ``op_types`` with a constant weight are quantised: the products of two
    activations (attention's Q·Kᵀ and softmax·V) keep fp32, and so do convolutions by default.
    Measured on Depth Anything V2 Small (``bench/inference.py``): quantising the convolutions too
    costs ~2 % AbsRel on ONNX Runtime and ~15 % on OpenVINO for little speed; MatMul weights alone
    ~1 %. The same file runs on ONNX Runtime and, as int8, on OpenVINO."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = [{INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)} for x in calibration]
    if not inputs:
        raise ValueError("static int8 quantisation needs at least one calibration input")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(inputs)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    dst = Path(dst)
    with tempfile.TemporaryDirectory(prefix="quantize_") as tmp:
        # shape inference + ORT's basic fusions first, as onnxruntime.quantization recommends
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared), load_external_data=False).graph
        weights = {i.name for i in graph.initializer}
        activation_only = [n.name for n in graph.node
                           if n.op_type in op_types and not any(i in weights for i in n.input)]
        quantize_static(str(prepared), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                        nodes_to_exclude=activation_only, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibTensorRangeSymmetric": False})
    return dst


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (per channel); convolutions stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"])
    return dst
