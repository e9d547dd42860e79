"""OpenVINO backend (optional): the ONNX file ONNX Runtime reads gives the same depth, torch-free."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import tiny_depth_onnx
from skimage import data

from depth_perception.depth.estimator import BackendUnavailableError, DepthEstimator

RGB = data.astronaut()[::4, ::3]  # 128 x 171, real image


def test_openvino_matches_onnxruntime_on_the_same_file(tmp_path) -> None:
    pytest.importorskip("openvino", reason="optional backend: pip install openvino")
    onnx = tiny_depth_onnx(tmp_path / "depth.onnx")
    kw = dict(onnx_path=onnx, device="cpu", threads=1, log=None)
    ov = DepthEstimator("depth_anything_v2_small", backend="openvino", **kw)
    ort = DepthEstimator("depth_anything_v2_small", backend="onnxruntime", **kw)
    a, b = ov.predict(RGB).values, ort.predict(RGB).values
    assert a.shape == RGB.shape[:2] and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_openvino_int8_is_calibrated_and_stays_close(tmp_path) -> None:
    pytest.importorskip("openvino", reason="optional backend: pip install openvino")
    from onnx_helpers import tiny_matmul_depth_onnx

    from depth_perception.scene import generate_tabletop

    onnx = tiny_matmul_depth_onnx(tmp_path / "depth.onnx")
    kw = dict(onnx_path=onnx, device="cpu", threads=1, log=None)
    rgb = generate_tabletop(seed=99).rgb  # the calibration's domain, not one of its scenes
    fp32 = DepthEstimator("student_tabletop", backend="openvino", **kw).predict(rgb).values
    int8 = DepthEstimator("student_tabletop", backend="openvino", precision="int8", **kw)
    got = int8.predict(rgb).values
    assert np.abs(got - fp32).mean() / np.abs(fp32).mean() < 0.02
    assert not np.array_equal(got, fp32)  # it did run quantised


def test_a_missing_openvino_is_named(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(BackendUnavailableError, match="pip install openvino"):
        DepthEstimator("depth_anything_v2_small", backend="openvino", onnx_path="x.onnx", log=None)


def test_an_exported_zoo_model_runs_on_openvino_as_on_onnxruntime(tmp_path) -> None:
    # a real export names its output port differently in OpenVINO; the backend finds it by name
    pytest.importorskip("openvino", reason="optional backend: pip install openvino")
    from depth_perception.depth.onnx_export import export_onnx
    from depth_perception.depth.weights import build_model
    from depth_perception.depth.zoo import get_spec

    spec = get_spec("student_tabletop_tiny")
    onnx = export_onnx(build_model(spec, random_init=True), tmp_path / "student.onnx",
                       spec.input_size, spec.input_size, dynamic=True, spec=spec)
    kw = dict(onnx_path=onnx, device="cpu", threads=1, log=None)
    a = DepthEstimator(spec, backend="openvino", **kw).predict(RGB).values
    b = DepthEstimator(spec, backend="onnxruntime", **kw).predict(RGB).values
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_a_dynamic_size_model_is_compiled_for_each_shape_it_sees(tmp_path) -> None:
    """Compiled for one input shape, OpenVINO runs faster than with dynamic sizes; a camera's frames
    share one shape, another aspect ratio gets its own, and the oldest of too many is let go."""
    pytest.importorskip("openvino", reason="optional backend: pip install openvino")
    from depth_perception.depth.openvino_backend import STATIC_SHAPES, OpenVinoBackend

    onnx = tiny_depth_onnx(tmp_path / "depth.onnx")
    ov = OpenVinoBackend(onnx, threads=1)
    ort = DepthEstimator("depth_anything_v2_small", backend="onnxruntime", onnx_path=onnx,
                         device="cpu", threads=1, log=None).backend
    rng = np.random.default_rng(0)
    shapes = [(1, 3, 28, 42), (1, 3, 42, 28), (1, 3, 28, 28), (1, 3, 28, 42)]
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        got = ov.infer(x)["predicted_depth"]
        assert got.shape == (1, *shape[2:])
        np.testing.assert_allclose(got, ort.infer(x)["predicted_depth"], rtol=1e-4, atol=1e-4)
    kept = [dict(key)["pixel_values"] for key in ov._compiled]
    assert len(kept) == STATIC_SHAPES and kept[-1] == shapes[-1]
    assert all(len(shape) == 4 for shape in kept)
