"""depth_perception_msgs: generated classes, CDR bytes, and a real DDS round trip.

Needs the ROS 2 wheels (requirements/ros.txt) and the built interface package
(scripts/build_msgs.sh); the DDS tests also need a loopback-only network namespace:

    scripts/netns.sh .venv/bin/python -m pytest test/ros -q
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
MSG_DIR = REPO / "msg" / "msg"
TOPIC = "regions"
# Points of the test cloud (x, y, z in metres); float32-exact so that messages compare with ==.
POINTS = np.array(
    [[0.125, -0.25, 0.5], [0.1875, -0.25, 0.5], [0.125, -0.1875, 0.625], [0.25, -0.125, 0.75]],
    dtype=np.float32,
)


def make_region_array():
    """A GraspableRegionArray with one fully populated region (rclpy message classes)."""
    from builtin_interfaces.msg import Time
    from depth_perception_msgs.msg import GraspableRegion, GraspableRegionArray
    from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
    from sensor_msgs.msg import PointCloud2, PointField, RegionOfInterest
    from std_msgs.msg import Header

    header = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id="camera_color_optical_frame")
    fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, name in enumerate("xyz")
    ]
    cloud = PointCloud2(
        header=header,
        height=1,
        width=len(POINTS),
        fields=fields,
        is_bigendian=False,
        point_step=12,
        row_step=12 * len(POINTS),
        data=POINTS.tobytes(),
        is_dense=True,
    )
    region = GraspableRegion(
        header=header,
        id=7,
        label="mug",
        score=0.875,
        roi=RegionOfInterest(x_offset=100, y_offset=50, width=64, height=48, do_rectify=False),
        cloud=cloud,
        centroid=Point(x=0.171875, y=-0.203125, z=0.59375),
        box_pose=Pose(position=Point(x=0.1875, y=-0.1875, z=0.625), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
        box_size=Vector3(x=0.125, y=0.125, z=0.25),
        approach=Vector3(x=0.0, y=0.0, z=1.0),
        grasp_width=0.0625,
        graspable=False,
        verdict=GraspableRegion.VERDICT_TOO_WIDE,
        reason="0.125 m across, gripper opens 0.08 m",
        point_count=len(POINTS),
        depth_source="sparse_depth",
        depth_confidence=0.75,
    )
    return GraspableRegionArray(header=header, regions=[region])


def check_received(msg, sent) -> None:
    """Field-by-field checks (readable failures), then whole-message equality."""
    assert msg.header.stamp.sec == 1700000000 and msg.header.stamp.nanosec == 123456789
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert len(msg.regions) == 1
    r, s = msg.regions[0], sent.regions[0]
    assert (r.id, r.label, r.verdict, r.graspable) == (7, "mug", r.VERDICT_TOO_WIDE, False)
    assert (r.score, r.grasp_width, r.depth_confidence) == (0.875, 0.0625, 0.75)
    assert (r.reason, r.depth_source, r.point_count) == (s.reason, "sparse_depth", 4)
    assert (r.roi.x_offset, r.roi.y_offset, r.roi.width, r.roi.height) == (100, 50, 64, 48)
    assert (r.centroid.x, r.centroid.y, r.centroid.z) == (0.171875, -0.203125, 0.59375)
    assert r.box_pose == s.box_pose and r.box_size == s.box_size and r.approach == s.approach
    assert [f.name for f in r.cloud.fields] == ["x", "y", "z"]
    assert (r.cloud.width, r.cloud.height, r.cloud.point_step) == (4, 1, 12)
    points = np.frombuffer(bytes(r.cloud.data), dtype=np.float32).reshape(-1, 3)
    np.testing.assert_array_equal(points, POINTS)
    assert msg == sent


def test_generated_classes(ros_msgs):
    region = ros_msgs.GraspableRegion()
    assert [
        region.VERDICT_GRASPABLE,
        region.VERDICT_TOO_WIDE,
        region.VERDICT_TOO_FEW_POINTS,
        region.VERDICT_OUT_OF_RANGE,
        region.VERDICT_DEGENERATE,
    ] == [0, 1, 2, 3, 4]
    types = ros_msgs.GraspableRegion.get_fields_and_field_types()
    assert types["id"] == "uint16" and types["verdict"] == "uint8" and types["point_count"] == "uint32"
    assert types["cloud"] == "sensor_msgs/PointCloud2" and types["box_pose"] == "geometry_msgs/Pose"
    assert types["score"] == "float" and types["depth_confidence"] == "float"
    assert ros_msgs.GraspableRegionArray.get_fields_and_field_types()["regions"] == (
        "sequence<depth_perception_msgs/GraspableRegion>"
    )


def test_cdr_bytes_match_rosbags_typestore(ros_msgs):
    """rclpy's CDR and the rosbags typestore (used by bag processing) read each other's bytes.

    The byte strings have the same length but are not compared byte for byte: Fast CDR leaves
    alignment padding uninitialised, so it may hold garbage where rosbags writes zeros.
    """
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for name in ("GraspableRegion", "GraspableRegionArray"):
        types.update(get_types_from_msg((MSG_DIR / f"{name}.msg").read_text(), f"depth_perception_msgs/msg/{name}"))
    store.register(types)
    typename = "depth_perception_msgs/msg/GraspableRegionArray"

    sent = make_region_array()
    raw = serialize_message(sent)
    decoded = store.deserialize_cdr(raw, typename)
    region = decoded.regions[0]
    assert (region.id, region.label, region.verdict, region.point_count) == (7, "mug", 1, 4)
    assert region.cloud.data.tobytes() == POINTS.tobytes()
    from_rosbags = store.serialize_cdr(decoded, typename).tobytes()
    assert len(from_rosbags) == len(raw)
    assert deserialize_message(from_rosbags, ros_msgs.GraspableRegionArray) == sent
    assert store.serialize_cdr(store.deserialize_cdr(from_rosbags, typename), typename).tobytes() == from_rosbags


def _spin_until(executor, done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return done()


def test_publish_and_receive_between_nodes(rclpy_context, ros_msgs):
    """Two nodes in one process: publisher → DDS → subscriber, spun by one executor."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    pub_node = rclpy.create_node("dp_test_region_pub", context=rclpy_context)
    sub_node = rclpy.create_node("dp_test_region_sub", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    try:
        received = []
        sub_node.create_subscription(ros_msgs.GraspableRegionArray, TOPIC, received.append, 10)
        publisher = pub_node.create_publisher(ros_msgs.GraspableRegionArray, TOPIC, 10)
        executor.add_node(pub_node)
        executor.add_node(sub_node)
        assert _spin_until(executor, lambda: publisher.get_subscription_count() > 0, 5.0), "subscriber never matched"

        sent = make_region_array()
        deadline = time.monotonic() + 5.0
        while not received and time.monotonic() < deadline:
            publisher.publish(sent)
            _spin_until(executor, lambda: bool(received), 0.5)
        assert received, "no GraspableRegionArray received within 5 s"
        check_received(received[0], sent)
    finally:
        executor.shutdown(timeout_sec=1.0)
        pub_node.destroy_node()
        sub_node.destroy_node()


PUBLISHER_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys, time
    sys.path[:0] = [{test_dir!r}]
    import conftest
    if not conftest.in_loopback_only_netns():
        sys.exit("publisher: not in a loopback-only network namespace")
    spec = importlib.util.spec_from_file_location("dp_test_custom_msgs", {test_file!r})
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import rclpy
    from depth_perception_msgs.msg import GraspableRegionArray
    rclpy.init()
    node = rclpy.create_node("dp_test_region_pub_process")
    pub = node.create_publisher(GraspableRegionArray, {topic!r}, 10)
    msg = mod.make_region_array()
    # Publish until the test's subscriber has come and gone (or 15 s), then exit cleanly so that
    # Fast DDS removes its shared-memory files.
    deadline, seen = time.monotonic() + 15.0, False
    while time.monotonic() < deadline:
        matched = pub.get_subscription_count() > 0
        if seen and not matched:
            break
        seen = seen or matched
        pub.publish(msg)
        time.sleep(0.05)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_receive_from_another_process(rclpy_context, ros_msgs):
    """A publisher in a child process (same namespace): the message crosses a real DDS transport."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    topic = TOPIC + "_ipc"
    code = PUBLISHER_SCRIPT.format(test_dir=str(Path(__file__).parent), test_file=__file__, topic=topic)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    node = rclpy.create_node("dp_test_region_sub_process", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    try:
        received = []
        node.create_subscription(ros_msgs.GraspableRegionArray, topic, received.append, 10)
        executor.add_node(node)
        got = _spin_until(executor, lambda: bool(received) or proc.poll() is not None, 10.0)
        if not received:
            proc.kill()
            output = proc.communicate(timeout=5)[0].decode(errors="replace")
            pytest.fail(f"nothing received from the publisher process (got={got}); its output:\n{output}")
        check_received(received[0], make_region_array())
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()  # the publisher process sees the subscriber go and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()
