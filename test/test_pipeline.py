"""Pipeline: one frame in, one result out; stereo is the depth source that needs no weights."""

from __future__ import annotations

import numpy as np
import pytest

from depth_perception.camera import CameraModel
from depth_perception.metrics import depth_metrics
from depth_perception.pipeline import Frame, Pipeline, PipelineConfig, PipelineError
from depth_perception.scene import generate_tabletop


@pytest.fixture(scope="module")
def scene():
    return generate_tabletop(seed=1, width=320, height=240)


def stereo_frame(scene, **overrides) -> Frame:
    h, w = scene.depth_m.shape
    P_right = np.hstack([scene.K, [[-scene.K[0, 0] * scene.baseline_m], [0.0], [0.0]]])
    fields = dict(
        rgb=scene.rgb,
        camera=CameraModel(width=w, height=h, K=scene.K),
        right_rgb=scene.right_rgb,
        right_camera=CameraModel(width=w, height=h, K=scene.K, P=P_right),
        stamp_ns=42,
        frame_id="cam",
    )
    fields.update(overrides)
    return Frame(**fields)


def test_stereo_frame_gives_metric_depth_close_to_truth(scene):
    result = Pipeline().process(stereo_frame(scene))
    assert result.depth_source == "stereo"
    assert result.depth_m.shape == scene.depth_m.shape and result.depth_m.dtype == np.float32
    m = depth_metrics(result.depth_m, scene.depth_m)
    assert m.abs_rel < 0.03 and m.delta1 > 0.97 and m.coverage > 0.5, m
    assert (result.stamp_ns, result.frame_id) == (42, "cam")
    assert {"depth", "validity", "cloud", "total"} <= set(result.timings_ms)


def test_invalid_pixels_are_nan_and_the_cloud_follows_the_depth(scene):
    result = Pipeline(PipelineConfig(min_depth_m=0.1, max_depth_m=0.7)).process(stereo_frame(scene))
    valid = np.isfinite(result.depth_m)
    np.testing.assert_array_equal(valid, result.valid)
    assert np.nanmax(result.depth_m) <= 0.7
    assert not valid.all()  # the range crop removed the far table
    assert result.points.shape == (*scene.depth_m.shape, 3)
    assert np.isnan(result.points[~valid]).all()
    np.testing.assert_array_equal(result.points[..., 2][valid], result.depth_m[valid])


def test_baseline_given_explicitly_overrides_a_missing_right_camera(scene):
    result = Pipeline().process(stereo_frame(scene, right_camera=None, baseline_m=scene.baseline_m))
    assert depth_metrics(result.depth_m, scene.depth_m).abs_rel < 0.03


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(right_rgb=None), "no depth source"),
        (dict(right_camera=None), "baseline"),
        (dict(rgb=np.zeros((240, 320), np.uint8)), "HxWx3"),
        (dict(rgb=np.zeros((240, 320, 3), np.float32)), "uint8"),
        (dict(right_rgb=np.zeros((120, 160, 3), np.uint8)), "right image is 160x120"),
        (dict(camera=CameraModel.from_intrinsics(300, 300, 320, 240, 640, 480)),
         "CameraInfo describes 640x480"),
    ],
)
def test_bad_input_raises_a_clear_error(scene, overrides, message):
    with pytest.raises(PipelineError, match=message):
        Pipeline().process(stereo_frame(scene, **overrides))


def test_config_rejects_an_empty_depth_range():
    with pytest.raises(PipelineError, match="min_depth_m < max_depth_m"):
        PipelineConfig(min_depth_m=2.0, max_depth_m=1.0)


def test_masks_from_another_node_become_graspable_regions_aligned_with_the_depth(scene):
    frame = stereo_frame(scene, masks=scene.instance_mask,
                         mask_names={i + 1: k for i, k in enumerate(scene.labels)},
                         support_plane=scene.table_plane_camera)
    result = Pipeline(PipelineConfig(segmentation=("topic",))).process(frame)
    assert result.segmentation_source == "topic"
    ids = [r.id for r in result.regions]
    assert set(ids) <= set(np.unique(scene.instance_mask)) - {0} and len(ids) >= 3
    assert [r.label for r in result.regions] == [scene.labels[i - 1] for i in ids]
    assert result.labels.shape == scene.depth_m.shape and result.labels.dtype == np.uint16
    # cleaned regions lie inside the masks they came from
    inside = result.labels > 0
    assert np.all(scene.instance_mask[inside] == result.labels[inside])
    for region in result.regions:
        truth = scene.objects[region.id - 1].centroid_camera
        if region.point_count > 200:
            assert np.linalg.norm(region.centroid - truth) < 0.03  # stereo depth, not true depth


