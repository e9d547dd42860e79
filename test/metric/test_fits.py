"""Robust per-frame fits (:mod:`depth_perception.metric.fits`): RANSAC + IRLS against the oracle,
scale-only fits, and refusals with a reason.

Scenes and the emulated relative network come from metric_helpers.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from metric_helpers import A_TRUE, B_TRUE, GT, ORACLE_ABS_REL, PRED, abs_rel

from depth_perception.metric import apply_scale, fit_depth_affine, fit_inverse_affine, fit_scale
from depth_perception.metrics import oracle_inverse_affine, sparse_samples


def test_emulated_prediction_oracle_is_a_realistic_floor():
    # the oracle affine map recovers the network's map, and leaves the network's own error (~3 %)
    s, t = oracle_inverse_affine(PRED, GT)
    assert s == pytest.approx(1 / A_TRUE, rel=0.03) and t == pytest.approx(-B_TRUE / A_TRUE, abs=0.03)
    assert 0.01 < ORACLE_ABS_REL < 0.05


@pytest.mark.parametrize("n, outliers", [(200, 0.0), (200, 0.3), (500, 0.4), (2000, 0.4)])
def test_inverse_affine_fit_matches_the_oracle_despite_outliers(n, outliers):
    fit = fit_inverse_affine(PRED, sparse_samples(GT, n, outliers, seed=3), source="sparse_depth")
    assert fit.ok, fit.reason
    assert fit.space == "inverse_depth" and fit.source == "sparse_depth" and fit.n_points == n
    assert fit.inlier_ratio == pytest.approx(1 - outliers, abs=0.08)
    assert fit.residual < 0.06
    assert abs_rel(fit.apply(PRED)) <= 1.1 * ORACLE_ABS_REL


def test_least_squares_without_ransac_is_ruined_by_the_same_outliers():
    # what the robust fit protects against: one plain least-squares fit on the 30 % outlier samples
    samples = sparse_samples(GT, 200, 0.3, seed=3)
    plain = oracle_inverse_affine(PRED, samples, robust=False)
    assert abs_rel(apply_scale(PRED, *plain, "inverse_depth")) > 1.5 * ORACLE_ABS_REL


def test_scale_only_fit_for_a_metric_network():
    rng = np.random.default_rng(0)
    metric_pred = (GT * 1.37 * (1 + 0.02 * rng.normal(size=GT.shape))).astype(np.float32)
    fit = fit_scale(metric_pred, sparse_samples(GT, 200, 0.4, seed=4))
    assert fit.ok and fit.space == "depth" and fit.shift == 0.0
    assert fit.scale == pytest.approx(1 / 1.37, rel=0.01)
    assert fit.inlier_ratio == pytest.approx(0.6, abs=0.08)


# an affine-invariant *depth* network (Marigold, far = large): GT = 2.5 * pred + 0.4 m, plus noise
DEPTH_SCALE, DEPTH_SHIFT = 2.5, 0.4
_rng = np.random.default_rng(5)
PRED_DEPTH = ((GT * (1 + 0.02 * _rng.normal(size=GT.shape)) - DEPTH_SHIFT) / DEPTH_SCALE).astype(np.float32)


@pytest.mark.parametrize("outliers", [0.0, 0.3])
def test_depth_affine_fit_recovers_a_known_map_in_depth_space(outliers):
    fit = fit_depth_affine(PRED_DEPTH, sparse_samples(GT, 400, outliers, seed=6), source="sparse_depth")
    assert fit.ok, fit.reason
    assert fit.space == "depth" and fit.source == "sparse_depth"
    assert fit.scale == pytest.approx(DEPTH_SCALE, rel=0.03)
    assert fit.shift == pytest.approx(DEPTH_SHIFT, abs=0.03)
    assert fit.inlier_ratio == pytest.approx(1 - outliers, abs=0.08)
    assert abs_rel(fit.apply(PRED_DEPTH)) < 0.03


def test_an_inverse_depth_fit_cannot_explain_a_depth_prediction():
    # why the depth-space twin exists: far = large is anti-correlated with inverse depth
    fit = fit_inverse_affine(PRED_DEPTH, sparse_samples(GT, 400, 0.0, seed=6))
    assert not fit.ok


def test_fit_refuses_with_a_reason():
    few = fit_inverse_affine(PRED, sparse_samples(GT, 10, 0.0))
    assert not few.ok and "10 usable samples" in few.reason
    flat = fit_inverse_affine(PRED, np.where(np.isfinite(sparse_samples(GT, 300)), np.float32(0.8), np.nan))
    assert not flat.ok and "all 300 sample depths equal" in flat.reason
    noise = np.random.default_rng(0).uniform(0.3, 3.0, GT.shape).astype(np.float32)
    garbage = fit_inverse_affine(PRED, np.where(np.isfinite(sparse_samples(GT, 300)), noise, np.nan))
    assert not garbage.ok and ("inlier" in garbage.reason or "scale" in garbage.reason)
    assert not fit_scale(PRED, np.full(GT.shape, np.nan, np.float32)).ok
