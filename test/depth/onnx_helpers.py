"""A tiny real ONNX depth network for the engine-cache and TensorRT tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def tiny_depth_onnx(path: Path, dynamic: bool = True) -> Path:
    """A real two-conv "depth network": pixel_values N x 3 x H x W -> predicted_depth N x H x W."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    n, h, w = ("N", "H", "W") if dynamic else (1, 48, 64)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"]),
         helper.make_node("Squeeze", ["c2", "axis1"], ["predicted_depth"])],
        "tiny_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [n, 3, h, w])],
        [helper.make_tensor_value_info("predicted_depth", TensorProto.FLOAT, [n, h, w])],
        initializer=[
            numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
            numpy_helper.from_array(rng.normal(0, 0.5, (1, 8, 1, 1)).astype(np.float32), "w2"),
            numpy_helper.from_array(np.array([2.0], np.float32), "b2"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime and TensorRT parser we target
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_matmul_depth_onnx(path: Path) -> Path:
    """A real per-pixel MLP "depth network" (MatMul weights, what static int8 quantises):
    pixel_values N x 3 x H x W -> predicted_depth N x H x W, positive."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["pixel_values"], ["nhwc"], perm=[0, 2, 3, 1]),
         helper.make_node("MatMul", ["nhwc", "w1"], ["h1"]),
         helper.make_node("Relu", ["h1"], ["r1"]),
         helper.make_node("MatMul", ["r1", "w2"], ["h2"]),
         helper.make_node("Softplus", ["h2"], ["s2"]),
         helper.make_node("Squeeze", ["s2", "axis3"], ["predicted_depth"])],
        "tiny_matmul_depth",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("predicted_depth", TensorProto.FLOAT, ["N", "H", "W"])],
        initializer=[
            numpy_helper.from_array(rng.normal(0, 0.7, (3, 16)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(0, 0.3, (16, 1)).astype(np.float32), "w2"),
            numpy_helper.from_array(np.array([3], np.int64), "axis3"),
        ])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
