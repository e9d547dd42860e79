"""Tests of SGBM stereo depth against the tabletop generator and the Middlebury Motorcycle pair."""
from __future__ import annotations

import numpy as np
import pytest

from depth_perception.scene import generate_tabletop
from depth_perception.stereo import (MiddleburyPair, StereoParams, baseline_from_projection, motorcycle_pair,
                                     num_disparities_for, stereo_depth)

MOTORCYCLE = motorcycle_pair()


def _metrics(pred_m: np.ndarray, gt_m: np.ndarray) -> tuple[float, float, float]:
    """(delta1, AbsRel, coverage) over pixels with ground truth; coverage = share of them predicted."""
    has_gt = np.isfinite(gt_m)
    both = has_gt & np.isfinite(pred_m)
    p, g = pred_m[both].astype(np.float64), gt_m[both].astype(np.float64)
    delta1 = float((np.maximum(p / g, g / p) < 1.25).mean())
    return delta1, float((np.abs(p - g) / g).mean()), float(both.sum() / has_gt.sum())


def test_motorcycle_pair_ground_truth():
    mp = MOTORCYCLE
    assert isinstance(mp, MiddleburyPair)
    assert mp.left.shape == mp.right.shape == (500, 741, 3) and mp.left.dtype == np.uint8
    assert mp.disparity_gt_px.shape == mp.depth_gt_m.shape == (500, 741)
    assert mp.disparity_gt_px.dtype == mp.depth_gt_m.dtype == np.float32
    known = np.isfinite(mp.disparity_gt_px)
    np.testing.assert_array_equal(known, np.isfinite(mp.depth_gt_m))
    assert 0.85 < known.mean() < 0.99  # the shipped map marks occlusions with inf
    np.testing.assert_allclose(mp.depth_gt_m[known],
                               mp.K[0, 0] * mp.baseline_m / (mp.disparity_gt_px[known] + mp.doffs_px), rtol=1e-5)
    assert mp.K[0, 0] == pytest.approx(3979.911 / 4) and mp.doffs_px == pytest.approx(124.343 / 4)
    assert mp.baseline_m == pytest.approx(0.193001)
    assert abs(mp.K[0, 2] - 311.193) < 0.5 and abs(mp.K[1, 2] - 254.877) < 0.5  # skimage docstring values
    assert 1.5 < np.nanmin(mp.depth_gt_m) < np.nanmax(mp.depth_gt_m) < 6.0


def test_motorcycle_sgbm_accuracy():
    mp = MOTORCYCLE
    nd = num_disparities_for(mp.K[0, 0], mp.baseline_m, 0.9 * np.nanmin(mp.depth_gt_m), mp.doffs_px)
    res = stereo_depth(mp.left, mp.right, mp.K[0, 0], mp.baseline_m, StereoParams(num_disparities=nd),
                       doffs=mp.doffs_px)
    delta1, abs_rel, coverage = _metrics(res.depth_m, mp.depth_gt_m)
    # measured with the defaults: delta1 0.975, AbsRel 0.016, coverage 0.846
    assert delta1 > 0.95 and abs_rel < 0.03 and coverage > 0.8


@pytest.mark.parametrize("seed", [0, 3])
def test_generator_pair_sgbm_accuracy(seed):
    scene = generate_tabletop(seed=seed, noise_std=2.0)
    fx = scene.K[0, 0]
    nd = num_disparities_for(fx, scene.baseline_m, float(np.nanmin(scene.depth_m)))
    res = stereo_depth(scene.rgb, scene.right_rgb, fx, scene.baseline_m, StereoParams(num_disparities=nd))
    delta1, abs_rel, coverage = _metrics(res.depth_m, scene.depth_m)
    # measured: AbsRel 0.0035 / 0.0092, coverage 0.89 / 0.76 (seed 3 needs 128 disparities: wider blind strip)
    assert abs_rel < 0.05 and coverage > 0.6 and delta1 > 0.97
    obj_delta1, _, obj_coverage = _metrics(res.depth_m, np.where(scene.instance_mask > 0, scene.depth_m, np.nan))
    assert obj_delta1 > 0.97 and obj_coverage > 0.7


