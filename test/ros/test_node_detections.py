"""depth_perception_node prompted by vision_msgs/Detection2DArray through real DDS (loopback-only
namespace): stereo depth + tiny SAM (random weights) whose masks are named by the detections.

vision_msgs is not pip-installable: these tests use the real package built from its upstream
sources by scripts/install_ros_tools.sh (scripts/netns.sh sources scripts/ros_env.sh, which puts it
on the paths). Without it they skip, or fail under DP_REQUIRE_ROS=1.

    scripts/install_ros_tools.sh && scripts/build_msgs.sh
    scripts/netns.sh .venv/bin/python -m pytest test/ros/test_node_detections.py -q
"""

from __future__ import annotations

from pathlib import Path

import conftest
import numpy as np
import pytest

from depth_perception.ros.messages import make_header, rosbags_types
from depth_perception.ros.vision_msgs import (
    HUMBLE_DEFINITIONS,
    detections_from_msg,
    detections_to_msg,
    register_vision_types,
)
from depth_perception.scene import generate_tabletop
from depth_perception.segmentation.base import Detection
from consumers import read_depth_m, read_image
from node_harness import FRAME_ID, NodeHarness
from ros_checks import skip_or_fail

NAMES = ["mug", "screwdriver", "bowl", "box", "ball", "can"]
BUILD_HINT = ("build vision_msgs from its sources with scripts/install_ros_tools.sh and run "
              "under scripts/netns.sh (it sources scripts/ros_env.sh); on a robot install "
              "ros-<distro>-vision-msgs")


def require_vision_types():
    """rclpy VisionTypes of the installed vision_msgs (4.x layout), or skip/fail with the reason."""
    conftest.require_rclpy()
    from depth_perception.ros.vision_msgs import rclpy_vision_types

    types = rclpy_vision_types()
    if types is None:
        skip_or_fail(f"vision_msgs is not importable; {BUILD_HINT}", "DP_REQUIRE_ROS_TOOLS")
    if types.layout != "humble":
        skip_or_fail("installed vision_msgs has the legacy (Foxy/Galactic) layout; "
                     "these tests need the 4.x layout (Humble and later)")
    return types


@pytest.fixture
def vision(loopback_netns):
    return require_vision_types()


@pytest.fixture(scope="module")
def scene():
    return generate_tabletop(seed=3, width=320, height=240)


@pytest.fixture(scope="module")
def scene_detections(scene):
    """One detection per object of the scene: its mask's bounding box, named from NAMES."""
    out = []
    for k, obj_id in enumerate(i for i in np.unique(scene.instance_mask) if i):
        ys, xs = np.nonzero(scene.instance_mask == obj_id)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
        out.append(Detection(box_xyxy=box, label=NAMES[k % len(NAMES)], score=0.9))
    return out


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory) -> Path:
    """A tiny SAM (the real architecture, random weights) saved as a local .pth checkpoint."""
    pytest.importorskip("segment_anything")
    import torch

    from depth_perception.segmentation.sam import build_sam_model

    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(build_sam_model("tiny").state_dict(), path)
    return path


