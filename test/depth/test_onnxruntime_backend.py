"""ONNX Runtime backend: int8 quantisation (dynamic and static QDQ) of a real ONNX network."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import tiny_depth_onnx

from depth_perception.depth.onnxruntime_backend import (
    OnnxRuntimeBackend, quantize_int8, quantize_int8_static,
)

onnx = pytest.importorskip("onnx")


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (1, 3, 48, 64)).astype(np.float32) for _ in range(n)]


def test_static_int8_is_qdq_per_channel_and_stays_close_to_fp32(tmp_path) -> None:
    fp32 = tiny_depth_onnx(tmp_path / "depth.onnx")
    int8 = quantize_int8_static(fp32, tmp_path / "depth.int8.onnx", _inputs(8, 0), op_types=("Conv",))
    ops = [n.op_type for n in onnx.load(str(int8)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ format
    # per-channel: the first conv's weight scale has one value per output channel (8)
    graph = onnx.load(str(int8)).graph
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    assert any(v.shape == (8,) for k, v in scales.items() if "w1" in k and "scale" in k)

    x = _inputs(1, 1)[0]  # not a calibration input
    ref = OnnxRuntimeBackend(fp32, threads=1, device="cpu").infer(x)["predicted_depth"]
    got = OnnxRuntimeBackend(int8, threads=1, device="cpu").infer(x)["predicted_depth"]
    assert got.shape == ref.shape
    assert np.abs(got - ref).mean() / np.abs(ref).mean() < 0.02


def test_static_int8_quantises_only_weight_matmuls_by_default(tmp_path) -> None:
    from onnx_helpers import tiny_matmul_depth_onnx

    fp32 = tiny_matmul_depth_onnx(tmp_path / "depth.onnx")
    int8 = quantize_int8_static(fp32, tmp_path / "depth.int8.onnx", _inputs(4, 0))
    graph = onnx.load(str(int8)).graph
    weight_q = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w")]
    assert len(weight_q) == 2  # both MatMul weights, each dequantised once


def test_static_int8_needs_calibration_inputs(tmp_path) -> None:
    fp32 = tiny_depth_onnx(tmp_path / "depth.onnx")
    with pytest.raises(ValueError, match="at least one calibration input"):
        quantize_int8_static(fp32, tmp_path / "depth.int8.onnx", [])


def test_dynamic_int8_keeps_the_network_running(tmp_path) -> None:
    fp32 = tiny_depth_onnx(tmp_path / "depth.onnx")
    out = quantize_int8(fp32, tmp_path / "depth.dyn.onnx")  # convolutions only: stays fp32
    x = _inputs(1, 2)[0]
    np.testing.assert_allclose(OnnxRuntimeBackend(out, device="cpu").infer(x)["predicted_depth"],
                               OnnxRuntimeBackend(fp32, device="cpu").infer(x)["predicted_depth"],
                               rtol=1e-5, atol=1e-5)
