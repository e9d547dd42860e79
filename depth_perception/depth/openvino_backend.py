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


#: input shapes a dynamic-size model stays compiled for (a camera's frames need one)
STATIC_SHAPES = 2


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
        self._core, self._config = ov.Core(), config
        self.path = path
        try:
            self._source = self._core.read_model(str(path))
            names = {n for port in self._source.outputs for n in port.get_names()}
            self.input_names = [n for port in self._source.inputs for n in port.get_names()]
            if INPUT_NAME not in self.input_names or OUTPUT_NAME not in names:
                raise ValueError(f"expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got "
                                 f"inputs {self.input_names} and outputs {sorted(names)}")
            self._dynamic = any(port.get_partial_shape().is_dynamic for port in self._source.inputs)
            # input shapes -> (request, output ports by name), newest last; see _request_for.
            # A model of fixed size is compiled here, one of dynamic size for each shape it sees.
            self._compiled: dict[tuple[tuple[str, tuple[int, ...]], ...], tuple[Any, Any]] = {}
            if not self._dynamic:
                self._compiled[()] = self._compile(self._source)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise ValueError(f"{path}: OpenVINO cannot load it: {exc}") from exc
        self.output_names = sorted(names)
        self.providers = ["OpenVINO CPU"]

    def _compile(self, model: Any) -> tuple[Any, dict[str, Any]]:
        compiled = self._core.compile_model(model, "CPU", self._config)
        # a port has several tensor names (OpenVINO's own and the ONNX graph's): look up by any
        return compiled.create_infer_request(), {n: port for port in compiled.outputs
                                                 for n in port.get_names()}

    def _request_for(self, feeds: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any]]:
        """The infer request for these inputs' shapes, and its output ports by name.

        A model exported with dynamic sizes runs 10-15 % faster compiled for one shape (measured:
        the student and Depth Anything V2 Small, int8 and fp32), and a camera's frames all have one
        network input shape (it depends on the image's aspect ratio, not its size). So each shape
        seen is compiled once (seconds for a large network; the estimator's warm-up pays it for a
        4:3 camera) and kept, the last :data:`STATIC_SHAPES` of them."""
        if not self._dynamic:
            return self._compiled[()]
        key = tuple((name, tuple(int(d) for d in x.shape)) for name, x in sorted(feeds.items()))
        if key not in self._compiled:
            model = self._source.clone()
            model.reshape({name: list(shape) for name, shape in key})
            try:
                compiled = self._compile(model)
            except Exception as exc:  # noqa: BLE001 - OpenVINO's RuntimeError subclasses
                raise ValueError(f"{self.path}: OpenVINO cannot compile it for inputs "
                                 f"{dict(key)}: {exc}") from exc
            while len(self._compiled) >= STATIC_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = compiled
        self._compiled[key] = self._compiled.pop(key)  # the newest
        return self._compiled[key]

    def infer(self, pixel_values: Any, prompt_depth: Any = None) -> dict[str, Any]:
        """``pixel_values`` N x 3 x h x w float32 numpy → {"predicted_depth": N x h x w numpy, and
        "field_of_view" for Depth Pro}."""
        feeds = {INPUT_NAME: np.ascontiguousarray(pixel_values, dtype=np.float32)}
        if PROMPT_NAME in self.input_names:
            if prompt_depth is None:
                raise ValueError(f"{self.path} needs a prompt depth (N x 1 x h x w metres)")
            feeds[PROMPT_NAME] = np.ascontiguousarray(prompt_depth, dtype=np.float32)
        request, ports = self._request_for(feeds)
        outs = request.infer(feeds)
        # copies: the request reuses its output memory on the next call
        result = {"predicted_depth": np.array(outs[ports[OUTPUT_NAME]])}
        if FOV_NAME in ports:
            result["field_of_view"] = np.array(outs[ports[FOV_NAME]])
        return result
