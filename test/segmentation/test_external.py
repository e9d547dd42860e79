"""The mask contract for other nodes: instance-id image (+ detections naming the instances)."""

from __future__ import annotations

import numpy as np
import pytest
from seg_helpers import tabletop

from depth_perception.ros.messages import image_to_numpy, numpy_to_image, rosbags_types, make_header
from depth_perception.segmentation.base import Detection, SegmentationError
from depth_perception.segmentation.external import external_segmentation, resize_nearest


def _boxes(labels):
    """{id: XYXY box} of every instance."""
    out = {}
    for i in np.unique(labels):
        if i:
            v, u = np.nonzero(labels == i)
            out[int(i)] = np.array([u.min(), v.min(), u.max() + 1, v.max() + 1], float)
    return out


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "16UC1"])
def test_mask_message_round_trip_keeps_ids(encoding):
    scene, _ = tabletop(0)
    types = rosbags_types()
    dtype = np.uint8 if encoding == "mono8" else np.uint16
    msg = numpy_to_image(types, scene.instance_mask.astype(dtype), encoding, make_header(types, 5, "cam"))
    seg = external_segmentation(image_to_numpy(msg), scene.depth_m.shape)
    np.testing.assert_array_equal(seg.labels, scene.instance_mask)
    assert seg.source == "topic" and seg.message == ""
    assert seg.names == {i: f"id {i}" for i in range(1, len(scene.objects) + 1)}


def test_detections_name_instances_by_id_and_by_box():
    scene, _ = tabletop(0)
    boxes = _boxes(scene.instance_mask)
    dets = [Detection(label="mug", score=0.9, instance_id=1),
            Detection(box_xyxy=boxes[2] + [-2, -2, 2, 2], label="box", score=0.7),  # no id: by box
            Detection(label="ghost", score=0.5, instance_id=99)]  # no such instance
    seg = external_segmentation(scene.instance_mask, scene.depth_m.shape, dets)
    assert seg.names[1] == "mug" and seg.scores[1] == pytest.approx(0.9)
    assert seg.names[2] == "box" and seg.scores[2] == pytest.approx(0.7)
    assert seg.names[3] == "id 3"  # ids without detections keep a name
    assert "'ghost' (id 99)" in seg.message and "without a detection" in seg.message


def test_box_that_covers_little_of_an_instance_names_nothing():
    scene, _ = tabletop(0)
    x0, y0, x1, y1 = _boxes(scene.instance_mask)[1]
    corner = np.array([x0, y0, x0 + (x1 - x0) / 4, y0 + (y1 - y0) / 4])
    seg = external_segmentation(scene.instance_mask, scene.depth_m.shape, [Detection(corner, "cup", 0.8)])
    assert "cup" not in seg.names.values() and "match no instance" in seg.message


def test_mask_of_another_size_is_dropped_with_a_reason_unless_resampling_is_allowed():
    scene, _ = tabletop(0)
    half = scene.instance_mask[::2, ::2]
    seg = external_segmentation(half, scene.depth_m.shape)
    assert len(seg) == 0 and seg.labels.shape == scene.depth_m.shape
    assert "160x120" in seg.message and "320x240" in seg.message
    seg = external_segmentation(half, scene.depth_m.shape, allow_resize=True)
    assert "resampled" in seg.message
    agree = (seg.labels == scene.instance_mask).mean()
    assert agree > 0.98 and set(np.unique(seg.labels)) == set(np.unique(scene.instance_mask))
    # another aspect ratio is another view, not a resampled mask
    seg = external_segmentation(scene.instance_mask[:, :200], scene.depth_m.shape, allow_resize=True)
    assert len(seg) == 0 and "aspect" in seg.message


def test_resize_nearest_never_blends_ids():
    lab = np.array([[1, 2], [3, 4]], np.uint16)
    np.testing.assert_array_equal(resize_nearest(lab, (4, 4)), np.kron(lab, np.ones((2, 2), np.uint16)))
    np.testing.assert_array_equal(resize_nearest(np.kron(lab, np.ones((2, 2), np.uint16)), (2, 2)), lab)


def test_empty_mask_gives_an_empty_segmentation():
    seg = external_segmentation(np.zeros((24, 32), np.uint8), (24, 32), [Detection(label="mug", instance_id=1)])
    assert len(seg) == 0 and "empty" in seg.message


def test_arrays_that_are_not_masks_raise():
    with pytest.raises(SegmentationError, match="integer ids"):
        external_segmentation(np.zeros((4, 4), np.float32), (4, 4))
    with pytest.raises(SegmentationError, match="single-channel"):
        external_segmentation(np.zeros((4, 4, 3), np.uint8), (4, 4))
