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
