"""depth_perception_node through real DDS (loopback-only namespace): stereo in → depth and points out."""

from __future__ import annotations

import time

import numpy as np
import pytest

from depth_perception.camera import CameraModel
from depth_perception.metrics import depth_metrics
from depth_perception.regions import kernel_available
from depth_perception.scene import generate_tabletop
from node_harness import FRAME_ID
from node_harness import NodeHarness as Harness
from consumers import read_cloud, read_depth_m, read_image, read_xyz


@pytest.fixture(scope="module")
def scene():
    return generate_tabletop(seed=3, width=320, height=240)


@pytest.fixture
def harness(rclpy_context):
    h = Harness(rclpy_context, {"stereo": True, "min_depth": 0.1, "max_depth": 5.0})
    try:
        # the worker builds its pipeline (and any model) first: tests patch the final one
        assert h.node._ready.wait(timeout=30.0), h.node.last_error
        h.wait_for_connections()
        yield h
    finally:
        h.close()


def test_stereo_frame_gives_depth_info_and_points_with_the_input_header(harness, scene):
    stamp = 1_700_000_000_250_000_000
    harness.send_stereo(scene, stamp)
    assert harness.spin_until(lambda: all(harness.received.values())), \
        f"nothing came back; node errors: {harness.node.last_error!r}"

    depth_msg = harness.received["depth"][0]
    info_msg = harness.received["depth/camera_info"][0]
    cloud_msg = harness.received["points"][0]
    for msg in (depth_msg, info_msg, cloud_msg):
        assert harness.M.stamp_to_ns(msg.header.stamp) == stamp  # never restamped with "now"
        assert msg.header.frame_id == FRAME_ID

    assert depth_msg.encoding == "32FC1"
    depth = read_depth_m(depth_msg)
    assert depth.shape == scene.depth_m.shape
    m = depth_metrics(depth, scene.depth_m)
    assert m.abs_rel < 0.05 and m.coverage > 0.5, m

    assert (info_msg.width, info_msg.height) == (320, 240)
    np.testing.assert_allclose(np.asarray(info_msg.k).reshape(3, 3), scene.K)

    assert (cloud_msg.height, cloud_msg.width) == scene.depth_m.shape  # organised, height-major
    xyz = read_xyz(cloud_msg)
    np.testing.assert_allclose(xyz[..., 2], depth, equal_nan=True)
    # geometric segmentation is on by default: the cloud carries the instance id of each point
    assert [f.name for f in cloud_msg.fields] == ["x", "y", "z", "rgb", "label"]


def test_bad_frames_are_logged_and_the_next_good_frame_is_processed(harness, scene):
    node = harness.node
    harness.send_stereo(scene, 1_000_000_000, left_encoding="32FC1")  # not a colour encoding
    assert harness.spin_until(lambda: node.frames_failed == 1, timeout=5.0)
    assert "encoding" in node.last_error

    harness.send_stereo(scene, 3_000_000_000, left_encoding="bgr8")
    assert harness.spin_until(lambda: len(harness.received["depth"]) == 1, timeout=10.0)
    assert harness.M.stamp_to_ns(harness.received["depth"][0].header.stamp) == 3_000_000_000
    assert harness.spin_until(lambda: node.frames_processed == 1, timeout=2.0)


def test_an_image_takes_the_latest_camera_info_of_its_size(harness, scene):
    """camera_info.pairing latest (the default): a CameraInfo of another size, even one stamped
    with the image, describes other images; this one keeps the calibration of its own size."""
    node = harness.node
    harness.send_stereo(scene, 1_000_000_000)
    assert harness.spin_until(lambda: node.frames_processed == 1, timeout=10.0), node.last_error
    harness.send_stereo(scene, 2_000_000_000, info_size=(640, 480))
    assert harness.spin_until(lambda: node.frames_processed == 2, timeout=10.0), node.last_error
    assert node.frames_failed == 0
    assert sorted(node._camera_infos["camera_info"].sizes()) == [(320, 240), (640, 480)]


def test_exact_pairing_takes_the_camera_info_with_the_image_stamp(rclpy_context, scene):
    h = Harness(rclpy_context, {"stereo": True, "max_depth": 5.0, "camera_info.pairing": "exact"})
    try:
        assert h.node._ready.wait(timeout=30.0), h.node.last_error
        h.wait_for_connections()
        h.send_stereo(scene, 2_000_000_000, info_size=(640, 480))  # CameraInfo of another size
        assert h.spin_until(lambda: h.node.frames_failed == 1, timeout=5.0)
        assert "640x480" in h.node.last_error and "320x240" in h.node.last_error
    finally:
        h.close()


