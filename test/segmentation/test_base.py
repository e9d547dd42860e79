"""The Segmentation result and combining several sources."""

from __future__ import annotations

import numpy as np
import pytest

from depth_perception.segmentation import Segmentation, SegmentationError, merge_segmentations


def test_segmentation_fills_names_and_drops_stale_ones():
    lab = np.zeros((4, 5), np.uint16)
    lab[0, 0], lab[1, 1] = 3, 7
    seg = Segmentation(lab, names={3: "mug", 9: "gone"}, scores={9: 0.5}, source="topic")
    assert seg.ids == [3, 7] and seg.names == {3: "mug", 7: "id 7"} and seg.scores == {3: 1.0, 7: 1.0}
    assert seg.pixel_counts() == {3: 1, 7: 1} and len(seg) == 2
    assert Segmentation(lab.astype(np.int32)).labels.dtype == np.uint16
    with pytest.raises(SegmentationError, match="HxW"):
        Segmentation(np.zeros((2, 2, 2), np.uint16))
    with pytest.raises(SegmentationError, match="0..65535"):
        Segmentation(np.full((2, 2), -1))


def test_merge_gives_earlier_sources_precedence():
    a = np.zeros((4, 6), np.uint16)
    a[:, :3] = 5
    b = np.zeros((4, 6), np.uint16)
    b[:, 2:4] = 1  # overlaps a's column 2
    b[:, 5] = 2
    c = np.zeros((4, 6), np.uint16)
    c[:, :2] = 1  # entirely under a: vanishes
    merged = merge_segmentations([Segmentation(a, {5: "mug"}, source="topic"),
                                  Segmentation(b, {1: "object", 2: "object"}, source="geometric",
                                               message="wall dropped"),
                                  Segmentation(c, {1: "x"}, source="sam")])
    assert merged.source == "topic+geometric+sam"
    np.testing.assert_array_equal(merged.labels[0], [1, 1, 1, 2, 0, 3])
    assert merged.names == {1: "mug", 2: "object", 3: "object"}
    assert merged.message == "geometric: wall dropped"
    wrong = merge_segmentations([Segmentation(a), Segmentation(np.zeros((2, 2), np.uint16), source="sam")])
    assert "sam: masks are 2x2" in wrong.message


def test_prompts_are_kept_inside_the_image():
    from depth_perception.segmentation.base import Detection, detections_in_image

    dets = [
        Detection(np.array([700.0, 500.0, 760.0, 560.0]), "far away", 0.9),  # beyond 640x480
        Detection(np.array([-60.0, -40.0, 60.0, 50.0]), "partly outside", 0.8),
        Detection(None, "", 0.5, points_xy=np.array([[10.0, 10.0], [900.0, 10.0]]),
                  point_labels=np.array([1, 0])),
        Detection(None, "named mask", 0.5, instance_id=3),
    ]
    kept, notes = detections_in_image(dets, (480, 640))
    assert [d.label for d in kept] == ["partly outside", ""]
    np.testing.assert_array_equal(kept[0].box_xyxy, [0.0, 0.0, 60.0, 50.0])  # clipped
    np.testing.assert_array_equal(kept[1].points_xy, [[10.0, 10.0]])
    np.testing.assert_array_equal(kept[1].point_labels, [1])
    assert notes == ["'far away' lies outside the 640x480 image: ignored",
                     "'named mask' has no box or points: ignored"]
