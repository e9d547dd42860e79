"""Graspable regions on generator scenes (ground truth known): accuracy, cleaning, verdicts, bad input,
label image, scene cloud and PLY export.

Only the visible surface of an object is observed, while the generator's centroid and extents are
those of the full solid. With the table plane known the box is completed down to the table
(boxes, upright cylinders: their top face outlines the footprint) and round objects are completed
from a sphere fit, so the full-solid targets hold for every kind that the camera sees unoccluded.
Without the plane a PCA box of the visible shell is all there is: its centre sits ~1.5 cm too close
to the camera (tested as a bound, below).

Every test runs twice: with the compiled kernel (the product path where it is built) and with the
numpy implementation (its reference and fallback).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import cv2
import numpy as np
import pytest

from depth_perception import regions
from depth_perception.camera import CameraModel
from depth_perception.files import read_ply
from depth_perception.regions import compiled
from depth_perception.regions.verdict import Extent, MaskCounts, degenerate, judge
from depth_perception.regions import (
    GripperParams,
    Region,
    RegionError,
    RegionParams,
    Verdict,
    extract_regions,
    label_image,
    organized_normals,
    pixel_angle,
    regions_cloud,
    scene_cloud,
    write_region_plys,
    write_scene_ply,
)
from depth_perception.scene import generate_tabletop

SEEDS = range(6)


def backproject(scene) -> np.ndarray:
    h, w = scene.depth_m.shape
    return CameraModel(width=w, height=h, K=scene.K).backproject(scene.depth_m)


def occluded_fraction(scene, object_id: int) -> float:
    """Share of the pixels around an object's mask that belong to a nearer object (an occluder)."""
    mask = (scene.instance_mask == object_id).astype(np.uint8)
    ring = cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool) & ~mask.astype(bool)
    own_depth = cv2.dilate(np.where(mask > 0, scene.depth_m, 0).astype(np.float32), np.ones((3, 3), np.uint8))
    in_front = ring & (scene.instance_mask > 0) & (scene.depth_m < own_depth - 0.005)
    return in_front.sum() / max(ring.sum(), 1)


def axis_matched_errors(region: Region, obj) -> np.ndarray:
    """Relative extent error along each box axis, matched to the object's own axis it is closest to."""
    A = obj.R_camera_object
    errs = []
    for k in range(3):
        j = int(np.argmax(np.abs(A.T @ region.box_rotation[:, k])))
        errs.append((region.box_size[k] - obj.extents_m[j]) / obj.extents_m[j])
    return np.array(errs)


@pytest.fixture(scope="module", autouse=True, params=["compiled", "numpy"])
def implementation(request):
    """extract_regions with params.implementation "auto" runs this implementation."""
    if request.param == "compiled" and not regions.kernel_available():
        if os.environ.get("DP_REQUIRE_KERNEL") == "1":
            pytest.fail("DP_REQUIRE_KERNEL=1 but depth_perception._regions_kernel is not built")
        pytest.skip("the compiled regions kernel is not built")
    choose = compiled.load
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiled, "load", lambda asked: choose(request.param if asked == "auto" else asked))
        yield request.param


def test_the_implementation_under_test_runs(implementation):
    assert regions.implementation_in_use() == implementation


