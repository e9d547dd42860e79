"""Pictures for people: the colourised depth and the instance overlay the node publishes for RViz."""

from __future__ import annotations

import numpy as np
import pytest

from depth_perception.scene import generate_tabletop
from depth_perception.visualize import colorize_depth, depth_range, depth_to_gray8, label_overlay


@pytest.fixture(scope="module")
def scene():
    return generate_tabletop(seed=0, width=640, height=480)


def test_depth_range_from_a_subsample_matches_the_exact_percentiles(scene):
    depth = scene.depth_m.copy()
    depth[:40] = np.nan  # invalid pixels are ignored
    near, far = depth_range(depth)
    valid = depth[np.isfinite(depth)]
    exact_near, exact_far = np.percentile(valid, [2.0, 98.0])
    assert near == pytest.approx(exact_near, rel=0.01)
    assert far == pytest.approx(exact_far, rel=0.01)


def test_colourised_depth_is_black_where_depth_is_invalid_and_near_differs_from_far(scene):
    depth = scene.depth_m.copy()
    depth[100:120, 200:260] = np.nan
    rgb = colorize_depth(depth)
    assert rgb.shape == (*depth.shape, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert (rgb[100:120, 200:260] == 0).all()
    gray = depth_to_gray8(depth)
    near = np.unravel_index(np.nanargmin(depth), depth.shape)
    far = np.unravel_index(np.nanargmax(depth), depth.shape)
    assert gray[near] > gray[far] > 0
    assert not np.array_equal(rgb[near], rgb[far])


def test_overlay_blends_labelled_pixels_and_leaves_the_background_untouched(scene):
    labels = np.zeros(scene.depth_m.shape, np.uint16)
    labels[50:80, 60:90] = 3
    labels[200:220, 300:400] = 65535  # a large id needs no special case
    out = label_overlay(scene.rgb, labels, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == scene.rgb.shape
    background = labels == 0
    assert np.array_equal(out[background], scene.rgb[background])
    patch = out[50:80, 60:90].astype(int)
    colour = patch * 2 - scene.rgb[50:80, 60:90].astype(int)  # out = (rgb + colour) / 2
    assert np.ptp(colour.reshape(-1, 3), axis=0).max() <= 2  # one colour per instance
    assert (colour >= 40 - 2).all()  # from the palette (40..255), not the image
    assert not np.array_equal(out[labels == 3][0], out[labels == 65535][0])
