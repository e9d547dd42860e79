"""Raw frames resampled into their rectified geometry (``rectify: true``), checked against the exact
rectified images of a calibrated rig rectified by OpenCV's ``stereoRectify``."""

from __future__ import annotations

import numpy as np
import pytest

from depth_perception.pipeline import Frame
from depth_perception.rectify import RectifyMaps, rectify_box, rectify_frame, rectify_points
from depth_perception.segmentation.base import Detection
from stereo_rig import make_rig


@pytest.fixture(scope="module")
def rig():
    return make_rig()


def test_a_raw_pair_rectified_matches_the_rectified_render(rig):
    raw_left, raw_right = rig.raw_pair()
    left, right, _ = rig.rectified_pair()
    frame = rectify_frame(Frame(rgb=raw_left, camera=rig.left, right_rgb=raw_right,
                                right_camera=rig.right), RectifyMaps())
    inner = (slice(20, -20), slice(20, -20))  # the rectified view reaches past the raw image's edge
    for got, want in ((frame.rgb, left), (frame.right_rgb, right)):
        diff = np.abs(got[inner].astype(int) - want[inner].astype(int))
        assert np.median(diff) <= 3  # bilinear resampling of an exact render: a few grey levels
    assert frame.camera.D.size == 0 and np.allclose(frame.camera.K, rig.left.P[:, :3])
    assert np.allclose(frame.camera.R, np.eye(3)) and np.allclose(frame.right_camera.P, rig.right.P)


def test_a_raw_pixel_moves_to_where_P_projects_its_3d_point(rig):
    rays = rig.rays_raw(rig.left)  # rectified-frame rays of the raw pixels
    n, d = rig.plane[:3], rig.plane[3]
    uv = np.array([[5.0, 7.0], [160.0, 120.0], [310.0, 230.0]])
    r = rays[uv[:, 1].astype(int), uv[:, 0].astype(int)]
    X = r * (d / (r @ n))[:, None]
    projected = X @ rig.left.P[:, :3].T
    projected = projected[:, :2] / projected[:, 2:]
    assert np.allclose(rectify_points(rig.left, uv), projected, atol=1e-3)


def test_instance_masks_keep_their_ids_and_boxes_follow_the_distortion(rig):
    raw_left, _ = rig.raw_pair()
    masks = np.zeros(raw_left.shape[:2], np.uint16)
    masks[60:110, 90:170] = 7
    masks[150:200, 200:300] = 65535
    box = np.array([90.0, 60.0, 169.0, 109.0])
    frame = rectify_frame(Frame(rgb=raw_left, camera=rig.left, masks=masks,
                                detections=[Detection(box_xyxy=box, label="mug")]), RectifyMaps())
    assert set(np.unique(frame.masks)) == {0, 7, 65535}  # nearest sampling: no blended ids
    ys, xs = np.nonzero(frame.masks == 7)
    moved = frame.detections[0].box_xyxy
    assert np.allclose(moved, rectify_box(rig.left, box))
    # the box moved with the mask it names (within a pixel of the mask's rectified extent)
    assert np.allclose(moved, [xs.min(), ys.min(), xs.max(), ys.max()], atol=1.5)
    assert frame.detections[0].label == "mug"


def test_lidar_extrinsics_and_the_support_plane_turn_with_R(rig):
    raw_left, _ = rig.raw_pair()
    T = np.eye(4)
    T[:3, 3] = [0.1, 0.0, 0.0]
    plane = np.array([0.0, -1.0, 0.0, 0.5])
    frame = rectify_frame(Frame(rgb=raw_left, camera=rig.left, cloud_points=np.ones((4, 3)),
                                support_plane=plane), RectifyMaps(), T.reshape(-1))
    assert np.allclose(frame.T_camera_from_cloud[:3, :3], rig.left.R)
    assert np.allclose(frame.T_camera_from_cloud[:3, 3], rig.left.R @ [0.1, 0.0, 0.0])
    assert np.allclose(frame.support_plane[:3], rig.left.R @ plane[:3])


def test_maps_are_built_once_per_camera(rig):
    maps = RectifyMaps(capacity=2)
    first = maps.get(rig.left)
    assert maps.get(rig.left) is first
    maps.get(rig.right)
    maps.get(rig.left.scaled(160, 120))  # a third camera pushes out the oldest
    assert maps.get(rig.left) is not first