@pytest.fixture(scope="module")
def scenes():
    return [generate_tabletop(seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def measured(scenes, implementation):
    """(kind, centroid error m, extent errors, region, object) of unoccluded objects at 0.4-1.0 m."""
    rows = {"plane": [], "noplane": []}
    for scene in scenes:
        pts = backproject(scene)
        with_plane = extract_regions(pts, scene.instance_mask, rgb=scene.rgb,
                                     support_plane=scene.table_plane_camera)
        without = extract_regions(pts, scene.instance_mask)
        for obj, r_plane, r_free in zip(scene.objects, with_plane, without):
            assert r_plane.id == r_free.id == obj.id
            if not 0.4 <= obj.centroid_camera[2] <= 1.0 or occluded_fraction(scene, obj.id) > 0.02:
                continue
            for key, r in (("plane", r_plane), ("noplane", r_free)):
                rows[key].append((obj.kind, np.linalg.norm(r.centroid - obj.centroid_camera),
                                  axis_matched_errors(r, obj), r, obj))
    return rows


@pytest.mark.parametrize("kind", ["box", "cylinder", "sphere"])
def test_true_depth_with_table_plane_meets_targets(measured, kind):
    """Centroid within 5 mm and extents within 10 % for every kind (true depth, plane known)."""
    rows = [row for row in measured["plane"] if row[0] == kind]
    assert len(rows) >= 3, f"too few unoccluded {kind}s in the test scenes"
    for _, err, extent_err, region, obj in rows:
        assert err <= 0.005, f"{kind} {obj.id}: centroid off by {err * 1000:.1f} mm ({region.box_method})"
        assert np.abs(extent_err).max() <= 0.10, f"{kind} {obj.id}: extents off by {extent_err}"
        assert region.box_method == ("sphere" if kind == "sphere" else "plane")
        assert region.verdict in (Verdict.GRASPABLE, Verdict.TOO_WIDE)


def test_without_plane_only_spheres_are_completed(measured):
    """No plane: spheres still come out exact; a PCA box of a visible shell sits nearer the camera."""
    spheres = [row for row in measured["noplane"] if row[0] == "sphere"]
    assert spheres and max(row[1] for row in spheres) <= 0.005
    shells = [row for row in measured["noplane"] if row[0] != "sphere"]
    assert all(row[3].box_method == "pca" for row in shells)
    errors = np.array([row[1] for row in shells])
    assert errors.max() < 0.05
    # the visible surface is the camera side of the object: the estimate is biased towards the camera
    nearer = [np.linalg.norm(r.centroid) < np.linalg.norm(o.centroid_camera) for *_, r, o in shells]
    assert np.mean(nearer) > 0.8


def test_descriptors_are_consistent(measured):
    for *_, r, obj in measured["plane"]:
        R = r.box_rotation
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-6) and np.isclose(np.linalg.det(R), 1.0)
        assert np.isclose(np.linalg.norm(r.approach), 1.0)
        # approach points away from the camera into the object; we look down on the table
        assert r.approach @ r.surface_centroid > 0
        assert r.approach @ -r.support_plane[:3] > 0
        assert np.isclose(np.linalg.norm(r.closing_axis), 1.0)
        assert r.grasp_width in r.box_size
        # the gripper closes along a box axis that is not the one most aligned with the approach
        assert abs(r.closing_axis @ r.approach) < np.abs(R.T @ r.approach).max()
        assert r.point_count == len(r.points) == len(r.normals) == len(r.colors) == len(r.pixel_index)
        assert np.allclose(np.linalg.norm(r.normals, axis=1), 1.0, atol=1e-4)
        assert (np.einsum("ij,ij->i", r.normals, r.points) <= 1e-6).all()  # normals face the camera
        assert r.points.dtype == np.float32 and r.colors.dtype == np.uint8
        x, y, w, h = r.roi
        v, u = np.divmod(r.pixel_index, r.shape[1])
        assert u.min() >= x and u.max() < x + w and v.min() >= y and v.max() < y + h


def test_regions_come_in_id_order_with_names_and_scores(scenes):
    scene = scenes[0]
    names = {i + 1: kind for i, kind in enumerate(scene.labels)}
    regions = extract_regions(backproject(scene), scene.instance_mask, names=names, scores={2: 0.25})
    assert [r.id for r in regions] == sorted(np.unique(scene.instance_mask[scene.instance_mask > 0]))
    assert [r.label for r in regions] == scene.labels
    assert regions[1].score == 0.25 and regions[0].score == 1.0


# -- cleaning ---------------------------------------------------------------------------------------


def test_outliers_and_a_bleeding_mask_are_cleaned(scenes):
    """Flying pixels inside the mask and a mask grown onto the table do not move the box."""
    scene = scenes[0]
    obj = min(scene.objects, key=lambda o: occluded_fraction(scene, o.id))
    depth = scene.depth_m.copy()
    mask = scene.instance_mask == obj.id
    v, u = np.nonzero(mask)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(v), 40, replace=False)
    depth[v[pick], u[pick]] += rng.uniform(0.05, 0.3, 40).astype(np.float32)  # flying pixels
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    labels = np.where(grown & (scene.instance_mask == 0), obj.id, scene.instance_mask)
    pts = CameraModel(width=depth.shape[1], height=depth.shape[0], K=scene.K).backproject(depth)
    region = next(r for r in extract_regions(pts, labels, support_plane=scene.table_plane_camera)
                  if r.id == obj.id)
    assert np.linalg.norm(region.centroid - obj.centroid_camera) <= 0.005
    assert np.abs(axis_matched_errors(region, obj)).max() <= 0.10
    kept = region.mask
    assert not kept[v[pick], u[pick]].any(), "flying pixels survived"
    assert not (kept & ~mask).any(), "table pixels survived"