def test_half_scale_motorcycle_accuracy():
    """scale 0.5 matches the pair at 370x250 and still measures the real scene: measured delta1
    0.965, AbsRel 0.023, coverage 0.834 (full size: 0.975, 0.016, 0.846)."""
    mp = MOTORCYCLE
    nd = num_disparities_for(mp.K[0, 0], mp.baseline_m, 0.9 * np.nanmin(mp.depth_gt_m), mp.doffs_px)
    res = stereo_depth(mp.left, mp.right, mp.K[0, 0], mp.baseline_m,
                       StereoParams(num_disparities=nd, scale=0.5), doffs=mp.doffs_px)
    assert res.depth_m.shape == mp.depth_gt_m.shape
    delta1, abs_rel, coverage = _metrics(res.depth_m, mp.depth_gt_m)
    assert delta1 > 0.95 and abs_rel < 0.03 and coverage > 0.8


def test_half_scale_disparity_is_in_full_size_pixels():
    scene = generate_tabletop(seed=1)
    fx, B = scene.K[0, 0], scene.baseline_m
    full = stereo_depth(scene.rgb, scene.right_rgb, fx, B, StereoParams())
    half = stereo_depth(scene.rgb, scene.right_rgb, fx, B, StereoParams(scale=0.5))
    assert half.depth_m.shape == full.depth_m.shape == scene.depth_m.shape
    np.testing.assert_array_equal(half.valid, np.isfinite(half.depth_m))
    both = full.valid & half.valid
    assert both.mean() > 0.7
    # same disparities as full size (not half of them), to a fraction of a pixel
    assert abs(float(np.median(half.disparity_px[both] - full.disparity_px[both]))) < 0.25
    _, abs_rel, coverage = _metrics(half.depth_m, scene.depth_m)
    assert abs_rel < 0.01 and coverage > 0.75  # measured 0.006 and 0.80 (full size: 0.003, 0.80)
    # the left strip without the full search range stays invalid at full-size width
    assert not half.valid[:, :128].any()