def test_a_mask_of_another_size_is_reported_and_the_frame_keeps_its_depth(scene):
    result = Pipeline(PipelineConfig(segmentation=("topic",))).process(
        stereo_frame(scene, masks=np.zeros((120, 160), np.uint16)))
    assert "160" in result.segmentation_message and "120" in result.segmentation_message
    assert result.regions == [] and np.isfinite(result.depth_m).mean() > 0.5


def test_geometric_segmentation_is_the_default_and_finds_the_objects(scene):
    result = Pipeline().process(stereo_frame(scene))
    assert result.segmentation_source == "geometric"
    truth = set(np.unique(scene.instance_mask)) - {0}
    found = set()
    for region in result.regions:
        ids, counts = np.unique(scene.instance_mask[result.labels == region.id], return_counts=True)
        if ids[np.argmax(counts)] != 0 and counts.max() / counts.sum() > 0.9:
            found.add(int(ids[np.argmax(counts)]))
    # SGBM leaves the left band of the image without depth: an object there cannot be found
    assert len(found) >= len(truth) - 1, (found, truth)


def test_unknown_segmentation_source_is_named():
    with pytest.raises(PipelineError, match="segmentation must be among"):
        PipelineConfig(segmentation=("magic",))


def test_depth_is_handed_out_before_segmentation_starts(monkeypatch):
    """Pipeline.process(on_depth=...) lets a driver publish depth while masks are still computed."""
    scene = generate_tabletop(seed=5, width=160, height=120)
    pipeline = Pipeline(PipelineConfig(segmentation=("geometric",)))
    events: list[str] = []
    segment = pipeline._segment

    def recording_segment(frame, points):
        events.append("segmentation")
        return segment(frame, points)

    monkeypatch.setattr(pipeline, "_segment", recording_segment)
    partial: list = []

    def on_depth(result):
        events.append("depth")
        partial.append(result)

    frame = Frame(rgb=scene.rgb, camera=CameraModel(width=160, height=120, K=scene.K),
                  right_rgb=scene.right_rgb, baseline_m=scene.baseline_m)
    result = pipeline.process(frame, on_depth=on_depth)
    assert events == ["depth", "segmentation"]
    early = partial[0]
    assert early.regions == [] and early.labels is None
    assert early.depth_m is result.depth_m and np.isfinite(early.depth_m).any()
    assert result.regions and result.labels is not None  # the full result still has everything


# -- frames with nothing to measure: refused before depth ---------------------------------------------


def _degenerate(kind: str, shape=(240, 320, 3)) -> np.ndarray:
    """A black, saturated, flat or pure-noise frame, with a camera's sensor noise where it has any."""
    rng = np.random.default_rng(7)
    if kind == "black":
        return np.clip(rng.normal(2.0, 2.0, shape), 0, 255).astype(np.uint8)
    if kind == "saturated":
        return np.clip(rng.normal(262.0, 6.0, shape), 0, 255).astype(np.uint8)
    if kind == "flat":
        return np.full(shape, 128, np.uint8)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def student():
    """The bundled monocular student (no download), made metric by the stereo pair."""
    from depth_perception.depth.estimator import DepthEstimator
    from depth_perception.depth.zoo import DEFAULT_MODEL

    return DepthEstimator(DEFAULT_MODEL, backend="torch", log=None)


def _student_pipeline(student, **config) -> Pipeline:
    from depth_perception.metric import MetricConfig

    return Pipeline(PipelineConfig(metric=MetricConfig(mode="stereo"), **config), estimator=student)