def test_dominant_cluster_drops_a_far_blob():
    """A detached blob 30 cm behind an object (same id) is not part of the region."""
    K = np.array([[500.0, 0, 80], [0, 500.0, 60], [0, 0, 1]])
    depth = np.full((120, 160), 0.6, np.float32)
    depth[10:30, 120:150] = 0.9
    labels = np.zeros((120, 160), np.uint16)
    labels[40:80, 40:100] = 3
    labels[10:30, 120:150] = 3
    pts = CameraModel(width=160, height=120, K=K).backproject(depth)
    (region,) = extract_regions(pts, labels, params=RegionParams(erosion_px=0))
    assert region.point_count == 40 * 60
    assert np.allclose(region.points[:, 2], 0.6)


def test_an_object_split_by_an_occluder_keeps_both_halves():
    """A thin pole in front of a box splits its mask in two: both halves are one object."""
    K = np.array([[500.0, 0, 80], [0, 500.0, 60], [0, 0, 1]])
    depth = np.full((120, 160), 2.0, np.float32)
    depth[40:80, 40:100] = 0.6
    depth[:, 68:71] = 0.4  # the pole
    labels = np.zeros((120, 160), np.uint16)
    labels[40:80, 40:100] = 3
    labels[:, 68:71] = 7
    pts = CameraModel(width=160, height=120, K=K).backproject(depth)
    box = next(r for r in extract_regions(pts, labels, params=RegionParams(erosion_px=0)) if r.id == 3)
    # the box less its one-pixel rim on the depth edges (to the background and to the pole)
    assert box.point_count == 38 * 53
    u = box.pixel_index % 160
    assert (u < 68).sum() == 38 * 26 and (u > 70).sum() == 38 * 27
    assert np.isclose(box.surface_centroid[2], 0.6)


