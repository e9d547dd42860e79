"""Signals (:mod:`depth_perception.metric.signals`): depth-image encodings and resampling, point-cloud
projection, stereo, and each signal through the aligner.

Scenes and the emulated relative network come from metric_helpers.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from metric_helpers import CAM, GT, H, ORACLE_ABS_REL, PRED, SCENE, W

from depth_perception.camera import CameraModel
from depth_perception.metric import (ERROR, OK, MetricAligner, MetricConfig, StereoSignal,
                                     depth_image_to_metres, project_points, resample_sparse,
                                     sparse_from_depth_image, sparse_from_pointcloud)
from depth_perception.metrics import depth_metrics, sparse_samples


def test_depth_image_encodings_and_min_pooling():
    mm = np.array([[0, 1500], [65535, 700]], dtype=np.uint16)
    np.testing.assert_allclose(depth_image_to_metres(mm), [[np.nan, 1.5], [65.535, 0.7]], rtol=1e-6)
    metres = np.array([[np.inf, -1.0], [0.0, 2.0]], dtype=np.float32)
    assert np.isnan(depth_image_to_metres(metres)[[0, 0, 1], [0, 1, 0]]).all()
    # 4x4 → 2x2: each block keeps its nearest surface, never an average across an edge
    src = np.array([[1, 1, 3, 3], [1, 2, 3, np.nan], [np.nan] * 4, [np.nan, np.nan, 5, 4]], np.float32)
    np.testing.assert_array_equal(resample_sparse(src, (2, 2)), [[1, 3], [np.nan, 4]])
    # enlarging takes the nearest source pixel
    np.testing.assert_array_equal(resample_sparse(np.array([[1, 2]], np.float32), (2, 4)),
                                  [[1, 1, 2, 2], [1, 1, 2, 2]])
    # odd factors keep every target pixel covered
    assert sparse_from_depth_image(np.ones((479, 641), np.float32), (240, 320)).shape == (240, 320)


def test_pointcloud_projection_drops_behind_and_keeps_nearest():
    # a LiDAR frame with x forward, y left, z up (REP 103 body frame), mounted at the camera centre
    T_camera_from_lidar = np.eye(4)
    T_camera_from_lidar[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    lidar = np.array([
        [2.0, 0.0, 0.0],    # straight ahead: principal point, z = 2
        [1.0, 0.0, 0.0],    # same pixel, nearer: kept
        [-2.0, 0.0, 0.0],   # behind the camera: dropped
        [1.0, 5.0, 0.0],    # far outside the image on the left: dropped
        [np.nan, 0, 0],     # REP 117 invalid point: dropped
    ])
    out = sparse_from_pointcloud(lidar, T_camera_from_lidar, CAM)
    u, v = int(round(CAM.cx)), int(round(CAM.cy))
    assert out[v, u] == pytest.approx(1.0)
    assert np.isfinite(out).sum() == 1


def test_pointcloud_of_the_scene_lands_on_its_pixels():
    cloud = CAM.backproject(GT).reshape(-1, 3)
    rng = np.random.default_rng(0)
    pts = cloud[rng.choice(len(cloud), 3000, replace=False)]
    # express the points in a sensor frame 10 cm to the side and rotated, then give the extrinsics back
    c, s = math.cos(0.3), math.sin(0.3)
    T_cam_from_sensor = np.array([[c, 0, s, 0.1], [0, 1, 0, 0.02], [-s, 0, c, -0.05], [0, 0, 0, 1]])
    in_sensor = (pts - T_cam_from_sensor[:3, 3]) @ T_cam_from_sensor[:3, :3]
    out = sparse_from_pointcloud(in_sensor, T_cam_from_sensor, CAM)
    has = np.isfinite(out)
    assert 2800 < has.sum() <= 3000
    np.testing.assert_allclose(out[has], GT[has], rtol=2e-2)  # nearest-pixel rounding on slanted surfaces
    # half-resolution prediction grid: the camera is scaled to it
    half = sparse_from_pointcloud(in_sensor, T_cam_from_sensor, CAM, shape=(H // 2, W // 2))
    assert half.shape == (H // 2, W // 2) and np.isfinite(half).sum() > 2000


def test_projection_inverts_backproject_with_distortion():
    # a projected LiDAR point must land on the pixel whose (undistorted) ray it lies on
    cam = CameraModel(width=W, height=H, K=CAM.K, D=np.array([-0.28, 0.09, 0.001, -0.0005, 0.0]))
    depth = np.full((H, W), 1.5, np.float32)
    cloud = cam.backproject(depth)
    v, u = np.mgrid[2:H:37, 3:W:41]
    uv = project_points(cam, cloud[v, u].reshape(-1, 3))
    np.testing.assert_allclose(uv, np.column_stack([u.ravel(), v.ravel()]), atol=0.01)
    samples = sparse_from_pointcloud(cloud[v, u].reshape(-1, 3), np.eye(4), cam)
    assert np.isfinite(samples).sum() == u.size and np.isfinite(samples[v, u]).all()


def test_sparse_depth_needs_no_camera():
    res = MetricAligner().align(PRED, "relative_inverse", None, sparse_samples(GT, 300, 0.3))
    assert res.level == OK and depth_metrics(res.depth_m, GT).abs_rel < 1.1 * ORACLE_ABS_REL
    # a point cloud does
    res = MetricAligner(MetricConfig(mode="pointcloud")).align(PRED, "relative_inverse", None, np.ones((5, 3)))
    assert res.level == ERROR and "needs the camera model" in res.message


def test_stereo_signal_aligns_the_prediction():
    aligner = MetricAligner(MetricConfig(mode="stereo"))
    res = aligner.align(PRED, "relative_inverse", CAM,
                        StereoSignal(SCENE.rgb, SCENE.right_rgb, baseline_m=SCENE.baseline_m))
    assert res.level == OK and res.source == "stereo", res.message
    assert res.fit.n_points > 10000
    assert depth_metrics(res.depth_m, GT).abs_rel < 1.1 * ORACLE_ABS_REL
    # half-resolution prediction, baseline from the right CameraInfo's P (P[0,3] = -fx*B)
    P_right = np.hstack([CAM.K, [[-CAM.fx * SCENE.baseline_m], [0], [0]]])
    right = CameraModel(width=W, height=H, K=CAM.K, P=P_right)
    half = MetricAligner(MetricConfig(mode="stereo")).align(
        PRED[::2, ::2], "relative_inverse", CAM, StereoSignal(SCENE.rgb, SCENE.right_rgb, right_camera=right))
    assert half.level == OK and half.depth_m.shape == (H // 2, W // 2), half.message
    assert depth_metrics(half.depth_m, GT[::2, ::2]).abs_rel < 1.1 * ORACLE_ABS_REL


def test_pointcloud_mode_with_bare_array_and_configured_extrinsics():
    T = np.eye(4)
    T[0, 3] = 0.5  # the cloud frame sits 0.5 m to the left of the camera
    cloud = CAM.backproject(GT).reshape(-1, 3)[::40] - [0.5, 0, 0]
    aligner = MetricAligner(MetricConfig(mode="pointcloud", T_camera_from_cloud=tuple(T.reshape(-1))))
    res = aligner.align(PRED, "relative_inverse", CAM, cloud)
    assert res.level == OK and res.source == "pointcloud", res.message
    assert depth_metrics(res.depth_m, GT).abs_rel < 1.1 * ORACLE_ABS_REL