@pytest.mark.parametrize("kind", ["black", "saturated", "flat", "noise"])
@pytest.mark.parametrize("depth", ["student", "stereo"])
def test_a_degenerate_frame_is_refused_with_nan_depth_and_no_regions(scene, student, depth, kind):
    bad = _degenerate(kind)
    frame = stereo_frame(scene, rgb=bad, right_rgb=bad.copy())
    pipeline = _student_pipeline(student) if depth == "student" else Pipeline()
    early: list = []
    result = pipeline.process(frame, on_depth=early.append)
    assert result.refused.startswith(f"{kind} frame: ") and result.depth_source == "refused"
    assert result.depth_m.shape == scene.depth_m.shape and result.depth_m.dtype == np.float32
    assert np.isnan(result.depth_m).all() and not result.valid.any() and result.valid_fraction == 0.0
    assert np.isnan(result.points).all() and result.regions == []
    assert result.labels is not None and not result.labels.any()  # drivers clear the old regions
    assert result.depth_confidence == 0.0 and result.metric is None and result.prediction is None
    assert (result.stamp_ns, result.frame_id) == (42, "cam")
    assert early[0].refused == result.refused and np.isnan(early[0].depth_m).all()
    assert {"image_check", "total"} <= set(result.timings_ms) and "depth" not in result.timings_ms


def test_real_and_rendered_images_are_not_refused(scene, student):
    from skimage import data

    pipeline = _student_pipeline(student)
    for rgb in (data.astronaut(), data.coffee(), (data.chelsea() * 0.1).astype(np.uint8)):
        h, w = rgb.shape[:2]
        frame = Frame(rgb=rgb, camera=CameraModel.from_intrinsics(500.0, 500.0, w / 2, h / 2, w, h))
        result = pipeline.process(frame)
        assert result.refused == "" and result.depth_source != "refused" and result.prediction is not None
    result = Pipeline().process(stereo_frame(scene))
    assert result.refused == "" and result.depth_source == "stereo" and result.regions


def test_a_refused_frame_leaves_the_metric_scale_alone(scene, student):
    """good, black, good gives the same second good frame (depth and scale) as good, good."""
    good = stereo_frame(scene)
    black = stereo_frame(scene, rgb=_degenerate("black"), right_rgb=_degenerate("black"))
    interrupted, plain = _student_pipeline(student), _student_pipeline(student)
    first = interrupted.process(good)
    assert interrupted.process(black).refused.startswith("black frame")
    after = interrupted.process(good)
    plain.process(good)
    expected = plain.process(good)
    assert after.refused == "" and after.depth_source == "stereo" and first.metric.estimate.scale > 0
    assert after.metric.estimate == expected.metric.estimate  # scale, shift, age: as if never refused
    np.testing.assert_array_equal(after.depth_m, expected.depth_m)
    assert [r.id for r in after.regions] == [r.id for r in expected.regions] and after.regions


def test_the_content_check_can_be_turned_off(scene):
    from depth_perception.image_check import ImageCheckParams

    flat = _degenerate("flat")
    result = Pipeline(PipelineConfig(image_check=ImageCheckParams(enabled=False))).process(
        stereo_frame(scene, rgb=flat, right_rgb=flat.copy()))
    assert result.refused == "" and result.depth_source == "stereo"


def test_an_image_over_max_image_pixels_is_refused(scene):
    with pytest.raises(PipelineError, match="over max_image_pixels"):
        Pipeline(PipelineConfig(max_pixels=1000)).process(stereo_frame(scene))


# -- Marigold: affine-invariant depth (far = large) made metric by sparse depth -----------------------


class _AffineDepthNetwork:
    """A stand-in for Marigold that knows the scene: depth = 2.5 * prediction + 0.4 m."""

    def __init__(self, depth_m: np.ndarray) -> None:
        self.values = ((depth_m - 0.4) / 2.5).astype(np.float32)

    def predict(self, rgb):
        from depth_perception.depth.estimator import DepthPrediction

        return DepthPrediction(self.values, "relative_depth")


def _sparse_depth_frame(scene, rgb=None) -> Frame:
    from depth_perception.metrics import sparse_samples

    h, w = scene.depth_m.shape
    return Frame(rgb=scene.rgb if rgb is None else rgb, camera=CameraModel(width=w, height=h, K=scene.K),
                 sparse_depth=sparse_samples(scene.depth_m, 500, 0.2, seed=1))


