"""Geometric segmentation (support plane + clustering) on generator scenes with exact depth."""

from __future__ import annotations

import numpy as np
import pytest
from seg_helpers import tabletop

from depth_perception.metrics import matched_iou
from depth_perception.segmentation import GeometricParams, Segmentation, SegmentationError
from depth_perception.segmentation.geometric import _grow, find_planes, segment_geometric


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


# -- growing the feet over a frontier -----------------------------------------------------------------


def _grow_by_rescanning(lab, band_idx, P, gap, row, max_iter):
    """The definition of growing the feet: every pass examines every still-free band pixel and
    gives it the label of its first (right, left, down, up) labelled 4-neighbour within its gap."""
    free = band_idx
    for _ in range(max_iter):
        if free.size == 0:
            break
        best = np.zeros(len(free), lab.dtype)
        for step in (1, -1, row, -row):
            nb = free + step
            src = lab[nb]
            with np.errstate(invalid="ignore"):
                near = ((P[free] - P[nb]) ** 2).sum(axis=1) < gap[free] ** 2
            take = (best == 0) & (src > 0) & near
            best[take] = src[take]
        got = best > 0
        if not got.any():
            break
        lab[free[got]] = best[got]
        free = free[~got]


def _stereo_cloud(seed: int) -> np.ndarray:
    """The organised cloud of a VGA generator scene's SGBM depth: noisy, so the band of pixels just
    above the table is large (tens of thousands of pixels) and the feet grow over several rings."""
    from depth_perception.camera import CameraModel
    from depth_perception.scene import generate_tabletop
    from depth_perception.stereo import stereo_depth

    scene = generate_tabletop(seed=seed)
    depth = stereo_depth(scene.rgb, scene.right_rgb, scene.K[0, 0], scene.baseline_m).depth_m
    h, w = depth.shape
    return CameraModel(width=w, height=h, K=scene.K).backproject(depth)


@pytest.mark.parametrize("seed", [0, 2])
def test_frontier_growth_gives_the_same_segmentation_as_rescanning(seed, monkeypatch):
    import depth_perception.segmentation.geometric as geometric

    points = _stereo_cloud(seed)
    grown = segment_geometric(points)
    monkeypatch.setattr(geometric, "_grow", _grow_by_rescanning)
    reference = segment_geometric(points)
    assert len(reference) >= 4
    np.testing.assert_array_equal(grown.labels, reference.labels)


def _strip(z_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A one-row padded grid (3 rows x (n + 2) columns) of points at x = 0.001 m steps, depths z_m;
    returns (flat padded cloud, flat gap, row length)."""
    n = len(z_m)
    row = n + 2
    P = np.full((3, row, 3), np.nan, np.float32)
    P[1, 1:-1, 0] = np.arange(n) * 0.001
    P[1, 1:-1, 1] = 0.0
    P[1, 1:-1, 2] = z_m
    return P.reshape(-1, 3), np.full(3 * row, 0.002, np.float32), row


def test_growth_is_one_ring_per_pass():
    P, gap, row = _strip(np.full(10, 0.5, np.float32))
    lab = np.zeros(len(P), np.int64)
    lab[row + 1] = 7  # the first pixel of the strip is labelled, the rest is band
    band = np.arange(row + 2, row + 11)
    _grow(lab, band, P, gap, row, max_iter=3)
    np.testing.assert_array_equal(lab[row + 1: row + 11], [7, 7, 7, 7, 0, 0, 0, 0, 0, 0])


def test_growth_stops_at_a_3d_gap_and_goes_around_it():
    z = np.full(10, 0.5, np.float32)
    z[5:] = 0.6  # a 10 cm step between pixels 4 and 5
    P, gap, row = _strip(z)
    lab = np.zeros(len(P), np.int64)
    lab[row + 1] = 1
    band = np.arange(row + 2, row + 11)
    _grow(lab, band, P, gap, row, max_iter=20)
    np.testing.assert_array_equal(lab[row + 1: row + 11] > 0, [True] * 5 + [False] * 5)
    # a second label beyond the step grows there, even though its pixels were examined before
    lab[row + 10] = 2
    _grow(lab, band[lab[band] == 0], P, gap, row, max_iter=20)
    np.testing.assert_array_equal(lab[row + 1: row + 11], [1] * 5 + [2] * 5)


def test_growth_prefers_the_right_neighbour_on_a_tie():
    P, gap, row = _strip(np.full(3, 0.5, np.float32))
    lab = np.zeros(len(P), np.int64)
    lab[row + 1], lab[row + 3] = 4, 9  # the middle pixel has a labelled neighbour on either side
    _grow(lab, np.array([row + 2]), P, gap, row, max_iter=1)
    assert lab[row + 2] == 9  # right first, then left, down, up (as the rescanning definition)


# -- components: each edge test on the edges that passed the one before ------------------------------


def _components_by_definition(cand_idx, xyz, gap, row, cos_cut=None):
    """The definition of the components: every 4-neighbour edge (and every edge jumping one invalid
    pixel) between candidates gets every test: short in 3-D, and for 4-neighbour edges not a sharp
    concave fold (normals one pixel beyond each end; NaN normals never cut)."""
    from depth_perception.grid import grid_components
    from depth_perception.segmentation.geometric import _normals_at

    X, Y, Z = xyz
    n_nodes = len(cand_idx)
    normals = np.full(xyz.shape, np.nan, np.float32)
    everywhere = np.arange(row + 1, len(X) - row - 1)
    normals[:, everywhere] = _normals_at(xyz, everywhere, row)
    node = np.full(len(X), -1, np.int64)
    node[cand_idx] = np.arange(n_nodes)
    right, edges = np.zeros(max(n_nodes - 1, 0), bool), []
    for step, jump in ((1, False), (row, False), (2, True), (2 * row, True)):
        j = node[cand_idx + step]
        a = np.flatnonzero(j >= 0)
        ia, ib = cand_idx[a], cand_idx[j[a]]
        if jump:
            over = ~np.isfinite(Z[ia + step // 2])
            a, ia, ib = a[over], ia[over], ib[over]
        d2 = (X[ib] - X[ia]) ** 2 + (Y[ib] - Y[ia]) ** 2 + (Z[ib] - Z[ia]) ** 2
        ok = d2 < (np.minimum(gap[ia], gap[ib]) * (2 if jump else 1)) ** 2
        if cos_cut is not None and not jump:
            na, nb = normals[:, ia - step], normals[:, ib + step]
            d = xyz[:, ib + step] - xyz[:, ia - step]
            with np.errstate(invalid="ignore"):
                sharp = (na * nb).sum(axis=0) < cos_cut
                concave = ((na * d).sum(axis=0) > 0) & ((nb * d).sum(axis=0) < 0)
            ok &= ~(sharp & concave)
        if step == 1:
            right[a[ok]] = True
        else:
            edges.append((a[ok], j[a[ok]]))
    return grid_components(n_nodes, right, edges)


@pytest.mark.parametrize("seed", [1, 3])
def test_staged_edge_tests_give_the_components_of_the_definition(seed, monkeypatch):
    """The fast path tests the gap on every edge, the fold only on short edges with sharp normals,
    and leaves normals unset where it never reads them: the same segmentation as testing every
    edge with normals everywhere, on noisy SGBM clouds with touching-object creases."""
    import depth_perception.segmentation.geometric as geometric

    points = _stereo_cloud(seed)
    staged = segment_geometric(points)
    monkeypatch.setattr(geometric, "_components", _components_by_definition)
    reference = segment_geometric(points)
    assert len(reference) >= 4
    np.testing.assert_array_equal(staged.labels, reference.labels)