def test_camera_info_far_from_the_image_or_of_no_image_size_is_reported(rclpy_context, scene,
                                                                         capfd):
    """Age warnings in the log (throttled) and /diagnostics; an image of a size no CameraInfo has
    described fails naming the topic and the sizes there are."""
    from diagnostic_msgs.msg import DiagnosticArray

    h = Harness(rclpy_context, {"stereo": True, "max_depth": 5.0, "camera_info.max_age": 0.5})
    try:
        node, t, M = h.node, h.types, h.M
        assert node._ready.wait(timeout=30.0), node.last_error
        h.wait_for_connections()
        got = []
        h.tester.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
        h.send_stereo(scene, 1_000_000_000, info_size=(640, 480))  # no 320x240 CameraInfo yet
        assert h.spin_until(lambda: node.frames_failed == 1, timeout=10.0)
        assert "no CameraInfo for a 320x240 image yet on /camera_info (have: 640x480)" in \
            node.last_error
        h.send_stereo(scene, 2_000_000_000)
        assert h.spin_until(lambda: node.frames_processed == 1, timeout=10.0), node.last_error
        header = M.make_header(t, 4_000_000_000, "camera_color_optical_frame")  # the image only
        h.pubs["image"].publish(M.numpy_to_image(t, scene.rgb, "rgb8", header))
        h.pubs["right/image"].publish(M.numpy_to_image(t, scene.right_rgb, "rgb8", header))
        assert h.spin_until(lambda: node.frames_processed == 2, timeout=10.0), node.last_error
        assert node._camera_infos["camera_info"].stats.stale == 1
        assert "CameraInfo on /camera_info is 2.00 s away from the 320x240 image" in \
            capfd.readouterr().err

        def camera_info_status():
            return [s for array in got for s in array.status if s.name.endswith("camera_info")]

        assert h.spin_until(lambda: any(s.level == b"\x01" for s in camera_info_status()), 5.0)
        values = {kv.key: kv.value for kv in camera_info_status()[-1].values}
        assert values["camera_info age of last pairing (s)"] == "2.000"
        assert values["camera_info pairings older than camera_info.max_age"] == "1"
        assert values["camera_info images without a CameraInfo of their size"] == "1"
    finally:
        h.close()


def test_parameters_are_validated_at_run_time(harness):
    from rclpy.parameter import Parameter

    node = harness.node
    ok = node.set_parameters([Parameter("max_depth", value=3.0)])[0]
    assert ok.successful
    assert node._pipeline.config.max_depth_m == 3.0

    bad = node.set_parameters([Parameter("min_depth", value=4.0)])[0]
    assert not bad.successful and "min_depth" in bad.reason
    assert node.set_parameters([Parameter("depth_encoding", value="8UC3")])[0].successful is False
    assert node.set_parameters([Parameter("stereo.num_disparities", value=20)])[0].successful is False
    assert node.set_parameters([Parameter("stereo", value=False)])[0].successful is False  # read-only
    assert node._pipeline.config.max_depth_m == 3.0


def test_a_slow_stage_drops_stale_frames_and_the_latest_frame_wins(harness, scene):
    node = harness.node
    real_process = node._pipeline.process

    def slow_process(frame, on_depth=None):
        time.sleep(0.25)
        return real_process(frame, on_depth)

    node._pipeline.process = slow_process
    stamps = [10_000_000_000 + i * 20_000_000 for i in range(15)]
    for stamp in stamps:  # 50 Hz into a 4 Hz stage
        harness.send_stereo(scene, stamp)
        harness.executor.spin_once(timeout_sec=0.02)
    last = stamps[-1]
    assert harness.spin_until(
        lambda: any(harness.M.stamp_to_ns(m.header.stamp) == last for m in harness.received["depth"]),
        timeout=5.0)
    assert harness.spin_until(lambda: len(node._latencies_ms) > 0, timeout=2.0)
    assert node.frames_processed < len(stamps) / 2
    # Some frames may already be dropped by the best-effort sensor-data QoS before the node sees
    # them; those the node did see but could not process in time are counted.
    assert node.frames_dropped >= 3
    assert node.frames_processed + node.frames_dropped <= len(stamps)
    assert max(node._latencies_ms) < 1500  # bounded: no backlog was worked through


