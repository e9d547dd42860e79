"""The aligner (:mod:`depth_perception.metric.aligner`): bad signals keep the last scale, bad
predictions and configurations raise; model and fixed modes.

Scenes and the emulated relative network come from metric_helpers.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from metric_helpers import A_TRUE, B_TRUE, CAM, GT, H, ORACLE_ABS_REL, PRED, W, static_frame

from depth_perception.metric import (ERROR, OK, WARN, DepthImageSignal, MetricAligner, MetricConfig,
                                     PointCloudSignal)
from depth_perception.metrics import depth_metrics, sparse_samples
from depth_perception.scene import generate_tabletop


def _aligned_aligner(**cfg) -> tuple[MetricAligner, float]:
    aligner = MetricAligner(MetricConfig(**cfg))
    pred, samples = static_frame(0)
    first = aligner.align(pred, "relative_inverse", CAM, DepthImageSignal(samples))  # any mode takes it
    assert first.level == OK, first.message
    return aligner, first.estimate.scale


@pytest.mark.parametrize("signal, words", [
    (None, "no metric signal (metric.mode auto)"),
    (np.full((H, W), 0.8, np.float32), "sample depths equal"),
    (np.full((H, W), np.nan, np.float32), "0 usable samples"),
    (np.zeros((H, W), np.uint16), "0 usable samples"),
    (np.zeros((0, 5), np.float32), "depth image must be HxW"),
    ("not an image", "unsupported signal type"),
    (PointCloudSignal(np.ones((10, 2))), "Nx3"),
])
def test_bad_signals_keep_the_last_scale_and_say_why(signal, words):
    aligner, scale = _aligned_aligner()
    res = aligner.align(PRED, "relative_inverse", CAM, signal)
    assert res.level == WARN and words in res.message, res.message
    assert res.estimate.scale == scale and res.estimate.age == 1
    assert res.source == "sparse_depth" and np.isfinite(res.depth_m).mean() > 0.5


def test_pointcloud_behind_the_camera_keeps_the_last_scale():
    aligner, scale = _aligned_aligner(mode="pointcloud")
    flipped = np.diag([1.0, 1.0, -1.0, 1.0])  # a sign error in the extrinsics: every point behind
    cloud = CAM.backproject(GT).reshape(-1, 3)[::50]
    res = aligner.align(PRED, "relative_inverse", CAM, PointCloudSignal(cloud, flipped))
    assert res.level == WARN and "in front of the camera" in res.message, res.message
    assert res.estimate.scale == scale


def test_mismatched_sizes_are_resampled():
    aligner = MetricAligner(MetricConfig(mode="sparse_depth"))
    big = sparse_samples(generate_tabletop(seed=2, width=2 * W, height=2 * H).depth_m, 800, 0.3)
    res = aligner.align(PRED, "relative_inverse", CAM, DepthImageSignal(big))
    assert res.level == OK and depth_metrics(res.depth_m, GT).abs_rel < 1.1 * ORACLE_ABS_REL
    # a prediction at half the camera's resolution: the camera is scaled to the prediction grid
    half = PRED[::2, ::2]
    res = aligner.align(half, "relative_inverse", CAM, sparse_samples(GT, 800, 0.3)[::2, ::2])
    assert res.depth_m.shape == half.shape and res.level == OK


def test_no_scale_yet_gives_all_nan_and_an_error_level():
    res = MetricAligner().align(PRED, "relative_inverse", CAM, None)
    assert res.level == ERROR and res.source == "none" and res.confidence == 0.0
    assert np.isnan(res.depth_m).all() and not res.valid.any()


@pytest.mark.parametrize("prediction", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), [[1.0]]])
def test_bad_predictions_raise(prediction):
    with pytest.raises(ValueError, match="prediction"):
        MetricAligner().align(prediction, "relative_inverse", CAM)


def test_bad_config_and_kind_raise():
    with pytest.raises(ValueError, match="metric mode"):
        MetricConfig(mode="lidar")
    with pytest.raises(ValueError, match="T_camera_from_cloud"):
        MetricConfig(T_camera_from_cloud=(1.0, 2.0))
    with pytest.raises(ValueError, match="prediction_kind"):
        MetricAligner().align(PRED, "disparity", CAM)


# -- model and fixed modes -----------------------------------------------------------------------


def test_model_mode_passes_a_metric_network_through_until_a_signal_corrects_it():
    aligner = MetricAligner(MetricConfig(mode="model"))
    metric_pred = (GT * 1.1).astype(np.float32)
    raw = aligner.align(metric_pred, "metric", CAM)
    assert raw.source == "model" and raw.level == WARN and raw.confidence == 0.5
    assert depth_metrics(raw.depth_m, GT).abs_rel == pytest.approx(0.1, abs=1e-3)
    corrected = aligner.align(metric_pred, "metric", CAM, sparse_samples(GT, 100, 0.3))
    assert corrected.source == "sparse_depth" and corrected.level == OK
    assert corrected.estimate.scale == pytest.approx(1 / 1.1, rel=1e-3)
    assert depth_metrics(corrected.depth_m, GT).abs_rel < 1e-3


def test_fixed_mode():
    res = MetricAligner(MetricConfig(mode="fixed", fixed_scale=1 / A_TRUE, fixed_shift=-B_TRUE / A_TRUE)).align(
        PRED, "relative_inverse", CAM)
    assert res.source == "fixed" and res.level == OK and res.confidence == 0.5
    assert depth_metrics(res.depth_m, GT).abs_rel < 0.05
    assert set(res.diagnostics()) >= {"mode", "source", "scale", "shift", "inlier_ratio", "residual",
                                      "age_frames", "stale", "confidence", "message"}


# -- metric.mode auto ---------------------------------------------------------------------------


def test_auto_uses_the_signal_each_frame_brings_and_names_it_as_the_source():
    aligner = MetricAligner(MetricConfig())  # auto is the default
    pred, samples = static_frame(0)
    first = aligner.align(pred, "relative_inverse", CAM, DepthImageSignal(samples))
    assert first.mode == "auto" and first.source == "sparse_depth" and first.level == OK
    assert depth_metrics(first.depth_m, GT).abs_rel < 2 * ORACLE_ABS_REL + 0.01
    v, u = np.nonzero(np.isfinite(samples))
    xyz = np.stack([(u - CAM.cx) / CAM.fx, (v - CAM.cy) / CAM.fy, np.ones(u.size)], 1) * samples[v, u, None]
    second = aligner.align(pred, "relative_inverse", CAM, PointCloudSignal(xyz))
    assert second.source == "pointcloud" and second.level == OK
    assert second.diagnostics()["mode"] == "auto" and second.diagnostics()["source"] == "pointcloud"


def test_auto_takes_a_metric_network_as_is_and_a_configured_camera_height_for_plane():
    metric = MetricAligner(MetricConfig()).align(GT.copy(), "metric", CAM, None)
    assert metric.source == "model" and np.isfinite(metric.depth_m).mean() > 0.5
    aligner = MetricAligner(MetricConfig(camera_height_m=0.6))
    assert aligner.frame_mode("relative_inverse", None) == "plane"
    assert aligner.frame_mode("metric", None) == "model"  # the network's own scale comes first


@pytest.mark.parametrize("config, kind, words", [
    ({}, "relative_inverse", ["metric.mode auto", "`sparse_depth`", "`lidar_points`",
                              "stereo: true", "metric.camera_height"]),
    ({"mode": "model"}, "relative_inverse", ["needs a metric network"]),
    ({"mode": "plane"}, "relative_inverse", ["set metric.camera_height"]),
    ({"mode": "sparse_depth"}, "metric", ["`sparse_depth`"]),
    ({"mode": "pointcloud"}, "relative_inverse", ["`lidar_points`"]),
    ({"mode": "stereo"}, "relative_inverse", ["stereo: true", "right/image"]),
])
def test_a_missing_signal_is_an_error_naming_what_to_give(config, kind, words):
    result = MetricAligner(MetricConfig(**config)).align(PRED if kind != "metric" else GT.copy(),
                                                          kind, CAM, None)
    assert result.source == "none" and result.level == ERROR and not result.valid.any()
    for word in words:
        assert word in result.message, result.message


def test_relative_depth_is_aligned_with_a_scale_and_shift_in_depth():
    # Marigold's kind: affine-invariant depth (far = large); GT = 2.0 * pred + 0.3 m
    pred = ((GT - 0.3) / 2.0).astype(np.float32)
    res = MetricAligner().align(pred, "relative_depth", CAM, DepthImageSignal(sparse_samples(GT, 300, 0.2)))
    assert res.level == OK and res.fit.space == "depth", res.message
    assert res.estimate.scale == pytest.approx(2.0, rel=0.01)
    assert res.estimate.shift == pytest.approx(0.3, abs=0.01)
    assert depth_metrics(res.depth_m, GT).abs_rel < 0.01
