"""Validity (:mod:`depth_perception.metric.validity`): flying pixels, depth range, non-finite values
and confidence.

Scenes and the emulated relative network come from metric_helpers.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from metric_helpers import GT, SCENE

from depth_perception.metric import apply_validity, flying_pixel_mask, validity_mask


def test_flying_pixels_at_an_injected_edge_are_removed():
    depth = np.full((40, 60), 1.0, np.float32)
    depth[:, 30:] = 0.5  # an object edge...
    depth[:, 28:33] = np.linspace(1.0, 0.5, 7)[1:-1]  # ...smeared over 5 pixels, as networks do
    mask = flying_pixel_mask(depth, 0.1)
    assert mask[:, 28:33].all() and not mask[:, :27].any() and not mask[:, 35:].any()
    out = depth.copy()
    valid = apply_validity(out, 0.1, 10.0, flying_threshold=0.1)
    assert np.isnan(out[:, 28:33]).all() and np.array_equal(valid, np.isfinite(out))
    assert np.isfinite(out[:, :27]).all() and np.isfinite(out[:, 35:]).all()  # nothing else, nothing filled


def test_flying_pixel_mask_keeps_smooth_slanted_surfaces():
    mask = flying_pixel_mask(GT, 0.1)
    edges = np.zeros_like(SCENE.instance_mask, dtype=bool)
    edges[:, 1:] |= SCENE.instance_mask[:, 1:] != SCENE.instance_mask[:, :-1]
    edges[1:, :] |= SCENE.instance_mask[1:, :] != SCENE.instance_mask[:-1, :]
    assert mask.mean() < 0.03
    assert not mask[SCENE.table_mask & ~edges].mean() > 0.01  # the slanted table stays


def test_validity_range_nonfinite_and_confidence():
    d = np.array([[0.05, 0.5, 25.0], [np.nan, -1.0, np.inf], [1.0, 2.0, 3.0]], np.float32)
    conf = np.array([[1, 1, 1], [1, 1, 1], [0.9, 0.2, 0.9]], np.float32)
    v = validity_mask(d, 0.1, 20.0, confidence=conf, min_confidence=0.5)
    np.testing.assert_array_equal(v, [[False, True, False], [False] * 3, [True, False, True]])
    with pytest.raises(ValueError, match="confidence map"):
        validity_mask(d, confidence=conf[:2], min_confidence=0.5)