def test_diagnostics_report_counts_and_stage_latency(harness, scene):
    from diagnostic_msgs.msg import DiagnosticArray

    got = []
    harness.tester.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    harness.send_stereo(scene, 5_000_000_000)
    assert harness.spin_until(lambda: harness.node.frames_processed == 1, timeout=10.0)

    def processed_reported():
        return any(kv.key == "frames processed" and kv.value == "1"
                   for array in got for status in array.status for kv in status.values)

    assert harness.spin_until(processed_reported, timeout=3.0)
    keys = {kv.key: kv.value for kv in got[-1].status[0].values}
    assert keys["depth source"] == "stereo"
    assert float(keys["depth latency mean (ms)"]) > 0
    # which regions implementation runs: the compiled kernel wherever the package built it
    assert keys["regions implementation"] == ("compiled" if kernel_available() else "numpy")


def test_compressed_input(rclpy_context, scene):
    h = Harness(rclpy_context, {"stereo": True, "image_transport": "compressed", "max_depth": 5.0})
    try:
        t, M = h.types, h.M
        qos = 10
        left_pub = h.tester.create_publisher(t.CompressedImage, "image/compressed", qos)
        right_pub = h.tester.create_publisher(t.CompressedImage, "right/image/compressed", qos)
        assert h.spin_until(lambda: left_pub.get_subscription_count() > 0
                            and right_pub.get_subscription_count() > 0, timeout=5.0)
        stamp = 7_000_000_000
        header = M.make_header(t, stamp, FRAME_ID)
        hh, ww = scene.depth_m.shape
        P_right = np.hstack([scene.K, [[-scene.K[0, 0] * scene.baseline_m], [0.0], [0.0]]])
        left_pub.publish(M.rgb_to_compressed(t, scene.rgb, header, "png"))
        right_pub.publish(M.rgb_to_compressed(t, scene.right_rgb, header, "png"))
        h.pubs["camera_info"].publish(
            M.model_to_camera_info(t, CameraModel(width=ww, height=hh, K=scene.K), header))
        h.pubs["right/camera_info"].publish(M.model_to_camera_info(
            t, CameraModel(width=ww, height=hh, K=scene.K, P=P_right), header))
        assert h.spin_until(lambda: h.received["depth"], timeout=10.0), h.node.last_error
        depth = read_depth_m(h.received["depth"][0])
        assert depth_metrics(depth, scene.depth_m).abs_rel < 0.05
    finally:
        h.close()


def test_masks_from_another_node_give_regions_labels_markers_and_region_clouds(rclpy_context, scene):
    h = Harness(rclpy_context, {"stereo": True, "segmentation.source": ["topic"], "max_depth": 5.0})
    try:
        t, M = h.types, h.M
        from depth_perception.ros.region_messages import rclpy_marker_types, rclpy_region_types

        mt, rt = rclpy_marker_types(), rclpy_region_types()
        got = {"regions/labels": [], "regions/points": [], "regions/markers": [], "regions": []}
        h.tester.create_subscription(t.Image, "regions/labels", got["regions/labels"].append, 10)
        h.tester.create_subscription(t.PointCloud2, "regions/points", got["regions/points"].append, 10)
        h.tester.create_subscription(mt.MarkerArray, "regions/markers", got["regions/markers"].append, 10)
        if rt is not None:
            h.tester.create_subscription(rt.GraspableRegionArray, "regions", got["regions"].append, 10)
        masks_pub = h.tester.create_publisher(t.Image, "masks", 10)
        h.wait_for_connections()
        assert h.spin_until(lambda: masks_pub.get_subscription_count() > 0, timeout=5.0)
        stamp = 9_000_000_000
        masks_pub.publish(M.numpy_to_image(t, scene.instance_mask.astype(np.uint16), "16UC1",
                                           M.make_header(t, stamp, FRAME_ID)))
        h.send_stereo(scene, stamp)
        wanted = [k for k in got if k != "regions" or rt is not None]
        assert h.spin_until(lambda: all(got[k] for k in wanted), timeout=10.0), h.node.last_error
        labels = read_image(got["regions/labels"][0])
        assert labels.shape == scene.depth_m.shape
        assert set(np.unique(labels)) - {0} <= set(np.unique(scene.instance_mask)) - {0}
        assert M.stamp_to_ns(got["regions/labels"][0].header.stamp) == stamp
        ids = read_cloud(got["regions/points"][0])["label"]
        assert set(np.unique(ids)) <= set(np.unique(scene.instance_mask)) - {0}
        markers = got["regions/markers"][0].markers
        assert markers[0].action == mt.Marker.DELETEALL and len(markers) > 1
        if rt is not None:
            array = got["regions"][0]
            assert M.stamp_to_ns(array.header.stamp) == stamp
            ids = {r.id for r in array.regions}
            assert ids <= set(np.unique(scene.instance_mask)) - {0} and len(ids) >= 3
            assert all(r.depth_source == "stereo" for r in array.regions)
    finally:
        h.close()


