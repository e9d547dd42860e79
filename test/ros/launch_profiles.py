"""The launch tests of test_launch.py (collected from there only when launch_testing, the ROS 2
tools and the loopback-only namespace are present)."""

from __future__ import annotations

import os
import time
import unittest

import numpy as np
import pytest

import launch
import launch_testing
import launch_testing.actions
import launch_testing.asserts
from launch.launch_description_sources import PythonLaunchDescriptionSource

from ament_prefix import REPO, use_source_tree_prefix
from depth_perception.metrics import depth_metrics
from depth_perception.scene import generate_tabletop
from node_harness import spin_until

NAMESPACE = "dp_launch_test"
CAMERA = "/cam"
FRAME_ID = "cam_color_optical_frame"

#: profile → launch arguments (on top of the topic arguments every profile gets)
PROFILES = {
    "stereo": {"stereo": "true"},
    "bundled_model": {"model": "student_tabletop", "backend": "torch",
                      "metric_mode": "sparse_depth", "input_size": "144"},
    "cpu": {"config": str(REPO / "config" / "cpu.yaml")},
}


@pytest.mark.launch_test
@launch_testing.parametrize("profile", list(PROFILES))
def generate_test_description(profile):
    use_source_tree_prefix()
    # the CPU profile exports its ONNX model on first run: keep that out of the user's cache
    os.environ.setdefault("DEPTH_PERCEPTION_CACHE", str(REPO / "build" / "test_cache"))
    arguments = {"namespace": NAMESPACE, "camera": CAMERA, "image": "image_rect",
                 "right_camera": f"{CAMERA}/right", "sparse_depth": f"{CAMERA}/depth",
                 "use_rviz": "true",  # rviz2 is not installed here: warned about, then skipped
                 **PROFILES[profile]}
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "depth_perception.launch.py")),
        launch_arguments=list(arguments.items()))
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()]), {}


