"""Tests of the procedural tabletop generator: determinism, exact geometry, stereo consistency."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from depth_perception.scene import KINDS, TabletopScene, generate_tabletop

SEPARATED = generate_tabletop(seed=0, n_objects=6)
TOUCHING = generate_tabletop(seed=1, n_objects=5, separated=False)


def _backproject(K: np.ndarray, depth_m: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N,3) camera-frame points of the masked pixels."""
    v, u = np.nonzero(mask)
    z = depth_m[v, u].astype(np.float64)
    return np.column_stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])


def _footprint_outline(obj, n: int = 720) -> np.ndarray:
    """(n,2) world xy points on the boundary of an object's footprint on the table."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    if obj.kind == "box":
        # points on the rectangle boundary, parametrised by angle via the L-infinity unit circle
        sq = np.column_stack([np.cos(a), np.sin(a)])
        sq /= np.abs(sq).max(axis=1, keepdims=True)
        local = sq * obj.extents_m[:2] / 2
    else:
        local = obj.size_m[0] * np.column_stack([np.cos(a), np.sin(a)])
    c, s = np.cos(obj.yaw_rad), np.sin(obj.yaw_rad)
    return obj.centroid_world[:2] + local @ np.array([[c, -s], [s, c]]).T


def _footprint_gap(a, b) -> float:
    pa, pb = _footprint_outline(a), _footprint_outline(b)
    return float(np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1)).min())


def test_deterministic_per_seed_and_seeds_differ():
    a = generate_tabletop(seed=7, width=160, height=120)
    b = generate_tabletop(seed=7, width=160, height=120)
    c = generate_tabletop(seed=8, width=160, height=120)
    for name in ("rgb", "right_rgb", "depth_m", "instance_mask", "K", "T_world_camera"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.labels == b.labels
    assert not np.array_equal(a.rgb, c.rgb)
    assert not np.allclose(a.K, c.K)


@pytest.mark.parametrize("scene", [SEPARATED, TOUCHING], ids=["separated", "touching"])
def test_shapes_dtypes_and_depth(scene: TabletopScene):
    h, w = 480, 640
    assert scene.rgb.shape == scene.right_rgb.shape == (h, w, 3)
    assert scene.rgb.dtype == scene.right_rgb.dtype == np.uint8
    assert scene.depth_m.shape == scene.right_depth_m.shape == (h, w) and scene.depth_m.dtype == np.float32
    assert scene.instance_mask.shape == (h, w) and scene.instance_mask.dtype == np.uint16
    assert scene.K.shape == (3, 3) and scene.K.dtype == np.float64
    assert scene.K[0, 0] == pytest.approx(scene.K[1, 1]) and 0.75 * w < scene.K[0, 0] < 1.0 * w
    assert abs(scene.K[0, 2] - w / 2) < 0.03 * w and abs(scene.K[1, 2] - h / 2) < 0.03 * h
    # the wall behind the table means every pixel sees a surface
    assert np.isfinite(scene.depth_m).all() and (scene.depth_m > 0.1).all() and (scene.depth_m < 5).all()
    R = scene.T_world_camera[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(scene.T_world_camera[3], [0, 0, 0, 1])
    assert scene.T_world_camera[2, 3] > 0.15  # camera above the table
    tilt = np.degrees(np.arcsin(-R[2, 2]))  # optical axis below the horizon
    assert 29 < tilt < 61


@pytest.mark.parametrize("scene", [SEPARATED, TOUCHING], ids=["separated", "touching"])
def test_instance_ids_and_labels(scene: TabletopScene):
    n = len(scene.objects)
    assert n == len(scene.labels)
    assert set(np.unique(scene.instance_mask)) == set(range(n + 1))
    for i, (obj, label) in enumerate(zip(scene.objects, scene.labels), start=1):
        assert obj.id == i and obj.kind == label and label in KINDS
        assert (scene.instance_mask == i).sum() >= 60
        assert 0.03 <= obj.extents_m.max() <= 0.15 + 1e-9 and obj.extents_m.min() >= 0.03 - 1e-9
        assert 0.3 < np.linalg.norm(obj.centroid_camera) < 1.2
    assert not (scene.table_mask & (scene.instance_mask > 0)).any()
    assert scene.table_mask.mean() > 0.3


@pytest.mark.parametrize("scene", [SEPARATED, TOUCHING], ids=["separated", "touching"])
def test_table_pixels_lie_on_table_plane(scene: TabletopScene):
    n, d = scene.table_plane_camera[:3], scene.table_plane_camera[3]
    assert np.linalg.norm(n) == pytest.approx(1.0)
    assert d == pytest.approx(scene.T_world_camera[2, 3])  # camera height
    pts = _backproject(scene.K, scene.depth_m, scene.table_mask)
    assert np.abs(pts @ n + d).max() < 1e-4
    # objects stand on the table: centroid height above it is half their height
    for obj in scene.objects:
        assert obj.centroid_camera @ n + d == pytest.approx(obj.extents_m[2] / 2, abs=1e-9)
        world = scene.T_world_camera[:3, :3] @ obj.centroid_camera + scene.T_world_camera[:3, 3]
        np.testing.assert_allclose(world, obj.centroid_world, atol=1e-9)


@pytest.mark.parametrize("scene", [SEPARATED, TOUCHING], ids=["separated", "touching"])
def test_object_pixels_lie_on_their_solid_surface(scene: TabletopScene):
    for obj in scene.objects:
        pts = _backproject(scene.K, scene.depth_m, scene.instance_mask == obj.id)
        q = (pts - obj.centroid_camera) @ obj.R_camera_object  # object frame, z up
        half = obj.extents_m / 2
        if obj.kind == "sphere":
            off_surface = np.abs(np.linalg.norm(q, axis=1) - obj.size_m[0])
        elif obj.kind == "cylinder":
            radial = np.hypot(q[:, 0], q[:, 1])
            off_surface = np.minimum(np.abs(radial - obj.size_m[0]), np.abs(q[:, 2] - half[2]))
            assert (radial < obj.size_m[0] + 1e-4).all()
        else:
            off_surface = np.abs(np.abs(q) - half).min(axis=1)
        assert (np.abs(q) <= half + 1e-4).all(), obj.kind
        assert off_surface.max() < 1e-4, obj.kind


def test_separated_objects_keep_2cm_gap_and_touching_objects_touch():
    gaps = [_footprint_gap(a, b) for a, b in itertools.combinations(SEPARATED.objects, 2)]
    assert min(gaps) >= 0.0199
    gaps = [_footprint_gap(a, b) for a, b in itertools.combinations(TOUCHING.objects, 2)]
    assert min(gaps) < 0.002


@pytest.mark.parametrize("scene", [SEPARATED, TOUCHING], ids=["separated", "touching"])
def test_right_view_is_a_rectified_stereo_partner(scene: TabletopScene):
    fx, B = scene.K[0, 0], scene.baseline_m
    h, w = scene.depth_m.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = (u - fx * B / scene.depth_m).astype(np.float32)
    right_depth_seen = cv2.remap(scene.right_depth_m, map_x, v, cv2.INTER_LINEAR, borderValue=np.nan)
    # pixels visible in both views: the right camera sees the same surface at x - fx*B/Z
    both = (scene.instance_mask > 0) & (np.abs(right_depth_seen - scene.depth_m) < 3e-3 * scene.depth_m) & (map_x > 1)
    assert both.sum() > 0.6 * (scene.instance_mask > 0).sum()  # the rest is occluded in one view
    warped = cv2.remap(scene.right_rgb, map_x, v, cv2.INTER_LINEAR).astype(np.float32)
    diff = np.abs(warped - scene.rgb.astype(np.float32))[both]
    assert diff.mean() < 4.0
    # and a wrong disparity does not match, so the texture constrains stereo
    shifted = cv2.remap(scene.right_rgb, map_x - 3, v, cv2.INTER_LINEAR).astype(np.float32)
    assert np.abs(shifted - scene.rgb.astype(np.float32))[both].mean() > 2 * diff.mean()


def test_noise_and_baseline_options():
    clean = generate_tabletop(seed=3, width=160, height=120)
    noisy = generate_tabletop(seed=3, width=160, height=120, noise_std=3.0, baseline_m=0.12)
    np.testing.assert_array_equal(clean.depth_m, noisy.depth_m)
    assert 1.5 < np.abs(noisy.rgb.astype(float) - clean.rgb).mean() < 4.0
    assert noisy.baseline_m == 0.12 and not np.array_equal(clean.right_depth_m, noisy.right_depth_m)


@pytest.mark.parametrize("kwargs, word", [
    ({"n_objects": 0}, "n_objects"), ({"n_objects": 9}, "n_objects"), ({"baseline_m": 0.0}, "baseline_m"),
    ({"width": 10}, "width"), ({"noise_std": -1.0}, "noise_std")])
def test_bad_arguments_raise_value_error(kwargs, word):
    with pytest.raises(ValueError, match=word):
        generate_tabletop(**kwargs)