def test_a_mask_in_an_unsupported_encoding_costs_only_the_masks(rclpy_context, scene):
    h = Harness(rclpy_context, {"stereo": True, "segmentation.source": ["topic"], "max_depth": 5.0})
    try:
        t, M = h.types, h.M
        masks_pub = h.tester.create_publisher(t.Image, "masks", 10)
        h.wait_for_connections()
        assert h.spin_until(lambda: masks_pub.get_subscription_count() > 0, timeout=5.0)
        stamp = 9_500_000_000
        masks_pub.publish(M.numpy_to_image(t, scene.depth_m, "32FC1",
                                           M.make_header(t, stamp, FRAME_ID)))
        h.send_stereo(scene, stamp)
        # the worker records the segmentation note just after publishing: wait for both
        assert h.spin_until(lambda: h.received["depth"] and h.received["points"]
                            and h.node._last_segmentation, timeout=10.0), h.node.last_error
        assert M.stamp_to_ns(h.received["depth"][0].header.stamp) == stamp
        assert h.node.frames_failed == 0
        assert "masks ignored" in h.node._last_segmentation
        assert "'32FC1'" in h.node._last_segmentation
    finally:
        h.close()


def test_monocular_model_with_sparse_depth_publishes_depth_and_metric_diagnostics(rclpy_context,
                                                                                 scene):
    from diagnostic_msgs.msg import DiagnosticArray

    h = Harness(rclpy_context, {"model": "depth_anything_v2_small_tiny", "random_init": True,
                                "metric.mode": "sparse_depth", "backend": "torch"})
    try:
        t, M = h.types, h.M
        diags = []
        h.tester.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        sparse_pub = h.tester.create_publisher(t.Image, "sparse_depth", 10)
        assert h.spin_until(lambda: sparse_pub.get_subscription_count() > 0
                            and h.pubs["image"].get_subscription_count() > 0, timeout=5.0)
        assert h.node._ready.wait(timeout=60.0), h.node.last_error
        stamp = 11_000_000_000
        header = M.make_header(t, stamp, FRAME_ID)
        hh, ww = scene.depth_m.shape
        sparse = np.zeros((hh, ww), np.uint16)
        sparse[::8, ::8] = np.round(scene.depth_m[::8, ::8] * 1000).astype(np.uint16)
        h.pubs["image"].publish(M.numpy_to_image(t, scene.rgb, "rgb8", header))
        h.pubs["camera_info"].publish(
            M.model_to_camera_info(t, CameraModel(width=ww, height=hh, K=scene.K), header))
        sparse_pub.publish(M.numpy_to_image(t, sparse, "16UC1", header))
        assert h.spin_until(lambda: h.received["depth"], timeout=30.0), h.node.last_error
        depth_msg = h.received["depth"][0]
        assert M.stamp_to_ns(depth_msg.header.stamp) == stamp
        assert (depth_msg.height, depth_msg.width) == (hh, ww)

        def metric_status():
            # the status is there from the start; its values once a frame has been fitted
            return [s for a in diags for s in a.status
                    if s.name.endswith("metric scale") and s.values]

        assert h.spin_until(lambda: metric_status(), timeout=3.0)
        values = {kv.key: kv.value for kv in metric_status()[-1].values}
        assert values["mode"] == "sparse_depth" and "scale" in values
        main = [s for a in diags for s in a.status if s.name.endswith(": depth")][-1]
        keys = {kv.key: kv.value for kv in main.values}
        assert keys["model"] == "depth_anything_v2_small_tiny" and keys["backend"] == "torch"
    finally:
        h.close()