class Harness(NodeHarness):
    """The node under test (stereo depth, SAM prompted by `detections`) plus a tester node that
    feeds it and records what it publishes."""

    def __init__(self, context, vision, checkpoint: Path):
        from diagnostic_msgs.msg import DiagnosticArray

        from depth_perception.ros.messages import rclpy_types
        from depth_perception.ros.region_messages import rclpy_region_types

        region_types = rclpy_region_types()
        assert region_types is not None, "depth_perception_msgs is needed (ros_msgs fixture)"
        parameters = {
            "stereo": True, "min_depth": 0.1, "max_depth": 5.0,
            "segmentation.source": ["sam"], "segmentation.sam.model": "tiny",
            "segmentation.sam.checkpoint": str(checkpoint),
            # Random weights give scraps of masks: unfused, every prompt keeps a region to name.
            "segmentation.fuse": False,
            "diagnostic_updater.period": 0.2,
        }
        super().__init__(
            context, parameters, publishers={"detections": vision.Detection2DArray},
            subscriptions={"regions/labels": rclpy_types().Image, "regions": region_types.GraspableRegionArray,
                           "/diagnostics": DiagnosticArray},
            tester_name="dp_detections_tester")
        self.vision = vision
        assert self.node._ready.wait(timeout=30.0), self.node.last_error
        self.wait_for_connections()

    def send_detections(self, detections: list[Detection], stamp_ns: int) -> None:
        """Publish a Detection2DArray and wait until the node has it (so it is there before the
        image it belongs to, as a detector's output would be in these tests)."""
        before = self.node._sync.stats.received["detections"]
        header = self.M.make_header(self.types, stamp_ns, FRAME_ID)
        self.pubs["detections"].publish(detections_to_msg(self.vision, detections, header))
        assert self.spin_until(
            lambda: self.node._sync.stats.received["detections"] > before, timeout=5.0), \
            "the node never received the Detection2DArray"

    def outputs_for(self, stamp_ns: int, *topics: str) -> dict[str, object]:
        """The first message on each topic with this stamp (missing topics left out)."""
        out = {}
        for topic in topics:
            for msg in self.received[topic]:
                if self.M.stamp_to_ns(msg.header.stamp) == stamp_ns:
                    out[topic] = msg
                    break
        return out

    def wait_outputs(self, stamp_ns: int, *topics: str, timeout: float = 10.0) -> dict[str, object]:
        ok = self.spin_until(lambda: len(self.outputs_for(stamp_ns, *topics)) == len(topics),
                             timeout=timeout)
        got = self.outputs_for(stamp_ns, *topics)
        assert ok, (f"only {sorted(got)} of {sorted(topics)} came back for stamp {stamp_ns}; "
                    f"node error: {self.node.last_error!r}")
        return got

    def diagnostics(self) -> dict[str, str]:
        """Key/values of the newest main status the node published."""
        for array in reversed(self.received["/diagnostics"]):
            for status in array.status:
                if status.name.endswith(": depth"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def wait_diagnostics(self, predicate, timeout: float = 3.0) -> dict[str, str]:
        assert self.spin_until(lambda: predicate(self.diagnostics()), timeout=timeout), \
            f"diagnostics never showed it; last: {self.diagnostics()}"
        return self.diagnostics()

@pytest.fixture
def harness(rclpy_context, ros_msgs, vision, sam_checkpoint):
    h = Harness(rclpy_context, vision, sam_checkpoint)
    try:
        yield h
    finally:
        h.close()


# -- the real package matches the text definitions bags use ---------------------------------------


def rich_detections() -> list[Detection]:
    return [
        Detection(box_xyxy=np.array([10.0, 20.0, 50.0, 80.0]), label="mug", score=0.9,
                  instance_id=3),
        Detection(box_xyxy=np.array([100.5, 40.25, 130.0, 60.0]), label="tasse à café",
                  score=0.4),
        Detection(label="bowl", score=0.7, instance_id=7),  # names a mask instance, no box
        Detection(box_xyxy=np.array([0.0, 0.0, 1.0, 1.0])),  # no hypothesis at all
    ]


def assert_same_cdr(fast_cdr: bytes, rosbags_cdr: bytes, typestore, typename: str) -> None:
    """Fast-CDR (rclpy) and rosbags encode the same message identically, padding aside.

    Fast-CDR leaves alignment padding uninitialised (seen here: ``55 10`` after a string) where
    rosbags writes zeros, so raw bytes may differ there and only there: same length, rosbags'
    re-encoding of the rclpy bytes equals its own bytes exactly, and every differing byte is one
    that rosbags zero-fills.
    """
    assert len(fast_cdr) == len(rosbags_cdr)
    canonical = bytes(typestore.serialize_cdr(typestore.deserialize_cdr(fast_cdr, typename),
                                              typename))
    assert canonical == rosbags_cdr
    differing = [i for i, (a, b) in enumerate(zip(fast_cdr, rosbags_cdr)) if a != b]
    assert all(rosbags_cdr[i] == 0 for i in differing), differing


@pytest.mark.parametrize("distro", ["ROS2_HUMBLE", "ROS2_JAZZY"])
def test_rclpy_classes_and_registered_definitions_give_the_same_cdr(vision, distro):
    """The same Detection2DArray built with the real package's rclpy classes and with the rosbags
    classes registered from HUMBLE_DEFINITIONS (as test_vision_msgs.py does) has the same CDR,
    both ways round, including the fields the builder leaves at zero."""
    from rclpy.serialization import deserialize_message, serialize_message

    from depth_perception.ros import messages as M

    bag_types = rosbags_types(distro)
    store = bag_types.typestore
    bag_vision = register_vision_types(store, "humble")
    stamp = 1_700_000_000_123_456_789
    typename = "vision_msgs/msg/Detection2DArray"

    ours = detections_to_msg(vision, rich_detections(), make_header(M.rclpy_types(), stamp, "cam"))
    theirs = detections_to_msg(bag_vision, rich_detections(), make_header(bag_types, stamp, "cam"))
    bag_cdr = bytes(store.serialize_cdr(theirs, typename))
    assert_same_cdr(serialize_message(ours), bag_cdr, store, typename)
    assert deserialize_message(bag_cdr, vision.Detection2DArray) == ours

    # every remaining field non-zero on the rclpy side: pose, covariance, theta, several results
    d = ours.detections[0]
    d.bbox.center.theta = 0.25
    d.results[0].pose.pose.position.x = 1.5
    d.results[0].pose.pose.orientation.w = -1.0
    d.results[0].pose.covariance = [float(i) for i in range(36)]
    second = vision.ObjectHypothesisWithPose()
    second.hypothesis.class_id, second.hypothesis.score = "cup", 0.95
    d.results.append(second)
    raw = serialize_message(ours)
    back = store.deserialize_cdr(raw, typename)
    assert_same_cdr(raw, bytes(store.serialize_cdr(back, typename)), store, typename)
    b = back.detections[0]
    assert b.bbox.center.theta == 0.25 and b.results[0].pose.pose.position.x == 1.5
    assert b.results[0].pose.pose.orientation.w == -1.0
    np.testing.assert_array_equal(b.results[0].pose.covariance, np.arange(36.0))
    assert [r.hypothesis.class_id for r in b.results] == ["mug", "cup"]
    assert back.detections[1].results[0].hypothesis.class_id == "tasse à café"
    assert detections_from_msg(back)[0].label == "cup"  # best-scoring hypothesis
    assert deserialize_message(bytes(store.serialize_cdr(back, typename)),
                               vision.Detection2DArray) == ours


def test_the_bag_definitions_are_the_real_vision_msgs(vision):
    """HUMBLE_DEFINITIONS, which bags register in the rosbags typestore (no vision_msgs there),
    define exactly the fields of the installed vision_msgs package's .msg files."""
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import get_types_from_msg

    share = Path(get_package_share_directory("vision_msgs"))
    for name, text in HUMBLE_DEFINITIONS.items():
        typename = f"vision_msgs/msg/{name}"
        real = get_types_from_msg((share / "msg" / f"{name}.msg").read_text(), typename)
        ours = get_types_from_msg(text, typename)
        assert ours[typename] == real[typename], name


# -- the node --------------------------------------------------------------------------------------


def test_regions_are_named_by_the_detections_with_the_same_stamp(harness, scene, scene_detections):
    stamp = 1_700_000_000_000_000_000
    harness.send_detections(scene_detections, stamp)
    harness.send_stereo(scene, stamp)
    got = harness.wait_outputs(stamp, "depth", "points", "regions", "regions/labels")

    assert read_depth_m(got["depth"]).shape == scene.depth_m.shape
    regions = got["regions"].regions
    by_id = {r.id: r.label for r in regions}
    # SAM numbers its masks in prompt order: region k is detection k's mask, named by its class_id
    expected = {k + 1: d.label for k, d in enumerate(scene_detections)}
    assert len(by_id) >= 3 and by_id.items() <= expected.items(), by_id
    labels = read_image(got["regions/labels"])
    assert set(np.unique(labels)) - {0} <= set(by_id)
    assert harness.node.frames_failed == 0
    diag = harness.wait_diagnostics(lambda d: d.get("frames processed") == "1")
    assert diag["segmentation"].startswith("sam"), diag


def test_detections_with_another_stamp_never_name_this_frame(harness, scene, scene_detections):
    stamp = 2_000_000_000
    stale = [Detection(d.box_xyxy, "stale " + d.label, d.score) for d in scene_detections]
    harness.send_detections(stale, stamp - 33_000_000)  # a frame that never comes
    harness.send_detections(scene_detections, stamp)
    harness.send_stereo(scene, stamp)
    got = harness.wait_outputs(stamp, "depth", "regions")
    labels = {r.label for r in got["regions"].regions}
    assert labels and labels <= {d.label for d in scene_detections}, labels
    # the frame counts as processed once its last output (the scene cloud) is out
    diag = harness.wait_diagnostics(lambda d: d.get("frames processed") == "1")
    assert diag.get("frames processed") == "1" and diag.get("frames failed") == "0", diag


def test_detections_that_match_no_image_are_counted(harness, scene, scene_detections):
    stamp = 3_000_000_000
    harness.send_detections(scene_detections, stamp - 33_000_000)
    harness.send_detections(scene_detections, stamp)
    harness.send_stereo(scene, stamp)
    harness.wait_outputs(stamp, "depth")

    def counted(diag):
        return any("detections" in k and any(w in k for w in ("unmatched", "dropped", "stale"))
                   and v.isdigit() and int(v) >= 1 for k, v in diag.items())

    harness.wait_diagnostics(counted)


def test_an_image_without_detections_still_gives_depth_and_the_scene_cloud(harness, scene):
    stamp = 4_000_000_000
    harness.send_stereo(scene, stamp)
    got = harness.wait_outputs(stamp, "depth", "points", timeout=4.0)
    assert read_depth_m(got["depth"]).shape == scene.depth_m.shape


def test_an_empty_detection_array_gives_depth_cloud_no_regions_and_says_why(harness, scene):
    stamp = 5_000_000_000
    harness.send_detections([], stamp)
    harness.send_stereo(scene, stamp)
    got = harness.wait_outputs(stamp, "depth", "points", "regions", "regions/labels")
    assert np.isfinite(read_depth_m(got["depth"])).mean() > 0.5
    assert (got["points"].height, got["points"].width) == scene.depth_m.shape
    assert list(got["regions"].regions) == []
    assert not read_image(got["regions/labels"]).any()
    diag = harness.wait_diagnostics(lambda d: d.get("frames processed") == "1")
    assert "sam: no detections to prompt it" in diag["segmentation"], diag
    assert diag["last error"] == ""


def out_of_image(scene, scene_detections) -> list[Detection]:
    """A box wholly beyond the bottom-right corner, one straddling the top-left, one inside."""
    h, w = scene.depth_m.shape
    return [
        Detection(np.array([w + 50.0, h + 50.0, w + 120.0, h + 110.0]), "far away", 0.9),
        Detection(np.array([-60.0, -40.0, 60.0, 50.0]), "partly outside", 0.8),
        scene_detections[0],
    ]


def test_boxes_outside_the_image_do_not_cost_the_frame(harness, scene, scene_detections):
    stamp = 6_000_000_000
    harness.send_detections(out_of_image(scene, scene_detections), stamp)
    harness.send_stereo(scene, stamp)
    got = harness.wait_outputs(stamp, "depth", "points", "regions")
    assert read_depth_m(got["depth"]).shape == scene.depth_m.shape
    assert harness.node.frames_failed == 0 and harness.node.last_error == ""


def test_a_box_outside_the_image_is_named_in_diagnostics_and_gives_no_region(
        harness, scene, scene_detections):
    stamp = 7_000_000_000
    harness.send_detections(out_of_image(scene, scene_detections), stamp)
    harness.send_stereo(scene, stamp)
    got = harness.wait_outputs(stamp, "depth", "regions")
    labels = {r.label for r in got["regions"].regions}
    assert "far away" not in labels, labels
    assert "partly outside" in labels  # clipped to the image, still used
    diag = harness.wait_diagnostics(lambda d: d.get("frames processed") == "1")
    assert "far away" in diag["segmentation"] and "outside" in diag["segmentation"], diag


def test_a_malformed_box_costs_only_that_detection(harness, scene, scene_detections):
    stamp = 8_000_000_000
    inverted = Detection(np.array([200.0, 150.0, 100.0, 50.0]), "inverted", 0.9)  # size -100 x -100
    harness.send_detections([inverted, scene_detections[0]], stamp)
    harness.send_stereo(scene, stamp)
    got = harness.wait_outputs(stamp, "depth", "points", "regions", timeout=4.0)
    assert "inverted" not in {r.label for r in got["regions"].regions}
    diag = harness.wait_diagnostics(lambda d: d.get("frames processed") == "1")
    assert "negative" in diag["segmentation"] or "negative" in diag["last error"], diag
