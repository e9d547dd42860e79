"""Mask–depth fusion: flying pixels and bled masks go, the true surface stays."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from depth_perception.camera import CameraModel
from depth_perception.regions import RegionError, RegionParams
from depth_perception.regions.cleaning import depth_edges_at, erode_labels
from depth_perception.regions.fusion import fuse_masks
from depth_perception.scene import generate_tabletop
from depth_perception.segmentation import Segmentation, SegmentationError


@functools.lru_cache(maxsize=None)
def tabletop(seed: int, separated: bool = True, width: int = 320, height: int = 240):
    """(scene, organised cloud HxWx3 float32) of a generator scene; cached across tests."""
    scene = generate_tabletop(seed=seed, width=width, height=height, separated=separated)
    return scene, scene.points()


def _cloud(scene, depth_m):
    K = scene.K
    h, w = depth_m.shape
    return CameraModel.from_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h).backproject(depth_m)


def _with_flying_pixels(scene, rng):
    """Depth whose object borders are mixed with what lies behind (as a network or a ToF sensor
    blurs them), plus scattered spikes inside the objects; and masks dilated by 3 px, as colour
    masks bleed over object borders. Returns (depth, masks, flying HxW bool)."""
    true = scene.depth_m
    fg = scene.instance_mask > 0
    ring = cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~cv2.erode(
        fg.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    behind = cv2.dilate(np.where(fg, 0, true), np.ones((9, 9), np.float32))  # the farther surface
    front = cv2.erode(np.where(fg, true, 100), np.ones((9, 9), np.float32))
    t = rng.uniform(0.2, 0.8, true.shape).astype(np.float32)
    mixed = np.where(ring & (behind - front > 0.02), front + t * (behind - front), true)
    spikes = fg & (rng.random(true.shape) < 0.01)
    depth = mixed.copy()
    depth[spikes] += rng.choice([-1, 1], spikes.sum()) * rng.uniform(0.05, 0.3, spikes.sum())
    flying = np.abs(depth - true) > 0.02
    masks = cv2.dilate(scene.instance_mask, np.ones((7, 7), np.uint8))
    return depth.astype(np.float32), masks, flying


def test_fusion_removes_flying_pixels_and_keeps_the_true_surface():
    scene, _ = tabletop(3)
    depth, masks, flying = _with_flying_pixels(scene, np.random.default_rng(0))
    seg = Segmentation(masks, names={i: f"obj{i}" for i in range(1, len(scene.objects) + 1)}, source="sam")
    assert (flying & (masks > 0)).sum() > 1000  # the injected defects are in the masks
    result = fuse_masks(seg, _cloud(scene, depth))
    out = result.segmentation.labels
    kept = out > 0
    # flying pixels go: >= 99% of those over 2 cm off, all of those over 3 cm off
    assert (kept & flying).sum() <= 0.01 * (flying & (masks > 0)).sum()
    assert np.abs(depth - scene.depth_m)[kept].max() <= 0.03
    # kept pixels are their own object's, except table pixels touching an object's foot (continuous
    # with it in 3-D; without a support plane the pass has no plane margin to drop them by)
    other = kept & (out != scene.instance_mask)
    assert scene.table_mask[other].all() and other.sum() < 0.05 * kept.sum()
    # the true surface stays: most of each object's interior is kept
    interior = erode_labels(scene.instance_mask, 3)
    for i in range(1, len(scene.objects) + 1):
        inside = interior & (scene.instance_mask == i)
        assert (out[inside] == i).mean() > 0.85, i
    assert result.segmentation.names == {i: f"obj{i}" for i in result.segmentation.ids}
    assert result.pixels_out[1] < result.pixels_in[1]


def test_mask_spilling_onto_the_far_table_keeps_the_object_surface():
    """A box-shaped mask reaching above the object onto the far table: the depth jump and the
    dominant cluster keep the object's surface, not what lies behind it."""
    scene, points = tabletop(2)
    obj = scene.instance_mask == 3
    v, u = np.nonzero(obj)
    spill = np.zeros_like(obj)
    spill[v.min() - 10:v.max() + 1, u.min():u.max() + 1] = True  # a box reaching above the object
    masks = np.where(obj | (spill & (scene.instance_mask == 0)), 3, 0).astype(np.uint16)
    out = fuse_masks(Segmentation(masks), points).segmentation.labels
    assert (out[obj] == 3).mean() > 0.85
    assert not (out[: v.min()] == 3).any()  # nothing of the far table above the object
    assert scene.table_mask[(out == 3) & ~obj].all()  # at most table at the object's foot


def test_small_mask_is_kept_uneroded_and_tiny_or_depthless_masks_are_dropped_with_reasons():
    scene, points = tabletop(0)
    labels = np.zeros(scene.depth_m.shape, np.uint16)
    labels[100:108, 100:108] = 1  # 64 px of table: erosion would leave < min_pixels
    labels[10:13, 10:13] = 2  # 9 px
    labels[50:70, 200:220] = 3
    holes = points.copy()
    holes[50:70, 200:220] = np.nan
    res = fuse_masks(Segmentation(labels, names={1: "a", 2: "b", 3: "c"}), holes, RegionParams(min_pixels=30))
    assert (res.segmentation.labels == 1).sum() > 30
    assert res.dropped.keys() == {2, 3} and "valid depth" in res.dropped[3]
    assert "'b' dropped" in res.segmentation.message
    assert res.segmentation.ids == [1] and res.segmentation.names == {1: "a"}


def test_erosion_removes_borders_between_labels_too():
    lab = np.zeros((20, 20), np.uint16)
    lab[2:18, 2:10] = 1
    lab[2:18, 10:18] = 2
    core = erode_labels(lab, 1)
    assert not core[:, 9].any() and not core[:, 10].any() and core[5, 5] and core[5, 14]


def test_depth_edges_mark_both_sides_of_a_jump_only():
    pts = np.zeros((10, 10, 3), np.float32)
    pts[..., 2] = 1.0
    pts[:, 5:, 2] = 2.0
    pixel = np.arange(100)
    e = depth_edges_at(pts, pixel, pts[..., 2].ravel(), 1e-3, RegionParams(edge_jump_m=0.01, edge_jump_px=8.0))
    e = e.reshape(10, 10)
    assert e[:, 4].all() and e[:, 5].all() and not e[:, :4].any() and not e[:, 6:].any()


def test_bad_input():
    with pytest.raises(SegmentationError, match="masks are 4x4"):
        fuse_masks(Segmentation(np.zeros((4, 4), np.uint16)), np.zeros((5, 4, 3), np.float32))
    with pytest.raises(RegionError, match="erosion_px"):
        RegionParams(erosion_px=-1)
    empty = fuse_masks(Segmentation(np.zeros((4, 4), np.uint16)), np.zeros((4, 4, 3), np.float32))
    assert len(empty.segmentation) == 0


def test_thousands_of_dropped_masks_give_a_bounded_message():
    """65,535 one-pixel ids (a corrupt or hostile mask image) must not make a megabyte message."""
    from depth_perception.segmentation.base import MAX_MESSAGE_PARTS

    scene, pts = tabletop(0)
    h, w = scene.depth_m.shape
    labels = (np.arange(h * w, dtype=np.uint32) % 65535 + 1).astype(np.uint16).reshape(h, w)
    fused = fuse_masks(Segmentation(labels=labels), pts)
    message = fused.segmentation.message
    assert len(fused.dropped) > 60_000
    assert message.count(" dropped: ") == MAX_MESSAGE_PARTS
    assert message.endswith(f"... and {len(fused.dropped) - MAX_MESSAGE_PARTS} more")
    assert len(message) < 5_000