def test_a_relative_model_without_a_metric_signal_is_an_error_naming_what_to_give(rclpy_context,
                                                                                  scene):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    # metric.mode auto (the default) and nothing on sparse_depth / lidar_points, no camera height
    h = Harness(rclpy_context, {"model": "depth_anything_v2_small_tiny", "random_init": True,
                                "backend": "torch"})
    try:
        t, M = h.types, h.M
        diags = []
        h.tester.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        assert h.spin_until(lambda: h.pubs["image"].get_subscription_count() > 0
                            and h.pubs["camera_info"].get_subscription_count() > 0, timeout=5.0)
        assert h.node._ready.wait(timeout=60.0), h.node.last_error
        stamp = 12_000_000_000
        header = M.make_header(t, stamp, FRAME_ID)
        hh, ww = scene.depth_m.shape
        h.pubs["image"].publish(M.numpy_to_image(t, scene.rgb, "rgb8", header))
        h.pubs["camera_info"].publish(
            M.model_to_camera_info(t, CameraModel(width=ww, height=hh, K=scene.K), header))
        assert h.spin_until(lambda: h.received["depth"] and h.node._no_depth, timeout=30.0), \
            h.node.last_error
        assert np.isnan(read_depth_m(h.received["depth"][0])).all()  # published, and all invalid

        def depth_status():
            return [s for a in diags for s in a.status
                    if s.name.endswith(": depth") and s.level == DiagnosticStatus.ERROR]

        assert h.spin_until(depth_status, timeout=3.0)
        message = depth_status()[-1].message
        for words in ("no valid depth", "metric.mode auto", "`sparse_depth`", "`lidar_points`",
                      "metric.camera_height"):
            assert words in message, message
        values = {kv.key: kv.value for kv in depth_status()[-1].values}
        assert values["camera model"].startswith("raw: rays from K")  # `/image`: no name hint
    finally:
        h.close()


@pytest.mark.parametrize("reliability", ["best_effort", "reliable"])
def test_input_qos_follows_the_qos_parameters(rclpy_context, reliability):
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    from depth_perception.ros.node import DepthPerceptionNode

    node = DepthPerceptionNode(context=rclpy_context, parameter_overrides=[
        Parameter("qos.reliability", value=reliability), Parameter("qos.depth", value=2)])
    try:
        (info,) = node.get_subscriptions_info_by_topic("/camera_info")
        assert info.qos_profile.reliability == {"best_effort": ReliabilityPolicy.BEST_EFFORT,
                                                "reliable": ReliabilityPolicy.RELIABLE}[reliability]
        (sub,) = [s for s in node.subscriptions if s.topic_name == "/camera_info"]
        assert sub.qos_profile.depth == 2  # history depth is local: the graph does not carry it
    finally:
        node.destroy_node()


def test_input_and_output_qos_can_be_overridden_by_parameters(rclpy_context):
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    from depth_perception.ros.node import DepthPerceptionNode

    node = DepthPerceptionNode(context=rclpy_context, parameter_overrides=[
        Parameter("qos_overrides./image.subscription.reliability", value="reliable"),
        Parameter("qos_overrides./depth.publisher.reliability", value="best_effort")])
    try:
        info = node.get_subscriptions_info_by_topic("/image")
        assert info and info[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
        depth_pub = node.get_publishers_info_by_topic("/depth")[0]
        assert depth_pub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    finally:
        node.destroy_node()


def test_node_runs_with_standard_messages_only_when_the_interface_package_is_absent(loopback_netns):
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if "install/msgs" not in p)
    hidden = subprocess.run([sys.executable, "-c", "import depth_perception_msgs.msg"], env=env,
                            capture_output=True, timeout=60)
    if hidden.returncode == 0:
        pytest.skip("depth_perception_msgs is installed outside install/msgs: cannot hide it")
    script = (
        "import rclpy\n"
        "from rclpy.context import Context\n"
        "from depth_perception.ros.node import DepthPerceptionNode\n"
        "c = Context(); rclpy.init(context=c)\n"
        "n = DepthPerceptionNode(context=c)\n"
        "names = {t for t, _ in n.get_publisher_names_and_types_by_node('depth_perception', '/')}\n"
        "print('PUBLISHES', sorted(names))\n"
        "n.destroy_node(); rclpy.try_shutdown(context=c)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "depth_perception_msgs is not available" in proc.stderr
    assert "'/depth'" in proc.stdout and "'/regions/markers'" in proc.stdout
    assert "'/regions'" not in proc.stdout