def test_grid_components_agree_with_scipy():
    """The run-based union-find gives scipy's components on random grid graphs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from depth_perception.grid import grid_components

    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(2, 30, size=2)
        inlier = rng.random(h * w) < rng.uniform(0.3, 1.0)
        right = (rng.random(h * w - 1) < 0.8) & inlier[:-1] & inlier[1:]
        right[np.arange(1, h) * w - 1] = False  # no edge from a row's end to the next row
        below = np.arange(h * w) + w
        nb = np.where(below < h * w, below, -1)
        down = (nb >= 0) & (rng.random(h * w) < 0.8) & inlier & inlier[np.maximum(nb, 0)]
        below = np.flatnonzero(down)
        ours = grid_components(h * w, right, [(below, nb[below])])[inlier]
        src = np.r_[np.flatnonzero(right), below]
        dst = np.r_[np.flatnonzero(right) + 1, nb[down]]
        _, ref = connected_components(coo_matrix((np.ones(src.size), (src, dst)), shape=(h * w,) * 2))
        ref = ref[inlier]
        # the same partition: a one-to-one map between the two labellings
        pairs = np.unique(np.c_[ours, ref], axis=0)
        assert len(pairs) == len(np.unique(ours)) == len(np.unique(ref))


def test_stride_keeps_accuracy_and_fills_label_blocks(scenes):
    scene = scenes[1]
    pts = backproject(scene)
    full = extract_regions(pts, scene.instance_mask, support_plane=scene.table_plane_camera)
    half = extract_regions(pts, scene.instance_mask, support_plane=scene.table_plane_camera,
                           params=RegionParams(stride=2))
    for a, b in zip(full, half):
        assert b.stride == 2 and 3 * b.point_count < a.point_count < 5 * b.point_count
        assert np.linalg.norm(a.centroid - b.centroid) < 0.005
    labels = label_image(half, scene.depth_m.shape)
    agree = (labels == scene.instance_mask)[labels > 0].mean()
    assert agree > 0.97 and (labels > 0).sum() > 0.8 * (label_image(full, labels.shape) > 0).sum()


# -- verdicts and bad input -------------------------------------------------------------------------


def test_verdicts_follow_the_gripper(scenes):
    scene = scenes[0]
    pts = backproject(scene)
    plane = scene.table_plane_camera
    narrow = extract_regions(pts, scene.instance_mask, GripperParams(max_opening_m=0.01), support_plane=plane)
    assert all(r.verdict == Verdict.TOO_WIDE and not r.graspable for r in narrow)
    assert "gripper opens 1.0 cm" in narrow[0].reason
    picky = extract_regions(pts, scene.instance_mask, GripperParams(min_points=10**6), support_plane=plane)
    assert all(r.verdict == Verdict.TOO_FEW_POINTS and "need 1000000" in r.reason for r in picky)
    near = extract_regions(pts, scene.instance_mask, GripperParams(max_range_m=0.2), support_plane=plane)
    assert all(r.verdict == Verdict.OUT_OF_RANGE and "outside the range" in r.reason for r in near)
    roomy = extract_regions(pts, scene.instance_mask, GripperParams(max_opening_m=0.5), support_plane=plane)
    assert all(r.verdict == Verdict.GRASPABLE and r.graspable for r in roomy)


def _flat_scene(depth_m: float = 0.5, shape=(60, 80)):
    K = np.array([[300.0, 0, shape[1] / 2], [0, 300.0, shape[0] / 2], [0, 0, 1]])
    depth = np.full(shape, depth_m, np.float32)
    return CameraModel(width=shape[1], height=shape[0], K=K).backproject(depth)


def test_bad_data_gives_verdicts_not_exceptions():
    pts = _flat_scene()
    labels = np.zeros(pts.shape[:2], np.int32)
    labels[5:25, 5:25] = 1  # all-NaN depth
    labels[40, 40] = 2  # one pixel
    labels[10:30, 50:70] = 3  # behind the camera
    labels[35:55, 5:30] = 4  # a flat patch seen face-on (planar point set)
    labels[45, 45:75] = 5  # a one-pixel line (linear point set)
    pts = pts.copy()
    pts[5:25, 5:25] = np.nan
    pts[10:30, 50:70] *= -1
    regions = {r.id: r for r in extract_regions(pts, labels)}

    assert regions[1].verdict == Verdict.TOO_FEW_POINTS and "no valid depth" in regions[1].reason
    assert regions[1].point_count == 0 and np.isnan(regions[1].centroid).all()
    assert regions[2].verdict == Verdict.TOO_FEW_POINTS and regions[2].point_count <= 1
    assert regions[3].verdict == Verdict.OUT_OF_RANGE and "behind the camera" in regions[3].reason
    planar = regions[4]  # a face-on patch is not degenerate: the gripper closes across it
    assert planar.verdict == Verdict.GRASPABLE and "planar point set" in planar.reason
    assert planar.box_size[2] < 1e-6 and np.allclose(planar.approach, [0, 0, 1], atol=1e-3)
    assert np.isclose(planar.grasp_width, planar.box_size[:2].min())
    linear = regions[5]
    assert linear.verdict == Verdict.DEGENERATE and "linear point set" in linear.reason
    assert np.isfinite(linear.approach).all()


@pytest.mark.parametrize("with_plane", [False, True])
def test_degenerate_regions_are_never_graspable(scenes, with_plane):
    """Points that span one pixel row or column, or a strip too thin for the depth pixels to resolve,
    say why instead of "fits the opening"; a face-on patch and the generator's objects still fit."""
    pts = _flat_scene()  # a wall 0.5 m away; f = 300 px: one pixel footprint = 1.7 mm
    labels = np.zeros(pts.shape[:2], np.int32)
    labels[45, 45:75] = 1  # one pixel row
    labels[5:40, 40] = 2  # one pixel column
    labels[10:12, 45:79] = 3  # two rows: 2 pixel footprints at most, under 2.5
    labels[20:26, 50:58] = 4  # 6 x 8 px: 1 cm across, an ordinary small patch
    plane = np.array([0.0, 0.0, -1.0, 0.52]) if with_plane else None
    regions = {r.id: r for r in extract_regions(pts, labels, support_plane=plane)}

    assert [r.verdict for r in regions.values()] == [Verdict.DEGENERATE] * 3 + [Verdict.GRASPABLE]
    assert regions[1].reason.startswith("points span one pixel row (30 px long)")
    assert regions[2].reason.startswith("points span one pixel column (35 px long)")
    assert "under 2.5 pixel footprints (0.4 cm at 0.50 m): a planar sliver" in regions[3].reason
    assert not any(r.graspable for r in list(regions.values())[:3])
    # a looser noise floor lets the two-row strip through; the one-pixel lines stay degenerate
    loose = extract_regions(pts, labels, params=RegionParams(min_width_px=0.5), support_plane=plane)
    assert [r.verdict for r in loose] == [Verdict.DEGENERATE] * 2 + [Verdict.GRASPABLE] * 2

    scene = scenes[0]
    objects = extract_regions(backproject(scene), scene.instance_mask,
                              support_plane=scene.table_plane_camera if with_plane else None)
    assert all(r.verdict != Verdict.DEGENERATE for r in objects)
    assert any(r.graspable for r in objects)


