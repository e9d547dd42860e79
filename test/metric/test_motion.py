"""Metric scale from the robot's own motion (:mod:`depth_perception.metric.motion`): odometry poses
interpolated at image stamps, keyframe triangulation with the known motion, its cross-check, and
the ``motion`` mode of the pipeline.

The sequences are rendered by motion_scene.py: a distorted camera (plumb_bob) on a robot driving
past textured boxes, with odometry at 50 Hz on its own clock, 1.5 % translation noise and 0.2 deg
rotation noise. The "network" is emulated from the true depth (metrics.emulate_relative_prediction).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import motion_scene as ms
from depth_perception.depth.estimator import DepthPrediction
from depth_perception.metric import (ERROR, OK, WARN, MetricConfig, MotionParams, MotionTracker,
                                     PoseBuffer, apply_scale)
from depth_perception.metrics import depth_metrics, emulate_relative_prediction, oracle_inverse_affine
from depth_perception.pipeline import Frame, Pipeline, PipelineConfig

A_TRUE, B_TRUE = 3.0, 0.7  # the emulated network: pred = 3 / z + 0.7
PARAMS = MotionParams(min_baseline=0.1, T_base_camera=tuple(ms.T_BASE_CAMERA.reshape(-1)))


def _pose(x: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    T[0, 3] = x
    return T


class EmulatedNetwork:
    """A relative depth network's output made from the true depth of the frame about to be
    processed (``depth``), with new pixel noise every frame and a fixed smooth bias."""

    def __init__(self) -> None:
        self.depth: np.ndarray | None = None
        self.calls = 0

    def predict(self, rgb: np.ndarray) -> DepthPrediction:
        self.calls += 1
        values = emulate_relative_prediction(self.depth, A_TRUE, B_TRUE, seed=self.calls, bias_seed=0)
        return DepthPrediction(values=values, kind="relative_inverse")


@pytest.fixture(scope="module")
def drive() -> ms.Sequence:
    return ms.sequence(13)


def _buffer(seq: ms.Sequence, T_base_camera=ms.T_BASE_CAMERA, odometry=None) -> PoseBuffer:
    buf = PoseBuffer(capacity=1000, max_gap_s=0.1, T_base_camera=T_base_camera)
    for stamp, T in seq.odometry if odometry is None else odometry:
        buf.add(stamp, T)
    return buf


def _run(pipeline: Pipeline, net: EmulatedNetwork, seq: ms.Sequence, buf: PoseBuffer | None):
    results = []
    for image, depth, stamp in zip(seq.images, seq.depths, seq.stamps_ns):
        net.depth = depth
        pose = None if buf is None else buf.interpolate(stamp)
        results.append(pipeline.process(Frame(rgb=image, camera=ms.CAMERA, stamp_ns=stamp,
                                              T_odom_camera=pose)))
    return results


def _pipeline(mode: str, **config) -> tuple[Pipeline, EmulatedNetwork]:
    net = EmulatedNetwork()
    cfg = PipelineConfig(segmentation=(), metric=MetricConfig(mode=mode, motion=PARAMS), **config)
    return Pipeline(cfg, estimator=net), net


# -- PoseBuffer ----------------------------------------------------------------------------------


def test_pose_buffer_interpolates_translation_linearly_and_rotation_by_slerp():
    buf = PoseBuffer(max_gap_s=1.0)
    buf.add(0, _pose(0.0, 0.0))
    buf.add(200_000_000, _pose(1.0, 40.0))
    T = buf.interpolate(50_000_000)
    assert T[0, 3] == pytest.approx(0.25)
    assert Rotation.from_matrix(T[:3, :3]).as_euler("zyx", degrees=True)[0] == pytest.approx(10.0)
    assert np.allclose(buf.interpolate(200_000_000), _pose(1.0, 40.0))  # a stamp on a pose: that pose


def test_pose_buffer_composes_the_camera_extrinsic():
    extrinsic = ms.T_BASE_CAMERA
    buf = PoseBuffer(T_base_camera=extrinsic)
    buf.add(0, _pose(2.0, 90.0))
    buf.add(10, _pose(2.0, 90.0))
    T = buf.interpolate(5)
    assert np.allclose(T, _pose(2.0, 90.0) @ extrinsic)
    assert np.allclose(T[:3, 2], [0.0, 1.0, 0.0])  # the optical axis is the base's x, yawed 90 deg


def test_pose_buffer_refuses_stamps_outside_it_and_across_gaps():
    buf = PoseBuffer(max_gap_s=0.1)
    assert buf.lookup(0) == (None, "no odometry pose received yet")
    buf.add(1_000_000_000, _pose(0.0))
    buf.add(1_050_000_000, _pose(0.1))
    buf.add(1_500_000_000, _pose(0.2))  # 0.45 s later: a gap
    assert buf.interpolate(1_025_000_000) is not None
    for stamp, words in ((900_000_000, "before the oldest"), (1_600_000_000, "after the newest"),
                         (1_200_000_000, "gap of 0.450 s")):
        T, why = buf.lookup(stamp)
        assert T is None and words in why, why


def test_pose_buffer_is_bounded_and_keeps_poses_ordered_by_stamp():
    buf = PoseBuffer(capacity=3, max_gap_s=1.0)
    for stamp in (30, 10, 20, 40):  # out of order; the oldest (10) is dropped at the fourth
        buf.add(stamp, _pose(stamp / 10))
    assert len(buf) == 3 and buf.interpolate(10) is None
    assert buf.interpolate(25)[0, 3] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="rotation"):
        buf.add(50, np.diag([2.0, 1.0, 1.0, 1.0]))


def test_motion_params_are_checked():
    with pytest.raises(ValueError, match="min_baseline"):
        MotionParams(min_baseline=0.0)
    with pytest.raises(ValueError, match="rotation matrix"):
        MotionParams(T_base_camera=tuple(np.diag([2.0, 1, 1, 1]).reshape(-1)))


# -- the tracker -----------------------------------------------------------------------------------


def test_tracked_points_are_triangulated_at_their_true_depth(drive):
    tracker = MotionTracker(PARAMS)
    # exact odometry (still at 50 Hz on another clock, interpolated): the geometry alone
    exact = ms.odometry("drive", drive.stamps_ns[-1] / 1e9, scale_noise=0.0, angle_noise_deg=0.0)
    buf = _buffer(drive, odometry=exact)
    samples = [tracker.update(image, ms.CAMERA, buf.interpolate(stamp), stamp)
               for image, stamp in zip(drive.images[:5], drive.stamps_ns)]
    assert samples[0].status == "first keyframe" and samples[0].keyframe
    assert samples[1].status.startswith("baseline 0.05") and "< min_baseline 0.1 m" in samples[1].status
    ok = [(s, gt) for s, gt in zip(samples, drive.depths[:5]) if s.ok]
    assert len(ok) == 2, [s.status for s in samples]
    for sample, gt in ok:
        assert sample.status.startswith(f"ok: {sample.n_points} points, baseline 0.1")
        assert sample.n_points >= 100 and sample.cross_check.agrees
        has = np.isfinite(sample.depth_m)
        ratio = sample.depth_m[has] / gt[has]
        assert abs(np.median(ratio) - 1) < 0.01 and np.median(np.abs(ratio - 1)) < 0.03


def test_a_wrong_extrinsic_is_flagged_by_the_cross_check(drive):
    wrong = _pose(0.0, 90.0) @ ms.T_BASE_CAMERA  # the camera mounted facing sideways, it says
    tracker = MotionTracker(PARAMS)
    buf = _buffer(drive, wrong)
    samples = [tracker.update(image, ms.CAMERA, buf.interpolate(stamp), stamp)
               for image, stamp in zip(drive.images[:5], drive.stamps_ns)]
    checked = [s for s in samples if s.cross_check is not None]
    assert checked and not any(s.ok for s in samples)
    for s in checked:
        assert not s.cross_check.agrees and s.cross_check.angle_deg > 45
        assert s.status.startswith("cross-check failed") and "T_base_camera" in s.status


def test_a_bad_image_or_pose_raises():
    tracker = MotionTracker()
    image = np.zeros((ms.SIZE[1], ms.SIZE[0]), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        tracker.update(image.astype(np.float32), ms.CAMERA, np.eye(4), 0)
    with pytest.raises(ValueError, match="T_odom_camera"):
        tracker.update(image, ms.CAMERA, np.eye(3), 0)
    assert tracker.update(image, ms.CAMERA, None, 0).status.startswith("no pose for this frame")


# -- through the pipeline --------------------------------------------------------------------------


@pytest.mark.parametrize("mode, config", [("motion", {}), ("auto", {}), ("motion", {"rectify": True})])
def test_the_pipeline_recovers_the_metric_scale_from_motion(drive, mode, config):
    pipeline, net = _pipeline(mode, **config)
    results = _run(pipeline, net, drive, _buffer(drive))
    first = results[0].metric
    assert first.level == ERROR and "first keyframe" in first.message, first.message
    last = results[-1]
    e = last.metric.estimate
    assert last.depth_source == "motion" and e.n_updates >= 4, last.metric.message
    has = last.valid & np.isfinite(drive.depths[-1])
    ratio = float(np.median(last.depth_m[has] / drive.depths[-1][has]))
    m = depth_metrics(last.depth_m, drive.depths[-1])
    pred = last.prediction
    oracle = depth_metrics(apply_scale(pred, *oracle_inverse_affine(pred, drive.depths[-1]),
                                       "inverse_depth"), drive.depths[-1])
    print(f"\nmotion ({mode}, {config}): scale ratio {ratio:.4f} after {e.n_updates} keyframes, "
          f"AbsRel {m.abs_rel:.4f} (oracle {oracle.abs_rel:.4f}), delta1 {m.delta1:.3f}")
    assert abs(ratio - 1) < 0.02
    assert m.abs_rel < 0.06
    assert {r.metric.level for r in results[4:]} <= {OK, WARN}


def test_standing_still_and_turning_on_the_spot_keep_the_last_scale(drive):
    pipeline, net = _pipeline("motion")
    results = _run(pipeline, net, drive, _buffer(drive))
    held = results[-1].metric.estimate
    T_last = drive.T_world_camera[-1]
    T_odom_camera = _buffer(drive).interpolate(drive.stamps_ns[-1])
    stamp = drive.stamps_ns[-1]
    ages = []
    for k in range(1, 3):  # standing: the same view from the same pose
        net.depth = drive.depths[-1]
        r = pipeline.process(Frame(rgb=drive.images[-1], camera=ms.CAMERA, stamp_ns=stamp + k * ms.FRAME_NS,
                                   T_odom_camera=T_odom_camera))
        assert "no motion since the keyframe" in r.metric.message, r.metric.message
        ages.append(r.metric.estimate.age)
    world = ms.make_world()
    for k in range(1, 3):  # turning on the spot, 6 deg per frame
        turn = np.eye(4)
        turn[:3, :3] = Rotation.from_euler("y", 6.0 * k, degrees=True).as_matrix()
        image, depth = ms.render(world, T_last @ turn)
        net.depth = depth
        r = pipeline.process(Frame(rgb=image, camera=ms.CAMERA, stamp_ns=stamp + (k + 2) * ms.FRAME_NS,
                                   T_odom_camera=T_odom_camera @ turn))
        assert "pure rotation (6.0 deg" in r.metric.message or "pure rotation (12.0 deg" in r.metric.message, \
            r.metric.message
        ages.append(r.metric.estimate.age)
        e = r.metric.estimate
        assert r.metric.level == WARN and e.scale == held.scale and r.depth_source == "motion"
        assert r.valid.mean() > 0.5  # the held scale still gives depth
    assert ages == [1, 2, 3, 4]


def test_a_frame_without_a_pose_says_so(drive):
    pipeline, net = _pipeline("motion")
    net.depth = drive.depths[0]
    r = pipeline.process(Frame(rgb=drive.images[0], camera=ms.CAMERA, stamp_ns=0))
    assert r.metric.level == ERROR and "no pose for this frame" in r.metric.message, r.metric.message
    assert r.why_no_depth() == r.metric.message
    auto, net = _pipeline("auto")
    net.depth = drive.depths[0]
    message = auto.process(Frame(rgb=drive.images[0], camera=ms.CAMERA, stamp_ns=0)).metric.message
    assert "`odometry`" in message and "metric.motion" in message, message
