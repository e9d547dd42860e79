"""`depth` + `depth/camera_info` describe the published depth image exactly: depth_image_proc's
point_cloud_xyz formula (image_geometry's fx, fy, cx, cy, all read from P) on the two messages,
decoded with cv_bridge, reproduces `points` as sensor_msgs_py reads it."""

from __future__ import annotations

import numpy as np
import pytest

from consumers import read_depth_m, read_xyz
from depth_perception.pipeline import Frame, Pipeline, PipelineConfig
from depth_perception.ros import messages as M
from depth_perception.ros.conversion import OutputOptions, result_to_messages
from depth_perception.stereo import StereoParams
from stereo_rig import make_rig


def depth_image_proc_xyz(depth_m: np.ndarray, camera_info) -> np.ndarray:
    """depth_image_proc/conversions.hpp ``convertDepth``: image_geometry's cx() = P[0,2],
    fx() = P[0,0] (the rectified model), NaN depth → NaN point."""
    P = np.asarray(camera_info.p, dtype=np.float64).reshape(3, 4)
    v, u = np.indices(depth_m.shape, dtype=np.float32)
    x = (u - P[0, 2]) * depth_m / P[0, 0]
    y = (v - P[1, 2]) * depth_m / P[1, 1]
    return np.stack([x, y, depth_m], axis=-1)


@pytest.mark.parametrize("rectify", [False, True], ids=["image_rect", "image_raw+rectify"])
def test_depth_image_proc_on_depth_and_camera_info_gives_points(rectify):
    rig = make_rig()
    left, right = rig.raw_pair() if rectify else rig.rectified_pair()[:2]
    frame = Frame(rgb=left, camera=rig.left, right_rgb=right, right_camera=rig.right,
                  image_rectified=not rectify)
    result = Pipeline(PipelineConfig(stereo=StereoParams(), segmentation=(), max_depth_m=3.0,
                                     rectify=rectify)).process(frame)
    t = M.rosbags_types()
    msgs = result_to_messages(t, frame, result, M.make_header(t, 1, "cam"),
                              OutputOptions(topics=("depth", "depth/camera_info", "points")))
    info = msgs["depth/camera_info"]
    assert list(info.d) == [] or not np.any(info.d)  # the depth image is undistorted
    assert np.allclose(np.asarray(info.k).reshape(3, 3), rig.left.P[:, :3])
    ours = read_xyz(msgs["points"])
    theirs = depth_image_proc_xyz(read_depth_m(msgs["depth"]), info)
    valid = np.isfinite(ours[..., 2])
    assert valid.mean() > 0.4
    assert np.array_equal(valid, np.isfinite(theirs[..., 2]))
    assert np.allclose(ours[valid], theirs[valid], atol=1e-5)