def test_degenerate_criteria_in_order():
    """verdict.degenerate on measured extents: pixel span, then a 3-D line, then the width floor."""
    params = RegionParams()
    angle = 1 / 300  # radians per pixel: 1.7 mm at 0.5 m
    solid = Extent(rows=20, cols=30, spread_m=(0.02, 0.01, 0.005), depth_m=0.5, pixel_angle=angle)
    assert degenerate(solid, 0.03, params) == ""
    assert degenerate(replace(solid, rows=1, cols=1), 0.03, params) == "points span a single pixel"
    assert "one pixel column (20 px long)" in degenerate(replace(solid, cols=1), 0.03, params)
    line = replace(solid, spread_m=(0.02, 0.0002, 0.0))
    assert degenerate(line, 0.03, params).startswith("points lie on a line in 3-D (0.02 cm spread across it")
    flat = replace(solid, spread_m=(0.02, 0.01, 0.0))
    assert degenerate(flat, 0.0, params) == (
        "0.0 cm across the closing axis, under 2.5 pixel footprints (0.4 cm at 0.50 m): a planar sliver")
    assert degenerate(solid, 0.003, params).endswith(": a sliver")
    assert degenerate(solid, math.nan, params).startswith("no width across the closing axis")
    # judge: range first, then degeneracy, then the gripper's opening
    counts = MaskCounts(mask=600, valid=600, behind=0, on_plane=0)
    gripper = GripperParams()
    reason = degenerate(flat, 0.0, params)
    assert judge(600, (0, 0, 0.5), 0.0, counts, False, gripper, reason) == (Verdict.DEGENERATE, reason)
    assert judge(600, (0, 0, 5.0), 0.0, counts, False, gripper, reason)[0] == Verdict.OUT_OF_RANGE
    assert judge(600, (0, 0, 0.5), 0.5, counts, False, gripper, reason)[0] == Verdict.DEGENERATE
    assert judge(600, (0, 0, 0.5), 0.03, counts, False, gripper)[0] == Verdict.GRASPABLE


def test_a_region_lying_on_the_support_plane_is_table():
    pts = _flat_scene()
    labels = np.zeros(pts.shape[:2], np.uint16)
    labels[10:50, 10:70] = 9
    plane = np.array([0.0, 0.0, -1.0, 0.5])  # z = 0.5, normal towards the camera
    (region,) = extract_regions(pts, labels, support_plane=plane)
    assert region.verdict == Verdict.TOO_FEW_POINTS
    assert "on the support plane" in region.reason


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, l: extract_regions(p[..., :2], l), "HxWx3"),
        (lambda p, l: extract_regions(p, l[:-1]), "does not match"),
        (lambda p, l: extract_regions(p, l.astype(np.float32)), "integer"),
        (lambda p, l: extract_regions(p, l - 1), "0..65535"),
        (lambda p, l: extract_regions(p, l, support_plane=[0, 0, 0, 1]), "non-zero normal"),
        (lambda p, l: extract_regions(p, l, rgb=np.zeros((2, 2, 3), np.uint8)), "rgb"),
        (lambda p, l: extract_regions(p, l, params=RegionParams(outlier_k=6)), "outlier_k"),
        (lambda p, l: extract_regions(p, l, GripperParams(min_range_m=3.0)), "range"),
        (lambda p, l: scene_cloud(p, stride=0), "stride"),
    ],
)
def test_bad_arguments_raise(call, message):
    pts = _flat_scene()
    labels = np.zeros(pts.shape[:2], np.int32)
    with pytest.raises(RegionError, match=message):
        call(pts, labels)