def test_relative_depth_is_made_metric_by_sparse_depth(scene):
    result = Pipeline(estimator=_AffineDepthNetwork(scene.depth_m)).process(_sparse_depth_frame(scene))
    assert result.depth_source == "sparse_depth", result.metric.message
    assert result.metric.estimate.scale == pytest.approx(2.5, rel=0.01)
    assert result.metric.estimate.shift == pytest.approx(0.4, abs=0.01)
    assert depth_metrics(result.depth_m, scene.depth_m).abs_rel < 0.01


def test_the_tiny_marigold_runs_through_the_pipeline(scene):
    pytest.importorskip("diffusers")
    from depth_perception.depth.estimator import DepthEstimator

    marigold = DepthEstimator("marigold_depth_tiny", random_init=True, log=None)
    small = generate_tabletop(seed=1, width=64, height=48)
    result = Pipeline(estimator=marigold).process(_sparse_depth_frame(small))
    # random weights explain nothing, but the frame is aligned (or refused with a reason), not raised
    assert result.metric is not None and result.metric.fit is not None
    assert result.metric.fit.space == "depth" and result.depth_m.shape == small.depth_m.shape


# -- Prompt Depth Anything: the frame's sparse depth or LiDAR is its prompt ------------------------------


@pytest.fixture(scope="module")
def prompt_model():
    from depth_perception.depth.estimator import DepthEstimator

    return DepthEstimator("prompt_depth_anything_small_tiny", random_init=True, log=None)


def test_sparse_depth_and_lidar_are_the_prompt_of_prompt_depth_anything(prompt_model):
    small = generate_tabletop(seed=1, width=96, height=72)
    pipeline = Pipeline(estimator=prompt_model)
    near = pipeline.process(_sparse_depth_frame(small))
    frame = _sparse_depth_frame(small)
    frame.sparse_depth = 2 * frame.sparse_depth  # the same scene, twice as far
    far = Pipeline(estimator=prompt_model).process(frame)
    # the network min/max-normalises its prompt and de-normalises its output with the same range
    np.testing.assert_allclose(far.prediction, 2 * near.prediction, rtol=1e-4)
    assert near.metric.fit is not None and near.depth_source == "sparse_depth"

    cam = CameraModel(width=96, height=72, K=small.K)
    lidar = cam.backproject(small.depth_m, cam.normalized_rays())[::5, ::5].reshape(-1, 3)
    from_cloud = Pipeline(estimator=prompt_model).process(
        Frame(rgb=small.rgb, camera=cam, cloud_points=lidar[np.isfinite(lidar).all(axis=1)]))
    assert from_cloud.depth_source == "pointcloud" and np.isfinite(from_cloud.prediction).all()


def test_prompt_depth_anything_without_a_prompt_names_the_topics(prompt_model):
    small = generate_tabletop(seed=1, width=96, height=72)
    frame = Frame(rgb=small.rgb, camera=CameraModel(width=96, height=72, K=small.K))
    with pytest.raises(PipelineError, match="`sparse_depth`.*`lidar_points`"):
        Pipeline(estimator=prompt_model).process(frame)


def test_depth_pro_takes_its_focal_length_from_camera_info():
    from depth_perception.depth.estimator import DepthEstimator

    depth_pro = DepthEstimator("depth_pro_tiny", random_init=True, log=None, seed=1)
    small = generate_tabletop(seed=1, width=96, height=72)
    pipeline = Pipeline(estimator=depth_pro)
    wide = pipeline.process(Frame(rgb=small.rgb, camera=CameraModel.from_intrinsics(60, 60, 48, 36, 96, 72)))
    tele = pipeline.process(Frame(rgb=small.rgb, camera=CameraModel.from_intrinsics(120, 120, 48, 36, 96, 72)))
    # the same picture through twice the focal length shows a scene twice as far away
    np.testing.assert_allclose(tele.prediction, 2 * wide.prediction, rtol=1e-4)
    assert wide.depth_source == "model"
