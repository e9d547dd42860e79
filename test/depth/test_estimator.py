"""DepthEstimator: image in, depth at the image's resolution out; backend choice and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from depth_perception.depth.estimator import (
    BackendUnavailableError, DepthEstimator, engine_profiles_for, tensorrt_available,
)
from depth_perception.depth.processing import prompt_from_depth
from depth_perception.depth.tensorrt_build import input_profiles
from depth_perception.depth.zoo import get_spec

RGB = data.astronaut()[::4, ::3]  # 128 x 171, real image, not square


def test_the_onnxruntime_path_matches_the_torch_preprocessing_and_never_imports_torch(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import onnxruntime as ort
    import torch

    from depth_perception.depth.processing import postprocess, preprocess

    from onnx_helpers import tiny_depth_onnx

    onnx = tiny_depth_onnx(tmp_path / "depth.onnx")
    est = DepthEstimator("depth_anything_v2_small", backend="onnxruntime", onnx_path=onnx,
                         device="cpu", threads=1, log=None)
    x, geo = preprocess(RGB, est.spec)  # the torch path's input, run by ONNX Runtime directly
    ref = postprocess(torch.from_numpy(ort.InferenceSession(str(onnx)).run(None, {
        "pixel_values": x.numpy()})[0]), geo)
    np.testing.assert_allclose(est.predict(RGB).values, ref, rtol=1e-4, atol=1e-4)

    # a fresh process: the ONNX Runtime path from an existing file must not load torch
    child = f"""
import json, sys
import numpy as np
from depth_perception.depth.estimator import DepthEstimator
est = DepthEstimator("depth_anything_v2_small", backend="onnxruntime", onnx_path={str(onnx)!r},
                     log=None)
