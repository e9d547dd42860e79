"""Which camera model the pipeline reads a CameraInfo with (image_geometry's conventions), checked on
a stereo rig with distortion, P != K and R != I, rectified by OpenCV's own ``stereoRectify``."""

from __future__ import annotations

import numpy as np
import pytest

from depth_perception.pipeline import Frame, Pipeline, PipelineConfig, PipelineError
from depth_perception.stereo import StereoParams
from stereo_rig import make_rig


@pytest.fixture(scope="module")
def rig():
    return make_rig()


def _stereo(**config) -> Pipeline:
    return Pipeline(PipelineConfig(stereo=StereoParams(), segmentation=(), max_depth_m=3.0, **config))


def _errors(result, rig, true_depth):
    """(median relative depth error, median 3-D point error in metres) against the truth."""
    ok = np.isfinite(result.depth_m)
    assert ok.mean() > 0.4
    depth_err = np.median(np.abs(result.depth_m[ok] - true_depth[ok]) / true_depth[ok])
    truth = true_depth[..., None] * rig.rays_rectified()
    point_err = np.nanmedian(np.linalg.norm(result.points - truth, axis=-1))
    return depth_err, point_err


def test_a_rectified_pair_is_read_through_P_not_K_and_D(rig):
    left, right, depth = rig.rectified_pair()
    frame = Frame(rgb=left, camera=rig.left, right_rgb=right, right_camera=rig.right,
                  image_rectified=True)  # as the node marks an `image_rect` topic
    result = _stereo().process(frame)
    depth_err, point_err = _errors(result, rig, depth)
    assert depth_err < 0.02 and point_err < 0.02
    # reading the rays from the raw K and D (undistorting a rectified image a second time) misplaces
    # the same depth by several centimetres at ~1 m
    twice = rig.left.backproject(result.depth_m)
    truth = depth[..., None] * rig.rays_rectified()
    assert np.nanmedian(np.linalg.norm(twice - truth, axis=-1)) > 3 * point_err
    assert result.camera.D.size == 0 and np.allclose(result.camera.K, rig.left.P[:, :3])
    assert result.geometry.startswith("rectified: rays from P")


def test_a_stereo_pair_without_a_topic_name_is_taken_as_rectified(rig):
    left, right, depth = rig.rectified_pair()
    result = _stereo().process(Frame(rgb=left, camera=rig.left, right_rgb=right,
                                     right_camera=rig.right))
    assert _errors(result, rig, depth)[0] < 0.02


def test_a_raw_pair_is_rectified_first_with_rectify(rig):
    raw_left, raw_right = rig.raw_pair()
    _, _, depth = rig.rectified_pair()
    result = _stereo(rectify=True).process(
        Frame(rgb=raw_left, camera=rig.left, right_rgb=raw_right, right_camera=rig.right))
    depth_err, point_err = _errors(result, rig, depth)
    assert depth_err < 0.02 and point_err < 0.02
    # every output describes the rectified image: the CameraInfo published with the depth too
    assert result.camera.D.size == 0 and np.allclose(result.camera.K, rig.left.P[:, :3])
    assert np.allclose(result.camera.R, np.eye(3)) and np.allclose(result.camera.P, rig.left.P)
    assert result.rgb.shape == raw_left.shape and not np.array_equal(result.rgb, raw_left)
    assert "rectify" in result.timings_ms


def test_a_raw_pair_cannot_be_matched_as_is(rig):
    raw_left, raw_right = rig.raw_pair()
    frame = Frame(rgb=raw_left, camera=rig.left, right_rgb=raw_right, right_camera=rig.right,
                  image_rectified=False)  # e.g. image_raw topics
    with pytest.raises(PipelineError, match="rectify: true"):
        _stereo().process(frame)


def test_a_raw_monocular_image_keeps_its_raw_geometry_unless_rectified(rig):
    from depth_perception.config import estimator_from_parameters

    estimator = estimator_from_parameters({"model": "student_tabletop", "backend": "torch"})
    raw_left, _ = rig.raw_pair()
    frame = Frame(rgb=raw_left, camera=rig.left, camera_height_m=None)
    config = dict(segmentation=(), metric=PipelineConfig().metric)
    raw = Pipeline(PipelineConfig(**config), estimator=estimator).process(frame)
    assert raw.camera is not None and np.allclose(raw.camera.D, rig.left.D)  # published as raw
    assert raw.geometry.startswith("raw: rays from K") and "plumb_bob" in raw.geometry
    rect = Pipeline(PipelineConfig(rectify=True, **config), estimator=estimator).process(frame)
    assert rect.camera.D.size == 0 and rect.geometry.startswith("rectified")
    assert rect.depth_m.shape == raw_left.shape[:2]
