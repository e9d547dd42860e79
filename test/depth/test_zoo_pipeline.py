"""Every tiny twin in the zoo, through ``Pipeline.process``, with every metric mode that makes sense
for its output kind, against a KNOWN metric scale.

The signal is built from the model's own prediction through a known map in the space of its kind
(relative inverse depth: 1/z = a * pred + b; relative depth: z = a * pred + b; metric: z = k * pred),
so the pipeline's metric depth must equal that map applied to the prediction. A metric network in
``model`` mode must come out unchanged. Random weights make the predictions arbitrary; the maps are
chosen from each prediction's range so that the metric depth always lies between 1 and 4 m.
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np
import pytest
from skimage import data

from depth_perception.camera import CameraModel
from depth_perception.depth.estimator import DepthEstimator
from depth_perception.depth.zoo import list_specs, metric_modes, missing_requirements
from depth_perception.metric import MetricConfig
from depth_perception.pipeline import Frame, FrameResult, Pipeline, PipelineConfig

RGB = cv2.resize(data.astronaut(), (64, 48), interpolation=cv2.INTER_AREA)  # real image, 4:3
CAMERA = CameraModel.from_intrinsics(60.0, 60.0, 32.0, 24.0, 64, 48)
TINY = [s for s in list_specs(include_tiny=True) if s.tiny]
#: the modes checked here (stereo, motion and fixed have their own tests in test/metric)
CHECKED = ("model", "sparse_depth", "pointcloud", "plane", "auto")
CASES = [pytest.param(s.name, mode, id=f"{s.name}-{mode}",
                      marks=[pytest.mark.skipif(bool(missing_requirements(s)),
                                                reason=f"needs {missing_requirements(s)}")])
         for s in TINY for mode in metric_modes(s) if mode in CHECKED]
NEAR_M, FAR_M = 1.0, 4.0
#: DPT's head ends in a ReLU: with seed 0 the tiny hybrid twin predicts 0 at 94 % of the pixels,
#: a random-weight artefact that leaves no scale to recover; seed 1 gives a varied prediction.
SEEDS = {"dpt_hybrid_tiny": 1}


@pytest.fixture(scope="module")
def estimator() -> Callable[[str], DepthEstimator]:
    """Each tiny twin built once for the whole module."""
    built: dict[str, DepthEstimator] = {}

    def get(name: str) -> DepthEstimator:
        if name not in built:
            built[name] = DepthEstimator(name, random_init=True, backend="torch",
                                         seed=SEEDS.get(name, 0), log=None)
        return built[name]

    return get


def test_every_tiny_twin_has_a_case() -> None:
    names = {s.name for s in TINY}
    assert {c.values[0] for c in CASES} == names
    assert len(names) >= 10  # one twin per family at least


def known_depth(prediction: np.ndarray, kind: str) -> np.ndarray:
    """HxW metres from ``prediction`` through a known map in the space of ``kind``, over 1-4 m."""
    p = prediction.astype(np.float64)
    lo, hi = float(p.min()), float(p.max())
    assert len(np.unique(p)) > p.size // 2, "a (mostly) constant prediction cannot carry a scale"
    if kind == "metric":
        return (2.0 * p / np.median(p)).astype(np.float32)  # metres times a known factor
    t = (p - lo) / (hi - lo)  # 0..1
    if kind == "relative_inverse":  # near = large: 1/z from 1/FAR_M to 1/NEAR_M
        return (1.0 / (1.0 / FAR_M + t * (1.0 / NEAR_M - 1.0 / FAR_M))).astype(np.float32)
    return (NEAR_M + t * (FAR_M - NEAR_M)).astype(np.float32)  # relative_depth: far = large


def sparse(depth_m: np.ndarray) -> np.ndarray:
    """A registered depth image with one sample in four pixels (NaN elsewhere), like a real
    RGB-D or projected LiDAR image."""
    out = np.full(depth_m.shape, np.nan, np.float32)
    out[::2, ::2] = depth_m[::2, ::2]
    return out


def run(estimator: DepthEstimator, mode: str, **frame: Any) -> FrameResult:
    config = PipelineConfig(min_depth_m=0.01, max_depth_m=1000.0, flying_threshold=0.0,
                            regions=False, segmentation=(),
                            metric=MetricConfig(mode=mode, temporal=False))
    return Pipeline(config, estimator).process(Frame(rgb=RGB, camera=CAMERA, **frame))


def model_inputs(estimator: DepthEstimator, prompt_m: np.ndarray | None) -> dict[str, Any]:
    """What the pipeline gives the network besides the image: fx from K (Depth Pro, Depth
    Anything 3 Metric), Prompt Depth Anything's prompt (the frame's sparse depth)."""
    if estimator.spec.takes_focal:
        return {"fx_px": CAMERA.fx}
    if "prompt_depth" in estimator.spec.extra_inputs:
        return {"prompt_depth_m": prompt_m}
    return {}


def assert_depth_equals(result: FrameResult, expected_m: np.ndarray, source: str,
                        min_valid: float = 0.9) -> None:
    assert result.depth_source == source, result.metric.message if result.metric else result
    assert result.valid.mean() > min_valid, result.metric.message
    both = result.valid & np.isfinite(expected_m)
    got, want = result.depth_m[both], expected_m[both]
    error = np.median(np.abs(got - want) / want)
    assert error < 0.01, f"median relative error {error:.3%}; {result.metric.message}"
    assert np.isfinite(result.points[result.valid]).all()


# A metric depth close to 2 m everywhere: Prompt Depth Anything rescales its output to the
# prompt's range, so a prompt this narrow pins its metric depth to the prompt's whatever the weights.
PROMPT_M = (2.0 + 0.01 * np.random.default_rng(0).random((48, 64))).astype(np.float32)


@pytest.mark.parametrize("name, mode", CASES)
def test_the_pipeline_gives_the_known_metric_scale(name: str, mode: str, estimator) -> None:
    est = estimator(name)
    kind = est.kind
    if "prompt_depth" in est.spec.extra_inputs:
        # the sparse depth is also the network's prompt: the signal cannot be derived from a
        # prediction that depends on it, so the known scale is the prompt's own (2 m, then 6 m)
        for k in (1.0, 3.0):
            prompt = k * PROMPT_M
            if mode == "pointcloud":  # the prompt from LiDAR points instead of a depth image
                points = CAMERA.backproject(sparse(prompt)).reshape(-1, 3)
                result = run(est, mode, cloud_points=points[np.isfinite(points).all(axis=1)],
                             T_camera_from_cloud=np.eye(4))
            else:
                result = run(est, mode, sparse_depth=sparse(prompt))
            if mode == "model":  # the metric network's output passes through unchanged
                pred = est.predict(RGB, **model_inputs(est, sparse(prompt))).values
                assert_depth_equals(result, pred, "model")
                np.testing.assert_array_equal(result.depth_m, pred)
            else:
                assert_depth_equals(result, prompt, "sparse_depth" if mode == "auto" else mode)
        return

    pred = est.predict(RGB, **model_inputs(est, None)).values
    expected = known_depth(pred, kind)
    if mode == "model":
        result = run(est, mode)
        np.testing.assert_array_equal(result.depth_m[result.valid], pred[result.valid])
        assert_depth_equals(result, pred, "model")
    elif mode in ("sparse_depth", "auto"):
        assert_depth_equals(run(est, mode, sparse_depth=sparse(expected)), expected, "sparse_depth")
    elif mode == "pointcloud":
        # LiDAR points in the camera frame that land on every other pixel
        points = CAMERA.backproject(sparse(expected)).reshape(-1, 3)
        points = points[np.isfinite(points).all(axis=1)]
        result = run(est, mode, cloud_points=points, T_camera_from_cloud=np.eye(4))
        assert_depth_equals(result, expected, "pointcloud")
    elif mode == "plane":
        # whichever plane RANSAC finds in a random prediction, the metric scale is proportional to
        # the camera height: twice as high, twice as deep. The plane fit is scale-only (no normal
        # given), so pixels a random network puts "behind" the camera stay invalid.
        low, high = run(est, mode, camera_height_m=0.5), run(est, mode, camera_height_m=1.0)
        assert low.depth_source == "plane", low.metric.message
        assert_depth_equals(high, 2.0 * low.depth_m, "plane", min_valid=0.02)
    else:
        raise AssertionError(f"no check for mode {mode!r}")