depth = est.predict(np.zeros((120, 160, 3), np.uint8)).values
print(json.dumps({{"shape": depth.shape, "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules}}))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", child], cwd=root, env=env, capture_output=True,
                         text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"shape": [120, 160], "torch": False, "transformers": False}


def test_relative_model_returns_inverse_depth_at_input_resolution() -> None:
    lines: list[str] = []
    est = DepthEstimator("depth_anything_v2_small_tiny", random_init=True, log=lines.append)
    assert est.backend_name == "torch"  # auto on a CPU-only machine without an ONNX file
    pred = est.predict(RGB)
    assert pred.values.shape == RGB.shape[:2] and pred.values.dtype == np.float32
    assert pred.kind == "relative_inverse" and np.isfinite(pred.values).all()
    assert set(pred.timings_ms) >= {"preprocess", "inference", "postprocess", "total"}
    assert any("licence" in line and "random weights" in line for line in lines)


def test_metric_model_stays_within_its_range() -> None:
    pred = DepthEstimator("depth_anything_v2_metric_indoor_small_tiny", random_init=True,
                          log=None).predict(RGB)
    assert pred.kind == "metric"
    assert 0 < pred.values.min() and pred.values.max() <= 20.0
    assert pred.values.std() > 0


def test_depth_pro_metric_scale_follows_the_focal_length() -> None:
    est = DepthEstimator("depth_pro_tiny", random_init=True, log=None, seed=1)
    near = est.predict(RGB, fx_px=100.0)
    far = est.predict(RGB, fx_px=200.0)  # same picture, twice the focal length: twice as far
    np.testing.assert_allclose(far.values, 2 * near.values, rtol=1e-4)
    own = est.predict(RGB)  # without K: the model's own field of view
    assert own.field_of_view_deg is not None and np.isfinite(own.values).all()


def test_prompt_depth_model_needs_and_uses_a_prompt() -> None:
    est = DepthEstimator("prompt_depth_anything_small_tiny", random_init=True, log=None)
    with pytest.raises(ValueError, match="needs prompt_depth_m"):
        est.predict(RGB)
    prompt = np.full((12, 16), 2.0, np.float32)
    prompt[:, 8:] = 4.0
    holes = prompt.copy()
    holes[0, 0] = np.nan  # invalid prompt pixels are filled, not propagated
    pred = est.predict(RGB, prompt_depth_m=holes)
    assert pred.kind == "metric" and np.isfinite(pred.values).all()
    # the output is de-normalised with the prompt's range: 2-4 m in, metres out
    assert 1.0 < np.median(pred.values) < 6.0
    with pytest.raises(ValueError, match="no valid"):
        est.predict(RGB, prompt_depth_m=np.zeros((4, 4), np.float32))


def test_the_prompt_depth_input_has_an_engine_profile_every_prompt_fits() -> None:
    main, extra = engine_profiles_for(get_spec("prompt_depth_anything_small"))
    assert main.input_shapes() == ((1, 3, 518, 518), (1, 3, 518, 700), (1, 3, 1036, 1036))
    assert extra["prompt_depth"].input_shapes() == ((1, 1, 2, 2), (1, 1, 192, 256), (1, 1, 256, 256))
    # the exported graph's two dynamic inputs both get a profile (a missing one is refused)
    graph = {"pixel_values": (-1, 3, -1, -1), "prompt_depth": (-1, 1, -1, -1)}
    assert set(input_profiles(graph, "pixel_values", main, extra)) == {"pixel_values", "prompt_depth"}
    with pytest.raises(ValueError, match="prompt_depth"):
        input_profiles(graph, "pixel_values", main)
    for hw in [(2, 2), (192, 256), (480, 640), (1080, 1920), (3000, 40)]:
        prompt = prompt_from_depth(np.full(hw, 1.5, np.float32))
        assert extra["prompt_depth"].contains(*prompt.shape), (hw, prompt.shape)
    assert engine_profiles_for(get_spec("depth_anything_v2_small"))[1] == {}


def test_marigold_runs_on_torch_and_refuses_onnx() -> None:
    est = DepthEstimator("marigold_depth_tiny", random_init=True, log=None)
    a, b = est.predict(RGB[:40, :60]), est.predict(RGB[:40, :60])
    assert a.kind == "relative_depth" and a.values.shape == (40, 60)
    np.testing.assert_array_equal(a.values, b.values)  # seeded noise: same image, same depth
    with pytest.raises(BackendUnavailableError, match="torch backend only"):
        DepthEstimator("marigold_depth_tiny", random_init=True, backend="onnxruntime", log=None)


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is available here")
def test_tensorrt_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(BackendUnavailableError, match="tensorrt is not available here"):
        DepthEstimator("depth_anything_v2_small_tiny", random_init=True, backend="tensorrt", log=None)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        DepthEstimator("depth_anything_v2_small_tiny", random_init=True, backend="tflite")
    with pytest.raises(ValueError, match="give weights"):
        DepthEstimator("depth_anything_v2_small_tiny", log=None)
    with pytest.raises(ValueError, match="multiple of 14"):
        DepthEstimator("depth_anything_v2_small_tiny", random_init=True, input_size=50, log=None)
    est = DepthEstimator("depth_anything_v2_small_tiny", random_init=True, log=None)
    with pytest.raises(ValueError, match="uint8"):
        est.predict(RGB.astype(np.float32))
    with pytest.raises(ValueError, match="takes no prompt"):
        est.predict(RGB, prompt_depth_m=np.ones((4, 4), np.float32))


def test_rays_give_the_organised_cloud_of_the_depth() -> None:
    from depth_perception.camera import CameraModel

    cam = CameraModel.from_intrinsics(150.0, 150.0, 85.0, 64.0, RGB.shape[1], RGB.shape[0])
    est = DepthEstimator("depth_anything_v2_metric_indoor_small_tiny", random_init=True, log=None)
    pred = est.predict(RGB, rays=cam.normalized_rays())
    assert pred.points is not None and pred.points.dtype == np.float32
    np.testing.assert_array_equal(pred.points, cam.backproject(pred.values))
    assert est.predict(RGB).points is None


def test_on_the_cpu_upload_is_a_checked_pass_through() -> None:
    est = DepthEstimator("depth_anything_v2_small_tiny", random_init=True, log=None, device="cpu")
    assert not est.device_upload
    assert est.upload(RGB) is RGB
    np.testing.assert_array_equal(est.predict(est.upload(RGB)).values, est.predict(RGB).values)
    with pytest.raises(ValueError, match="HxWx3"):
        est.upload(RGB[..., 0])


@pytest.mark.gpu
def test_on_a_gpu_a_frame_uploaded_ahead_gives_the_same_depth_and_cloud() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from depth_perception.camera import CameraModel
    from depth_perception.depth.device_cloud import pinhole_rays

    cam = CameraModel.from_intrinsics(150.0, 150.0, 85.0, 64.0, RGB.shape[1], RGB.shape[0])
    est = DepthEstimator("depth_anything_v2_small_tiny", random_init=True, log=None,
                         backend="torch", device="cuda")
    assert est.device_upload
    other = np.ascontiguousarray(RGB[::-1])
    reference = est.predict(RGB).values
    staged = est.upload(RGB)
    staged_next = est.upload(other)  # its copy overlaps the prediction below
    pred = est.predict(staged, rays=pinhole_rays(cam.K, *RGB.shape[:2], device="cuda"))
    np.testing.assert_allclose(pred.values, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pred.points, cam.backproject(pred.values))
    assert est.predict(staged_next).values.shape == RGB.shape[:2]


def test_host_array_backends_give_the_same_cloud_without_torch_ops(tmp_path) -> None:
    from depth_perception.camera import CameraModel

    from onnx_helpers import tiny_depth_onnx

    cam = CameraModel.from_intrinsics(150.0, 150.0, 85.0, 64.0, RGB.shape[1], RGB.shape[0])
    est = DepthEstimator("depth_anything_v2_small", backend="onnxruntime", log=None, threads=1,
                         onnx_path=tiny_depth_onnx(tmp_path / "depth.onnx"))
    pred = est.predict(est.upload(RGB), rays=cam.normalized_rays())
    np.testing.assert_array_equal(pred.points, cam.backproject(pred.values))