def _step_pair(d_back: int, d_front: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured 240x320 pair: a background at disparity d_back and a square in front of it at
    d_front; returns (left, right, true disparity)."""
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    left = np.repeat(np.repeat(left[:, ::2], 2, axis=1)[:, :320], 1, axis=0)  # 2-px texture grains
    truth = np.full(left.shape, float(d_back), np.float32)
    truth[80:160, 160:240] = d_front
    right = np.zeros_like(left)
    cols = np.arange(320)
    for y in range(240):  # the right image sees each left pixel x at x - d (back first, front over it)
        for d, xs in ((d_back, cols), (d_front, cols[160:240] if 80 <= y < 160 else cols[:0])):
            ok = xs - d >= 0
            right[y, xs[ok] - d] = left[y, xs[ok]]
    return left, right, truth


def test_half_scale_keeps_depth_edges():
    """Edge-aware upsampling: bilinear on the surfaces, nearest at the step, so no disparity lands
    between the square's and the background's (a flying pixel)."""
    left, right, truth = _step_pair(20, 40)
    res = stereo_depth(left, right, 500.0, 0.1, StereoParams(num_disparities=64, scale=0.5))
    v = res.valid
    assert v[80:160, 160:240].mean() > 0.8 and v[:, 64:].mean() > 0.8
    d = res.disparity_px[v]
    between = (d > 21) & (d < 39)
    assert between.sum() < 20  # measured 3 (bilinear everywhere: 493; full size: 0)
    assert np.abs(res.disparity_px[v] - truth[v]).mean() < 0.5


def test_scale_rounds_the_disparity_range_up():
    assert StereoParams(num_disparities=128, scale=0.5).matched().num_disparities == 64
    assert StereoParams(num_disparities=144, scale=0.5).matched().num_disparities == 80
    assert StereoParams(scale=1.0).matched() == StereoParams()
    with pytest.raises(ValueError, match="scale"):
        StereoParams(scale=0.0).check()


def test_result_invariants_and_gray_input():
    scene = generate_tabletop(seed=2, width=320, height=240)
    fx, B = scene.K[0, 0], scene.baseline_m
    params = StereoParams(num_disparities=64)
    res = stereo_depth(scene.rgb.mean(axis=2).astype(np.uint8), scene.right_rgb.mean(axis=2).astype(np.uint8),
                       fx, B, params, min_depth_m=0.2, max_depth_m=3.0)
    assert res.depth_m.dtype == res.disparity_px.dtype == np.float32 and res.valid.dtype == bool
    np.testing.assert_array_equal(res.valid, np.isfinite(res.depth_m))
    np.testing.assert_array_equal(res.valid, np.isfinite(res.disparity_px))
    assert not res.valid[:, :64].any()  # no full search range in the left strip
    v = res.valid
    np.testing.assert_allclose(res.depth_m[v], fx * B / res.disparity_px[v], rtol=1e-5)
    assert res.depth_m[v].min() >= 0.2 and res.depth_m[v].max() <= 3.0
    assert res.valid.mean() > 0.5


def test_doffs_shifts_depth():
    mp = MOTORCYCLE
    params = StereoParams(num_disparities=80)
    with_doffs = stereo_depth(mp.left, mp.right, mp.K[0, 0], mp.baseline_m, params, doffs=mp.doffs_px)
    without = stereo_depth(mp.left, mp.right, mp.K[0, 0], mp.baseline_m, params)
    v = with_doffs.valid & without.valid
    assert (without.depth_m[v] > with_doffs.depth_m[v]).all()


def test_num_disparities_for():
    assert num_disparities_for(500.0, 0.1, 0.5) == 112  # 100 px rounded up to 16
    assert num_disparities_for(500.0, 0.1, 0.5, doffs=10.0) == 96
    assert num_disparities_for(500.0, 0.1, 100.0) == 16
    with pytest.raises(ValueError, match="min_depth_m"):
        num_disparities_for(500.0, 0.1, 0.0)


def test_baseline_from_projection():
    fx, B = 612.5, 0.0753
    P = np.array([[fx, 0, 320.0, -fx * B], [0, fx, 240.0, 0], [0, 0, 1, 0]])
    assert baseline_from_projection(P) == pytest.approx(B)
    assert baseline_from_projection(P.ravel().tolist()) == pytest.approx(B)  # CameraInfo.p is 12 floats
    with pytest.raises(ValueError, match="3x4"):
        baseline_from_projection(np.eye(3))
    with pytest.raises(ValueError, match="fx"):
        baseline_from_projection(np.zeros((3, 4)))


_GRAY = np.zeros((60, 200), np.uint8)


@pytest.mark.parametrize("left, right, kwargs, word", [
    (_GRAY, np.zeros((60, 180), np.uint8), {}, "same shape"),
    (_GRAY.astype(np.float32), _GRAY, {}, "uint8"),
    (_GRAY, [[0]], {}, "numpy array"),
    (np.zeros((60, 200, 4), np.uint8), np.zeros((60, 200, 4), np.uint8), {}, "shape"),
    (_GRAY, _GRAY, {"fx": 0.0}, "fx"),
    (_GRAY, _GRAY, {"baseline_m": -0.1}, "baseline_m"),
    (_GRAY, _GRAY, {"params": StereoParams(num_disparities=40)}, "multiple of 16"),
    (_GRAY, _GRAY, {"params": StereoParams(block_size=4)}, "block_size"),
    (_GRAY, _GRAY, {"params": StereoParams(mode="fast")}, "mode"),
    (_GRAY, _GRAY, {"params": StereoParams(num_disparities=208)}, "width"),
    (_GRAY, _GRAY, {"params": StereoParams(num_disparities=176, min_disparity=15, scale=0.5)},
     "at scale 0.5"),
    (_GRAY, _GRAY, {"min_depth_m": 2.0, "max_depth_m": 1.0}, "max_depth_m"),
])
def test_bad_input_raises_value_error(left, right, kwargs, word):
    args = {"fx": 500.0, "baseline_m": 0.1, "params": StereoParams(num_disparities=64)} | kwargs
    with pytest.raises(ValueError, match=word):
        stereo_depth(left, right, **args)