class Tester:
    """A node that feeds the launched node and records its outputs (its own rclpy context)."""

    def __init__(self, stereo: bool):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from depth_perception_msgs.msg import GraspableRegionArray

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("dp_launch_tester", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=10)
        inputs = {f"{CAMERA}/image_rect": Image, f"{CAMERA}/camera_info": CameraInfo}
        if stereo:
            inputs.update({f"{CAMERA}/right/image_rect": Image,
                           f"{CAMERA}/right/camera_info": CameraInfo})
        else:
            inputs[f"{CAMERA}/depth"] = Image
        self.pubs = {topic: self.node.create_publisher(cls, topic, qos)
                     for topic, cls in inputs.items()}
        outputs = {"depth": Image, "points": PointCloud2, "regions": GraspableRegionArray}
        self.received: dict[str, list] = {name: [] for name in [*outputs, "diagnostics"]}
        for name, cls in outputs.items():
            self.node.create_subscription(cls, f"/{NAMESPACE}/{name}",
                                          self.received[name].append, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      self.received["diagnostics"].append, 50)

    def spin_until(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _input_messages(scene, stamp_ns: int, stereo: bool) -> dict[str, object]:
    from cv_bridge import CvBridge
    from sensor_msgs.msg import CameraInfo

    bridge = CvBridge()
    h, w = scene.depth_m.shape

    def info(Tx: float) -> CameraInfo:
        K = scene.K
        msg = CameraInfo(width=w, height=h, distortion_model="plumb_bob", d=[0.0] * 5)
        msg.k = [float(x) for x in K.ravel()]
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        msg.p = [K[0, 0], 0.0, K[0, 2], Tx, 0.0, K[1, 1], K[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0]
        return msg

    msgs = {f"{CAMERA}/image_rect": bridge.cv2_to_imgmsg(scene.rgb, "rgb8"),
            f"{CAMERA}/camera_info": info(0.0)}
    if stereo:
        msgs[f"{CAMERA}/right/image_rect"] = bridge.cv2_to_imgmsg(scene.right_rgb, "rgb8")
        msgs[f"{CAMERA}/right/camera_info"] = info(-scene.K[0, 0] * scene.baseline_m)
    else:  # a registered depth sensor: every 8th pixel, millimetres (16UC1, 0 = none)
        sparse = np.zeros((h, w), np.uint16)
        sparse[::8, ::8] = np.round(scene.depth_m[::8, ::8] * 1000).astype(np.uint16)
        msgs[f"{CAMERA}/depth"] = bridge.cv2_to_imgmsg(sparse, "16UC1")
    for msg in msgs.values():
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = FRAME_ID
    return msgs


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class TestOutputs(unittest.TestCase):

    def test_depth_points_regions_and_diagnostics_for_one_frame(self, profile):
        from cv_bridge import CvBridge
        from diagnostic_msgs.msg import DiagnosticStatus
        from sensor_msgs_py import point_cloud2

        stereo = profile == "stereo"
        scene = generate_tabletop(seed=5, width=320, height=240)
        tester = Tester(stereo)
        try:
            self.assertTrue(tester.spin_until(
                lambda: all(p.get_subscription_count() > 0 for p in tester.pubs.values()),
                timeout=30.0), "the launched node never subscribed to the remapped inputs")
            # The model loads on the node's worker; frames sent before that are dropped
            # (latest-frame-wins), so send a new stamp until depth comes back.
            stamp = 1_700_000_000_000_000_000
            deadline = time.monotonic() + 120.0
            while not tester.received["depth"] and time.monotonic() < deadline:
                stamp += 100_000_000
                for topic, msg in _input_messages(scene, stamp, stereo).items():
                    tester.pubs[topic].publish(msg)
                tester.spin_until(lambda: bool(tester.received["depth"]), timeout=1.0)
            self.assertTrue(tester.received["depth"], f"{profile}: no depth within 120 s")
            depth_msg = tester.received["depth"][0]
            stamp = _stamp_ns(depth_msg)
            self.assertTrue(tester.spin_until(
                lambda: any(_stamp_ns(m) == stamp for m in tester.received["points"])
                and any(_stamp_ns(m) == stamp for m in tester.received["regions"]), timeout=20.0),
                f"{profile}: points or regions missing for stamp {stamp}")

            # depth: REP 118 32FC1 metres, NaN invalid, the input's header
            self.assertEqual(depth_msg.header.frame_id, FRAME_ID)
            self.assertEqual(depth_msg.encoding, "32FC1")
            depth = CvBridge().imgmsg_to_cv2(depth_msg)
            self.assertEqual(depth.shape, scene.depth_m.shape)
            self.assertEqual(depth.dtype, np.float32)
            m = depth_metrics(depth, scene.depth_m)
            self.assertGreater(m.coverage, 0.5, f"{profile}: {m}")
            self.assertLess(m.abs_rel, 0.1, f"{profile}: {m}")

            # points: organised, read back by sensor_msgs_py; z of a point is the depth there
            cloud = next(c for c in tester.received["points"] if _stamp_ns(c) == stamp)
            self.assertEqual(cloud.header.frame_id, FRAME_ID)
            names = [f.name for f in cloud.fields]
            self.assertEqual(names[:3], ["x", "y", "z"])
            pts = point_cloud2.read_points(cloud, field_names=("x", "y", "z"), skip_nans=False)
            self.assertEqual(pts.shape[0], cloud.height * cloud.width)
            z = pts["z"].reshape(cloud.height, cloud.width)
            step = depth.shape[0] // cloud.height
            np.testing.assert_allclose(z, depth[::step, ::step][:cloud.height, :cloud.width],
                                       rtol=1e-6, equal_nan=True)
            xyz = point_cloud2.read_points_numpy(cloud, field_names=("x", "y", "z"),
                                                 skip_nans=True)
            self.assertGreater(len(xyz), 0.5 * cloud.height * cloud.width)

            # regions: objects on the table, each with its cloud and a verdict
            regions = next(r for r in tester.received["regions"] if _stamp_ns(r) == stamp)
            self.assertGreaterEqual(len(regions.regions), 1, f"{profile}: no region")
            for region in regions.regions:
                self.assertEqual(region.header.frame_id, FRAME_ID)
                region_xyz = point_cloud2.read_points_numpy(
                    region.cloud, field_names=("x", "y", "z"), skip_nans=True)
                self.assertEqual(len(region_xyz), region.point_count)
                self.assertTrue(np.isfinite(region_xyz).all())
                centroid = np.array([region.centroid.x, region.centroid.y, region.centroid.z])
                reach = max(region.box_size.x, region.box_size.y, region.box_size.z)
                self.assertLess(np.linalg.norm(region_xyz.mean(axis=0) - centroid), reach)

            # /diagnostics (diagnostic_updater): the node's status and the depth topic's rate
            def named(suffix):
                return [s for a in tester.received["diagnostics"] for s in a.status
                        if s.name == f"depth_perception: {suffix}"]

            self.assertTrue(tester.spin_until(
                lambda: any(kv.key == "frames processed" and int(kv.value) >= 1
                            for s in named("depth") for kv in s.values), timeout=10.0),
                f"{profile}: /diagnostics never reported a processed frame")
            status = next(s for s in reversed(named("depth"))
                          if any(kv.key == "frames processed" and int(kv.value) >= 1
                                 for kv in s.values))
            values = {kv.key: kv.value for kv in status.values}
            self.assertEqual(status.level, DiagnosticStatus.OK, values)
            self.assertEqual(values["depth source"], "stereo" if stereo else "sparse_depth")
            if not stereo:
                self.assertEqual(values["model"], "student_tabletop")
            self.assertTrue(named("depth topic status"), "no rate / stamp status for the depth topic")
            self.assertTrue(named("image input rate"), "no input rate status")
        finally:
            tester.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_every_process_exits_cleanly(self, proc_info, proc_output, profile):
        launch_testing.asserts.assertExitCodes(proc_info)
        text = "".join(event.text.decode(errors="replace") for event in proc_output)
        self.assertNotIn("Traceback", text, f"{profile}: a traceback was printed")

    def test_the_node_came_up_without_rviz(self, proc_output, profile):
        text = "".join(event.text.decode(errors="replace") for event in proc_output)
        self.assertIn("depth_perception ready", text)
