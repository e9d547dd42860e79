"""Depth accuracy metrics and the accuracy harness helpers (emulated network output, sparse signals,
oracle affine fit)."""
from __future__ import annotations

import numpy as np
import pytest

from depth_perception.metrics import (DepthMetrics, depth_metrics, emulate_relative_prediction,
                                      matched_iou, oracle_inverse_affine, sparse_samples)
from depth_perception.scene import generate_tabletop

GT = generate_tabletop(seed=1, width=160, height=120).depth_m


def test_perfect_prediction():
    m = depth_metrics(GT, GT)
    assert isinstance(m, DepthMetrics)
    assert m.abs_rel == 0 and m.rmse_m == 0 and m.log_rmse == 0 and m.silog == 0
    assert m.delta1 == m.delta2 == m.delta3 == 1.0 and m.coverage == 1.0 and m.n == GT.size


def test_known_errors():
    m = depth_metrics(GT * 1.1, GT)
    assert m.abs_rel == pytest.approx(0.1, rel=1e-5)
    assert m.log_rmse == pytest.approx(np.log(1.1), rel=1e-5)
    assert m.silog == pytest.approx(0.0, abs=1e-3)  # a global scale error is scale-invariant
    assert m.delta1 == 1.0
    m = depth_metrics(GT * 1.3, GT)
    assert m.delta1 == 0.0 and m.delta2 == 1.0
    gt = np.array([[1.0, 2.0]], np.float32)
    assert depth_metrics(np.array([[1.5, 2.0]], np.float32), gt).rmse_m == pytest.approx(np.sqrt(0.125))


def test_invalid_pixels_and_coverage():
    pred = GT.copy()
    pred[:, : GT.shape[1] // 4] = np.nan  # a quarter predicted as invalid
    gt = GT.copy()
    gt[0, :] = 0.0  # no ground truth on the first row
    m = depth_metrics(pred, gt)
    assert m.coverage == pytest.approx(0.75, abs=0.01) and m.abs_rel == 0
    masked = depth_metrics(GT * 2, GT, mask=np.zeros(GT.shape, bool))
    assert masked.n == 0 and np.isnan(masked.abs_rel) and masked.coverage == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        depth_metrics(GT[1:], GT)


def test_emulated_prediction_is_affine_in_inverse_depth_without_errors():
    pred = emulate_relative_prediction(GT, 2.5, -0.3, noise=0.0, lowfreq=0.0, blur_px=0.0)
    np.testing.assert_allclose(pred, 2.5 / GT - 0.3, rtol=1e-5)
    noisy = emulate_relative_prediction(GT, 2.5, -0.3, seed=3)
    err = (noisy + 0.3) * GT / 2.5 - 1  # relative error in inverse depth
    assert 0.02 < np.std(err) < 0.06
    # same bias_seed: a static scene's bias repeats; only the pixel noise changes
    a = emulate_relative_prediction(GT, 2.5, 0.0, seed=1, bias_seed=9, noise=0.0)
    b = emulate_relative_prediction(GT, 2.5, 0.0, seed=2, bias_seed=9, noise=0.0)
    np.testing.assert_array_equal(a, b)


def test_sparse_samples_and_outliers():
    s = sparse_samples(GT, 300, 0.4, seed=0)
    has = np.isfinite(s)
    assert has.sum() == 300
    ratio = s[has] / GT[has]
    off = np.abs(np.log(ratio)) > np.log(1.25) - 1e-6
    assert off.sum() == 120 and np.allclose(ratio[~off], 1.0)
    assert np.all(np.abs(np.log(ratio[off])) <= np.log(3.0) + 1e-6)


def test_oracle_recovers_the_exact_map():
    pred = emulate_relative_prediction(GT, 2.5, -0.3, noise=0.0, lowfreq=0.0, blur_px=0.0)
    for robust in (True, False):
        s, t = oracle_inverse_affine(pred, GT, robust=robust)
        assert s == pytest.approx(1 / 2.5, rel=1e-5) and t == pytest.approx(0.3 / 2.5, abs=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        oracle_inverse_affine(pred, np.full_like(GT, np.nan))


def test_matched_iou_pairs_instances_one_to_one_whatever_their_ids():
    true = np.zeros((4, 6), np.uint16)
    true[:, :3], true[:, 3:] = 1, 2
    pred = np.zeros_like(true)
    pred[:, :3] = 7  # the first object exactly, under another id
    pred[:2, 3:] = 5  # half of the second
    np.testing.assert_allclose(matched_iou(true, pred), [1.0, 0.5])
    np.testing.assert_array_equal(matched_iou(true, np.zeros_like(true)), [0.0, 0.0])
