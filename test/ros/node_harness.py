"""The node under test plus a tester node that feeds it and records what it publishes (real rclpy,
for tests inside the loopback-only namespace; see conftest.py). Shared by the node test files."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from depth_perception.camera import CameraModel

FRAME_ID = "camera_color_optical_frame"


def spin_until(executor, predicate, timeout: float = 10.0) -> bool:
    """Spin ``executor`` until ``predicate()`` holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if predicate():
            return True
    return False


class NodeHarness:
    """``parameters`` for the node; ``publishers`` / ``subscriptions`` ({topic: message class}) on
    top of the stereo inputs and the depth / depth/camera_info / points outputs."""

    def __init__(self, context, parameters: dict, publishers: dict[str, Any] | None = None,
                 subscriptions: dict[str, Any] | None = None, tester_name: str = "dp_tester"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile

        from depth_perception.ros import messages as M
        from depth_perception.ros.node import DepthPerceptionNode

        self.M = M
        self.types = t = M.rclpy_types()
        overrides = [Parameter(k, value=v) for k, v in parameters.items()]
        self.node = DepthPerceptionNode(context=context, parameter_overrides=overrides)
        self.tester = rclpy.create_node(tester_name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        qos = QoSProfile(depth=10)
        inputs = {"image": t.Image, "camera_info": t.CameraInfo, "right/image": t.Image,
                  "right/camera_info": t.CameraInfo, **(publishers or {})}
        self.pubs = {topic: self.tester.create_publisher(cls, topic, qos) for topic, cls in inputs.items()}
        outputs = {"depth": t.Image, "depth/camera_info": t.CameraInfo, "points": t.PointCloud2,
                   **(subscriptions or {})}
        self.received: dict[str, list] = {topic: [] for topic in outputs}
        for topic, cls in outputs.items():
            self.tester.create_subscription(cls, topic, self.received[topic].append, qos)

    def wait_for_connections(self, timeout: float = 5.0) -> None:
        if not self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values())
                               and self.node.count_subscribers("points") > 0, timeout):
            raise AssertionError("DDS discovery between the test nodes did not complete")

    def send_stereo(self, scene, stamp_ns: int, left_encoding: str = "rgb8", info_size=None) -> None:
        M, t = self.M, self.types
        h, w = scene.depth_m.shape
        header = M.make_header(t, stamp_ns, FRAME_ID)
        iw, ih = info_size or (w, h)
        cam = CameraModel(width=iw, height=ih, K=scene.K)
        P_right = np.hstack([scene.K, [[-scene.K[0, 0] * scene.baseline_m], [0.0], [0.0]]])
        right_cam = CameraModel(width=iw, height=ih, K=scene.K, P=P_right)
        if left_encoding == "bgr8":
            left = M.numpy_to_image(t, scene.rgb[..., ::-1].copy(), "bgr8", header)
        elif left_encoding == "32FC1":
            left = M.numpy_to_image(t, scene.depth_m, "32FC1", header)
        else:
            left = M.numpy_to_image(t, scene.rgb, "rgb8", header)
        self.pubs["image"].publish(left)
        self.pubs["camera_info"].publish(M.model_to_camera_info(t, cam, header))
        self.pubs["right/image"].publish(M.numpy_to_image(t, scene.right_rgb, "rgb8", header))
        self.pubs["right/camera_info"].publish(M.model_to_camera_info(t, right_cam, header))

    def spin_until(self, predicate, timeout: float = 10.0) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.tester.destroy_node()
