"""OpenVINO backend: the same ONNX file ONNX Runtime reads, compiled by OpenVINO for the CPU.

Optional (``pip install openvino``). On the CPUs measured by ``bench/inference.py`` it runs the fp32
graph faster than ONNX Runtime, and a static int8 QDQ file
(:func:`~depth_perception.depth.onnxruntime_backend.quantize_int8_static`) as true int8 kernels
(AVX-512 VNNI), where ONNX Runtime gains less from the same file. Host arrays in and out: no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_export import FOV_NAME, INPUT_NAME, OUTPUT_NAME, PROMPT_NAME


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None,
                 device: str | None = None) -> None:
        import openvino as ov

        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if device not in (None, "cpu"):
            raise ValueError(f"the openvino backend runs on the CPU, got device {device!r}")
        # f32: on CPUs with AVX-512 BF16 or AMX, OpenVINO would otherwise run the fp32 graph in
        # bf16 (an int8 QDQ file still runs its quantised layers in int8)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.model = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise ValueError(f"{path}: OpenVINO cannot load it: {exc}") from exc
        self.path = path
        # a port has several tensor names (OpenVINO's own and the ONNX graph's): look up by any
        self._outputs = {n: port for port in self.model.outputs for n in port.get_names()}
        self.input_names = [n for port in self.model.inputs for n in port.get_names()]
        self.output_names = list(self._outputs)
        if INPUT_NAME not in self.input_names or OUTPUT_NAME not in self.output_names:
            raise ValueError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got "
                             f"inputs {self.input_names} and outputs {self.output_names}")
        self._request = self.model.create_infer_request()
        self.providers = ["OpenVINO CPU"]

    def infer(self, pixel_values: Any, prompt_depth: Any = None) -> dict[str, Any]:
        """``pixel_values`` N x 3 x h x w float32 numpy → {"predicted_depth": N x h x w numpy, and
        "field_of_view" for Depth Pro}."""
        feeds = {INPUT_NAME: np.ascontiguousarray(pixel_values, dtype=np.float32)}
        if PROMPT_NAME in self.input_names:
            if prompt_depth is None:
                raise ValueError(f"{self.path} needs a prompt depth (N x 1 x h x w metres)")
            feeds[PROMPT_NAME] = np.ascontiguousarray(prompt_depth, dtype=np.float32)
        outs = self._request.infer(feeds)
        # copies: the request reuses its output memory on the next call
        result = {"predicted_depth": np.array(outs[self._outputs[OUTPUT_NAME]])}
        if FOV_NAME in self._outputs:
            result["field_of_view"] = np.array(outs[self._outputs[FOV_NAME]])
        return result
