"""Tests of the organised-cloud grid helpers that have no other test file: RANSAC scoring."""
from __future__ import annotations

import numpy as np
import pytest

from depth_perception.grid import _msac_costs, fit_plane_ransac


def _reference_costs(sample, normals, d, threshold_m, threshold_rel):
    """MSAC in float64, one hypothesis at a time: sum of min((|n·p + d| / threshold)^2, 1)."""
    tol = threshold_m + threshold_rel * sample[:, 2]
    return np.array([np.minimum(((sample @ n + di) / tol) ** 2, 1.0).sum() for n, di in zip(normals, d)])


@pytest.mark.parametrize("threshold_rel", [0.0, 0.01])
def test_msac_costs_match_the_float64_definition(threshold_rel):
    rng = np.random.default_rng(3)
    # a table 1 m away with noise, a box on it, and outliers: costs from near 0 to the sample size
    table = np.column_stack([rng.uniform(-0.5, 0.5, 2000), rng.normal(0.3, 0.003, 2000), rng.uniform(0.7, 1.3, 2000)])
    box = np.column_stack([rng.uniform(-0.1, 0.1, 500), rng.uniform(0.1, 0.3, 500), rng.uniform(0.9, 1.0, 500)])
    sample = np.vstack([table, box, rng.uniform(-1, 2, (300, 3))])
    normals = rng.normal(size=(200, 3))
    normals[0] = [0.0, -1.0, 0.0]  # the table, y = 0.3
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    d = rng.uniform(-1, 1, 200)
    d[0] = 0.3
    ours = _msac_costs(sample, normals, d, 0.008, threshold_rel)
    ref = _reference_costs(sample, normals, d, 0.008, threshold_rel)
    assert ours.dtype == np.float64 and ours.shape == (200,)
    # float32 scoring: a residual's error is ~1e-5 of the threshold; costs agree to far below
    # the gap between two different planes' costs
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=0.05)
    assert np.argmin(ours) == np.argmin(ref) == 0


def test_fit_plane_ransac_finds_the_table():
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-0.5, 0.5, 5000), rng.normal(0.3, 0.002, 5000), rng.uniform(0.6, 1.4, 5000)])
    pts = np.vstack([pts, rng.uniform(-1, 2, (2000, 3))])
    plane = fit_plane_ransac(pts, np.random.default_rng(1), iterations=128, threshold_m=0.008, score_points=1000)
    # n·p + d = 0 with the normal towards the camera (the origin on the positive side): y = 0.3
    np.testing.assert_allclose(plane, [0.0, -1.0, 0.0, 0.3], atol=2e-3)
