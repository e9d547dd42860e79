"""The compiled cleaning pass (depth_perception/_regions_kernel.cpp) against the numpy implementation.

Both follow the same float32 arithmetic step by step, so they keep the same points (pixel indices,
coordinates, colours and grid normals equal), and both sum moments in float64, so the descriptors
agree to rounding (1e-6 here). The inputs cover what each step branches on: erosion radius, 4 / 8
neighbourhoods, decimation, the support plane, depth edges and depth outliers, components split by
an occluder (merged in Python), bad data, label ids beyond 255, masks touching every image border,
and widths that are not a multiple of 4.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import replace

import cv2
import numpy as np
import pytest

from depth_perception import regions
from depth_perception.camera import CameraModel
from depth_perception.regions import GripperParams, RegionError, RegionParams, extract_regions
from depth_perception.scene import generate_tabletop

if not regions.kernel_available():
    if os.environ.get("DP_REQUIRE_KERNEL") == "1":
        raise RuntimeError("DP_REQUIRE_KERNEL=1 but depth_perception._regions_kernel is not built")
    pytest.skip("the compiled regions kernel is not built", allow_module_level=True)

K = np.array([[500.0, 0, 80], [0, 500.0, 60], [0, 0, 1]])


def backproject(depth_m: np.ndarray, K: np.ndarray = K) -> np.ndarray:
    h, w = depth_m.shape
    return CameraModel(width=w, height=h, K=K).backproject(depth_m)


def both(pts, labels, params: RegionParams = RegionParams(), gripper: GripperParams = GripperParams(), **kw):
    """extract_regions with each implementation, checked equal; returns the compiled result."""
    compiled = extract_regions(pts, labels, gripper, replace(params, implementation="compiled"), **kw)
    reference = extract_regions(pts, labels, gripper, replace(params, implementation="numpy"), **kw)
    assert [r.id for r in compiled] == [r.id for r in reference]
    for c, r in zip(compiled, reference):
        where = f"region {r.id}"
        for name in ("label", "score", "roi", "shape", "stride", "verdict", "box_method", "reason", "notes"):
            assert getattr(c, name) == getattr(r, name), f"{where}: {name}"
        for name in ("pixel_index", "points", "normal_vectors"):
            assert np.array_equal(getattr(c, name), getattr(r, name)), f"{where}: {name}"
        assert (c.colors is None) == (r.colors is None)
        if c.colors is not None:
            assert np.array_equal(c.colors, r.colors), f"{where}: colors"
        for name in ("centroid", "surface_centroid", "box_center", "box_size", "approach"):
            assert np.allclose(getattr(c, name), getattr(r, name), rtol=1e-6, atol=1e-6, equal_nan=True), \
                f"{where}: {name}"
        # box axes are directions: an eigenvector's sign is arbitrary
        for name in ("closing_axis", "box_rotation"):
            assert np.allclose(np.abs(getattr(c, name)), np.abs(getattr(r, name)), atol=1e-5, equal_nan=True), \
                f"{where}: {name}"
        assert np.isclose(c.grasp_width, r.grasp_width, rtol=1e-6, atol=1e-7, equal_nan=True)
    return compiled


@pytest.mark.parametrize("seed", range(4))
def test_generator_scenes_with_and_without_the_plane(seed):
    scene = generate_tabletop(seed, n_objects=8)
    pts = backproject(scene.depth_m, scene.K)
    with_plane = both(pts, scene.instance_mask, rgb=scene.rgb, support_plane=scene.table_plane_camera)
    both(pts, scene.instance_mask)
    assert sum(r.point_count for r in with_plane) > 1000


@pytest.mark.parametrize("params", [
    RegionParams(outlier_k=8),
    RegionParams(erosion_px=0),
    RegionParams(erosion_px=2),
    RegionParams(stride=2),
    RegionParams(stride=3, outlier_k=8),
    RegionParams(outlier_std_ratio=0.3, outlier_min_px=0.0),  # many outliers
    RegionParams(cluster_gap_m=0.001, cluster_gap_px=0.5, min_cluster_fraction=0.0),  # many components
    RegionParams(edge_jump_m=0.002, edge_jump_px=1.0, mad_k=1.0, mad_floor_m=0.001),  # many depth rejects
    RegionParams(min_pixels=5000),  # masks too small to erode
], ids=["k8", "no-erosion", "erosion-2", "stride-2", "stride-3-k8", "strict-outliers", "fragmented",
        "strict-depth", "uneroded"])
def test_every_cleaning_setting(params):
    scene = generate_tabletop(7, n_objects=8)
    noisy = scene.depth_m + np.random.default_rng(7).normal(0, 0.002, scene.depth_m.shape).astype(np.float32)
    both(backproject(noisy, scene.K), scene.instance_mask, params, rgb=scene.rgb,
         support_plane=scene.table_plane_camera)


def test_bled_masks_over_flying_pixels():
    """Masks grown over object borders whose depth is mixed with the background, and spikes: what
    the depth edges and the depth outliers are for."""
    scene = generate_tabletop(3, n_objects=8)
    rng = np.random.default_rng(3)
    fg = scene.instance_mask > 0
    border = (cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0) & ~fg
    depth = scene.depth_m.copy()
    depth[border] -= rng.uniform(0.0, 0.2, border.sum()).astype(np.float32)
    spikes = fg & (rng.random(fg.shape) < 0.01)
    depth[spikes] += rng.uniform(0.05, 0.3, spikes.sum()).astype(np.float32)
    masks = cv2.dilate(scene.instance_mask, np.ones((7, 7), np.uint8))
    both(backproject(depth, scene.K), masks, rgb=scene.rgb, support_plane=scene.table_plane_camera)
    both(backproject(depth, scene.K), masks, RegionParams(erosion_px=0))


def test_an_occluded_object_is_merged_the_same_way():
    """A pole splits a box in two halves: the kernel reports the second half, Python merges it."""
    depth = np.full((120, 160), 2.0, np.float32)
    depth[40:80, 40:100] = 0.6
    depth[:, 68:71] = 0.4
    labels = np.zeros((120, 160), np.uint16)
    labels[40:80, 40:100] = 3
    labels[:, 68:71] = 7
    box = next(r for r in both(backproject(depth), labels, RegionParams(erosion_px=0)) if r.id == 3)
    assert box.point_count == 38 * 53  # less the one-pixel rim on the depth edges
    # far apart halves stay apart: only the larger one is kept
    depth[40:80, 71:100] = 1.2
    box = next(r for r in both(backproject(depth), labels, RegionParams(erosion_px=0)) if r.id == 3)
    assert box.point_count == 38 * 27


def test_bad_data_borders_large_ids_and_odd_widths():
    depth = np.full((61, 157), 0.5, np.float32)  # 157: rows are not a multiple of 4 labels wide
    labels = np.zeros(depth.shape, np.uint16)
    labels[0:10, 0:20] = 300  # top-left corner
    labels[51:61, 140:157] = 65535  # bottom-right corner, the largest id
    labels[20:40, 156] = 2  # a one-pixel column on the right border
    labels[5:25, 30:50] = 1  # all NaN
    labels[40, 40] = 4  # one pixel
    labels[10:30, 60:80] = 5  # behind the camera
    labels[45, 60:90] = 6  # a line
    pts = backproject(depth, np.array([[300.0, 0, 78], [0, 300.0, 30], [0, 0, 1]])).copy()
    pts[5:25, 30:50] = np.nan
    pts[10:30, 60:80] *= -1
    found = {r.id: r for r in both(pts, labels, support_plane=np.array([0.0, -1.0, 0.0, 0.3]))}
    assert set(found) == {1, 2, 4, 5, 6, 300, 65535}
    assert found[1].point_count == 0 and found[1].roi == (30, 5, 20, 20)
    both(pts, labels, RegionParams(erosion_px=0, outlier_k=8))
    both(pts, labels, RegionParams(stride=2))


def test_no_labels_and_one_row():
    # a camera whose principal point lies on the one-row image (CameraModel refuses one far off)
    pts = backproject(np.full((1, 33), 0.7, np.float32), K=np.array([[500.0, 0, 16], [0, 500.0, 0], [0, 0, 1]]))
    labels = np.zeros((1, 33), np.uint16)
    assert both(pts, labels) == []
    labels[0, 3:30] = 9
    (region,) = both(pts, labels, RegionParams(erosion_px=0), GripperParams(min_points=5))
    assert region.point_count == 27


def test_compiled_on_request_needs_the_module(monkeypatch):
    import depth_perception

    monkeypatch.delattr(depth_perception, "_regions_kernel")
    monkeypatch.setitem(sys.modules, "depth_perception._regions_kernel", None)  # import fails
    assert regions.implementation_in_use(RegionParams()) == "numpy"
    with pytest.raises(RegionError, match="not built"):
        regions.implementation_in_use(RegionParams(implementation="compiled"))


def test_collect_needs_its_own_clean():
    from depth_perception import _regions_kernel as kernel

    n = np.empty(1, np.int64)
    with pytest.raises(RuntimeError, match="matching clean"):
        kernel.collect(0, None, None, np.zeros(1, np.int32), 1, 1, n, n, n, None, n, n, n, n, n, n, n, n)


def test_threads_keep_their_own_scratch():
    """The kernel releases the GIL and keeps per-thread scratch: concurrent frames do not mix."""
    frames = [generate_tabletop(seed, n_objects=6) for seed in (1, 2)]
    inputs = [(backproject(s.depth_m, s.K), s.instance_mask, s.table_plane_camera) for s in frames]
    expected = [[r.point_count for r in extract_regions(p, l, support_plane=pl)] for p, l, pl in inputs]
    results: dict[int, list] = {0: [], 1: []}

    def work(i: int) -> None:
        p, l, pl = inputs[i]
        for _ in range(20):
            results[i].append([r.point_count for r in extract_regions(p, l, support_plane=pl)])

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(got == expected[i] for i in (0, 1) for got in results[i])
