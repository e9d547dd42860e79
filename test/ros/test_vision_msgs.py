"""vision_msgs/Detection2DArray from registered .msg definitions: CDR round trip and duck-typed
parsing of both layouts (4.x: Humble/Jazzy; legacy 2.x/3.x: Foxy/Galactic)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest

from depth_perception.ros.messages import MessageError, make_header, rosbags_types
from depth_perception.ros.vision_msgs import (
    box_xyxy,
    boxes_from_detections,
    detections_from_msg,
    detections_to_msg,
    register_vision_types,
)
from depth_perception.segmentation.base import Detection

DETECTIONS = [
    Detection(box_xyxy=np.array([10.0, 20.0, 50.0, 80.0]), label="mug", score=0.9, instance_id=3),
    Detection(box_xyxy=np.array([100.5, 40.25, 130.0, 60.0]), label="screwdriver", score=0.4),
    Detection(label="bowl", score=0.7, instance_id=7),  # names a mask instance, no box
]


@pytest.mark.parametrize("distro,layout", [("ROS2_HUMBLE", "humble"), ("ROS2_JAZZY", "humble"),
                                           ("ROS2_FOXY", "legacy")])
def test_cdr_round_trip(distro, layout):
    types = rosbags_types(distro)
    vt = register_vision_types(types.typestore, layout)
    header = make_header(types, 1_700_000_000_123_456_789, "camera_optical")
    msg = detections_to_msg(vt, DETECTIONS, header)
    typename = "vision_msgs/msg/Detection2DArray"
    raw = types.typestore.serialize_cdr(msg, typename)
    back = types.typestore.deserialize_cdr(raw, typename)
    assert back.header.stamp.nanosec == 123_456_789 and back.header.frame_id == "camera_optical"
    parsed = detections_from_msg(back)
    assert [d.label for d in parsed] == ["mug", "screwdriver", "bowl"]
    assert [d.instance_id for d in parsed] == [3, None, 7]
    np.testing.assert_allclose([d.score for d in parsed], [0.9, 0.4, 0.7])
    np.testing.assert_allclose(parsed[0].box_xyxy, DETECTIONS[0].box_xyxy)
    np.testing.assert_allclose(parsed[1].box_xyxy, DETECTIONS[1].box_xyxy)
    assert parsed[2].box_xyxy is None
    boxes, labels, scores = boxes_from_detections(parsed)
    assert boxes.shape == (2, 4) and labels == ["mug", "screwdriver"]


def test_layouts_differ_where_the_distros_do():
    humble = register_vision_types(rosbags_types("ROS2_HUMBLE").typestore, "humble")
    legacy = register_vision_types(rosbags_types("ROS2_FOXY").typestore, "legacy")
    h = detections_to_msg(humble, DETECTIONS[:1], make_header(rosbags_types("ROS2_HUMBLE"), 0, "c"))
    g = detections_to_msg(legacy, DETECTIONS[:1], make_header(rosbags_types("ROS2_FOXY"), 0, "c"))
    assert h.detections[0].bbox.center.position.x == 30.0 and h.detections[0].results[0].hypothesis.class_id == "mug"
    assert g.detections[0].bbox.center.x == 30.0 and g.detections[0].results[0].id == "mug"
    assert h.detections[0].id == "3" and g.detections[0].tracking_id == "3"


def test_duck_typed_parsing_of_plain_objects_like_rclpy_messages():
    """Anything with the fields parses: rclpy classes are read the same way."""
    rotated = NS(center=NS(position=NS(x=50.0, y=50.0), theta=np.pi / 2), size_x=40.0, size_y=10.0)
    det = NS(results=[NS(hypothesis=NS(class_id="a", score=0.2)), NS(hypothesis=NS(class_id="b", score=0.8))],
             bbox=rotated, id="track-1")
    (d,) = detections_from_msg([det])
    assert d.label == "b" and d.score == 0.8 and d.instance_id is None  # not an integer id
    np.testing.assert_allclose(d.box_xyxy, [45, 30, 55, 70], atol=1e-9)  # box around the rotated one


def test_bad_box_is_named():
    with pytest.raises(MessageError, match="non-finite or negative"):
        box_xyxy(NS(center=NS(x=np.nan, y=0.0, theta=0.0), size_x=1.0, size_y=1.0))


def test_a_malformed_box_costs_only_its_detection_when_problems_are_collected():
    good = NS(results=[NS(hypothesis=NS(class_id="mug", score=0.9))],
              bbox=NS(center=NS(position=NS(x=50.0, y=50.0), theta=0.0), size_x=20.0, size_y=10.0), id="")
    bad = NS(results=[NS(hypothesis=NS(class_id="inverted", score=0.9))],
             bbox=NS(center=NS(position=NS(x=50.0, y=50.0), theta=0.0), size_x=-20.0, size_y=10.0), id="")
    with pytest.raises(MessageError, match="negative"):
        detections_from_msg([bad, good])
    problems: list[str] = []
    (d,) = detections_from_msg([bad, good], problems)
    assert d.label == "mug"
    assert len(problems) == 1 and "detection 0 ('inverted') skipped" in problems[0] and "negative" in problems[0]


def test_unknown_layout():
    with pytest.raises(ValueError, match="layout"):
        register_vision_types(rosbags_types().typestore, "noetic")