def test_no_instances_gives_no_regions():
    pts = _flat_scene()
    assert extract_regions(pts, np.zeros(pts.shape[:2], np.uint8)) == []


# -- label image, scene cloud, normals, PLY ---------------------------------------------------------


def test_label_image_matches_the_instance_mask(scenes):
    scene = scenes[2]
    regions = extract_regions(backproject(scene), scene.instance_mask, support_plane=scene.table_plane_camera)
    labels = label_image(regions, scene.depth_m.shape)
    assert labels.dtype == np.uint16 and labels.shape == scene.depth_m.shape
    assert (labels[labels > 0] == scene.instance_mask[labels > 0]).all()
    for r in regions:
        assert (labels == r.id).sum() == r.point_count
        assert (labels == r.id).sum() > 0.8 * (scene.instance_mask == r.id).sum()  # erosion + table cut
    xyz, rgb, ids = regions_cloud(regions)
    assert len(xyz) == len(ids) == labels.astype(bool).sum() and rgb is None
    assert set(np.unique(ids)) == {r.id for r in regions}


def test_scene_cloud_decimates_and_crops(scenes):
    scene = scenes[0]
    pts = backproject(scene)
    cloud = scene_cloud(pts, scene.rgb, scene.instance_mask, stride=2, max_range_m=0.8)
    assert cloud.xyz.shape == (240, 320, 3) and cloud.rgb.shape == (240, 320, 3)
    assert cloud.label.dtype == np.uint16 and cloud.label.shape == (240, 320)
    z = cloud.xyz[..., 2]
    assert np.nanmax(z) <= 0.8 and np.isnan(z).any()
    far = pts[::2, ::2, 2] > 0.8
    assert np.isnan(cloud.xyz[far]).all() and np.array_equal(cloud.xyz[~far], pts[::2, ::2][~far])
    assert np.shares_memory(scene_cloud(pts).xyz, pts)  # no crop, no copy


def test_pixel_angle_and_normals_on_the_table(scenes):
    scene = scenes[0]
    pts = backproject(scene)
    assert np.isclose(pixel_angle(pts), 1 / scene.K[0, 0], rtol=1e-3)
    normals = organized_normals(pts)
    table = cv2.erode(scene.table_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    cosines = normals[table] @ scene.table_plane_camera[:3]
    assert np.median(cosines) > 0.9999 and (cosines > 0.99).mean() > 0.99


def test_ply_round_trip(scenes, tmp_path):
    scene = scenes[0]
    pts = backproject(scene)
    names = {i + 1: f"{kind}/{i}" for i, kind in enumerate(scene.labels)}
    regions = extract_regions(pts, scene.instance_mask, rgb=scene.rgb, names=names,
                              support_plane=scene.table_plane_camera)
    paths = write_region_plys(tmp_path / "regions", regions)
    assert [p.name for p in paths][:1] == [f"region_001_{scene.labels[0]}_0.ply"]
    for path, r in zip(paths, regions):
        data = read_ply(path)
        assert len(data) == r.point_count
        assert np.array_equal(np.column_stack([data["x"], data["y"], data["z"]]), r.points)
        assert np.array_equal(np.column_stack([data["nx"], data["ny"], data["nz"]]), r.normals)
        assert np.array_equal(np.column_stack([data["red"], data["green"], data["blue"]]), r.colors)
    n = write_scene_ply(tmp_path / "scene.ply", pts, scene.rgb, stride=2)
    data = read_ply(tmp_path / "scene.ply")
    assert n == len(data) == np.isfinite(pts[::2, ::2]).all(axis=2).sum()
    assert np.isfinite(data["nx"]).all()
