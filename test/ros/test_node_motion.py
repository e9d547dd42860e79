"""Metric scale from the robot's own motion through the node: nav_msgs/Odometry on `odometry`,
images and CameraInfo of a distorted camera on a driving robot (test/motion_scene.py), real rclpy
in the loopback namespace. The odometry pose is interpolated at each image stamp and composed with
metric.motion.T_base_camera; the tracker's keyframes give metric samples."""

from __future__ import annotations

import numpy as np
import pytest

import motion_scene as ms
from node_harness import FRAME_ID, NodeHarness


@pytest.fixture(scope="module")
def drive():
    return ms.sequence(12, "drive")


def _odometry_msg(Odometry, stamp_ns: int, T: np.ndarray):
    from scipy.spatial.transform import Rotation

    msg = Odometry()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in T[:3, 3])
    q.x, q.y, q.z, q.w = (float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat())
    return msg


def test_odometry_gives_the_motion_signal_and_a_missing_pose_is_reported(rclpy_context, drive):
    pytest.importorskip("nav_msgs.msg", reason="nav_msgs not installed (requirements/ros.txt)")
    from nav_msgs.msg import Odometry

    h = NodeHarness(rclpy_context, {
        "model": "student_tabletop", "backend": "torch", "metric.mode": "motion",
        "metric.motion.T_base_camera": [float(v) for v in ms.T_BASE_CAMERA.reshape(-1)],
        "max_depth": 10.0, "segmentation.source": ["topic"]},
        publishers={"odometry": Odometry}, tester_name="dp_motion_tester")
    try:
        M, t = h.M, h.types
        assert h.spin_until(lambda: all(h.pubs[n].get_subscription_count() > 0
                                        for n in ("image", "camera_info", "odometry")), 10.0)
        assert h.node._ready.wait(timeout=60.0), h.node.last_error
        base = 20_000_000_000  # odometry and images share this clock offset
        # the first image comes before any odometry: no pose, said so
        header = M.make_header(t, base - 500_000_000, FRAME_ID)
        h.pubs["camera_info"].publish(M.model_to_camera_info(t, ms.CAMERA, header))
        h.pubs["image"].publish(M.numpy_to_image(t, drive.images[0], "rgb8", header))
        assert h.spin_until(lambda: h.received["depth"], timeout=20.0), h.node.last_error
        assert "no odometry pose received yet" in h.node._no_pose
        odometry = list(drive.odometry)
        sources, messages = [], []
        for image, stamp in zip(drive.images, drive.stamps_ns):
            while odometry and odometry[0][0] <= stamp + 50_000_000:  # odometry runs ahead
                h.pubs["odometry"].publish(_odometry_msg(Odometry, base + odometry[0][0],
                                                         odometry[0][1]))
                odometry.pop(0)
                h.spin_until(lambda: False, 0.002)
            header = M.make_header(t, base + stamp, FRAME_ID)
            n = len(h.received["depth"])
            h.pubs["camera_info"].publish(M.model_to_camera_info(t, ms.CAMERA, header))
            h.pubs["image"].publish(M.numpy_to_image(t, image, "rgb8", header))
            assert h.spin_until(lambda: len(h.received["depth"]) > n
                                and h.node._last_metric is not None, 20.0), h.node.last_error
            h.spin_until(lambda: False, 0.05)
            sources.append(h.node._last_metric.source)
            messages.append(h.node._last_metric.message)
        assert h.node._no_pose == ""
        # the tracker triangulated points once the robot had moved a baseline
        assert any("ok:" in m and "points" in m for m in messages), messages
        assert "motion" in sources, (sources, messages)
    finally:
        h.close()
