"""Geometric segmentation (support plane + clustering) on generator scenes with exact depth."""

from __future__ import annotations

import numpy as np
import pytest
from seg_helpers import tabletop

from depth_perception.metrics import matched_iou
from depth_perception.segmentation import GeometricParams, Segmentation, SegmentationError
from depth_perception.segmentation.geometric import find_planes, segment_geometric


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_separated_objects_are_found_with_iou_above_0_8(seed):
    scene, points = tabletop(seed)
    seg = segment_geometric(points)
    assert isinstance(seg, Segmentation) and seg.source == "geometric"
    assert seg.labels.shape == scene.depth_m.shape and seg.labels.dtype == np.uint16
    iou = matched_iou(scene.instance_mask, seg.labels)
    assert iou.min() >= 0.8, iou
    assert len(seg) == len(scene.objects)  # no wall strips or table patches as extra objects
    assert seg.names == {i: "object" for i in seg.ids}


def test_support_plane_is_the_table():
    scene, points = tabletop(2)  # a scene with a wall behind the table
    plane = segment_geometric(points).support_plane
    true = scene.table_plane_camera
    assert np.degrees(np.arccos(abs(plane[:3] @ true[:3]))) < 0.5
    assert plane[3] == pytest.approx(true[3], abs=0.005)
    assert plane[3] > 0  # oriented towards the camera, like table_plane_camera


def test_wall_is_found_as_a_second_plane_and_not_segmented():
    scene, points = tabletop(2)
    planes = find_planes(points)
    assert len(planes) >= 2
    wall = ~scene.table_mask & (scene.instance_mask == 0)
    assert (planes[1].inliers & wall).sum() > 0.9 * wall.sum()
    assert not (segment_geometric(points).labels[wall] > 0).any()


def test_strip_of_wall_too_small_for_a_plane_is_not_an_object():
    scene, points = tabletop(21)  # only a thin strip of wall shows above the table
    wall = ~scene.table_mask & (scene.instance_mask == 0)
    assert wall.sum() > 300
    seg = segment_geometric(points)
    assert not (seg.labels[wall] > 0).any()
    assert len(seg) == len(scene.objects)


def test_touching_objects_report(capsys):
    """Touching objects merge when nothing geometric separates them (boxes face to face); a concave
    crease does separate many. Reported, not required: the median IoU over these scenes is high."""
    ious = np.concatenate([matched_iou(tabletop(s, separated=False)[0].instance_mask,
                                       segment_geometric(tabletop(s, separated=False)[1]).labels)
                           for s in (1, 2, 4)])
    with capsys.disabled():
        print(f"\ntouching objects: IoU per object {np.round(ious, 2)}")
    assert np.median(ious) > 0.8


def test_known_support_plane_skips_the_search():
    scene, points = tabletop(1)
    seg = segment_geometric(points, support_plane=-scene.table_plane_camera)  # either orientation
    np.testing.assert_allclose(seg.support_plane, scene.table_plane_camera, atol=1e-9)
    assert matched_iou(scene.instance_mask, seg.labels).min() >= 0.8


def test_noisy_depth_raises_the_margin_instead_of_segmenting_the_table():
    scene, points = tabletop(0)
    rng = np.random.default_rng(0)
    noisy = points * (1 + rng.normal(0, 0.002, points.shape[:2]))[..., None].astype(np.float32)
    seg = segment_geometric(noisy)
    assert (seg.labels[scene.table_mask] > 0).mean() < 0.01
    assert np.median(matched_iou(scene.instance_mask, seg.labels)) >= 0.8


def test_invalid_pixels_are_background_and_do_not_split_objects():
    scene, points = tabletop(3)
    holes = points.copy()
    holes[::7] = np.nan  # dead rows
    speckle = np.random.default_rng(2).random(points.shape[:2]) < 0.05
    holes[speckle] = np.nan
    seg = segment_geometric(holes)
    assert not (seg.labels[::7] > 0).any() and not (seg.labels[speckle] > 0).any()
    assert len(seg) == len(scene.objects)
    assert matched_iou(scene.instance_mask, seg.labels).min() >= 0.7


def test_no_plane_gives_an_empty_segmentation_with_a_reason():
    empty = np.full((60, 80, 3), np.nan, np.float32)
    seg = segment_geometric(empty)
    assert len(seg) == 0 and "valid points" in seg.message
    rng = np.random.default_rng(1)
    blob = rng.uniform(0.5, 1.5, (60, 80, 3)).astype(np.float32)  # no plane in random points
    seg = segment_geometric(blob)
    assert len(seg) == 0 and "no support plane" in seg.message


def test_bad_input_is_named():
    with pytest.raises(SegmentationError, match="HxWx3"):
        segment_geometric(np.zeros((10, 10)))
    with pytest.raises(SegmentationError, match="min_height_m"):
        GeometricParams(min_height_m=0.6, max_height_m=0.5)
    with pytest.raises(SegmentationError, match="support_plane"):
        segment_geometric(tabletop(0)[1], support_plane=[0, 0, 0, 1])
