"""What a driver subscribes to and how it groups it, from the node's parameter values."""

from __future__ import annotations

import re

import pytest

from depth_perception.driver import input_names, load_models, synchronizer


def test_auto_listens_for_every_metric_signal_and_never_waits_for_one():
    inputs = input_names({"model": "student_tabletop"})  # metric.mode auto is the default
    assert inputs == ["image", "camera_info", "sparse_depth", "lidar_points", "odometry"]
    sync = synchronizer(inputs, {"model": "student_tabletop"})
    assert sync.no_wait == ("sparse_depth", "lidar_points")
    # CameraInfo is calibration (camera_info.pairing latest), and no signal is waited for
    assert sync.inputs == ["image", "sparse_depth", "lidar_points"]
    assert sync.add("image", 1, "image", now_ns=0) == {"image": "image"}


def test_exact_pairing_synchronises_camera_info_by_stamp():
    values = {"model": "student_tabletop", "camera_info.pairing": "exact"}
    sync = synchronizer(input_names(values), values)
    assert sync.add("image", 1, "image", now_ns=0) is None  # waits for its CameraInfo
    assert sync.add("camera_info", 1, "info", now_ns=0) == {"image": "image", "camera_info": "info"}


def test_an_explicit_mode_requires_its_signal():
    values = {"model": "student_tabletop", "metric.mode": "sparse_depth"}
    inputs = input_names(values)
    assert inputs == ["image", "camera_info", "sparse_depth"]
    sync = synchronizer(inputs, values)
    assert sync.no_wait == () and sync.optional == ()


def test_stereo_needs_no_metric_signal_input():
    assert input_names({"stereo": True}) == ["image", "camera_info", "right/image",
                                             "right/camera_info"]


def test_odometry_is_interpolated_not_synchronised():
    from depth_perception.driver import pose_buffer

    values = {"model": "student_tabletop", "metric.mode": "motion", "metric.motion.pose_buffer": 50}
    inputs = input_names(values)
    assert inputs == ["image", "camera_info", "odometry"]
    assert "odometry" not in synchronizer(inputs, values).inputs
    buffer = pose_buffer(inputs, values)
    assert buffer is not None and buffer.capacity == 50
    assert pose_buffer(input_names({"stereo": True}), {"stereo": True}) is None


# -- loading the models ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["student_tabletop", "prompt_depth_anything_small_tiny",
                                   "depth_pro_tiny"])
def test_the_network_runs_once_when_it_loads_so_the_first_frame_does_not_pay_for_it(model):
    """Prompt Depth Anything needs a prompt and Depth Pro a focal length: the warm-up gives both."""
    said: list[str] = []
    values = {"model": model, "random_init": model.endswith("_tiny"), "backend": "torch"}
    models = load_models(values, log=said.append)
    assert models.estimator is not None
    assert any(re.search(r"ready on torch; warm-up inference \d+ ms", line) for line in said), said


def test_warm_up_can_be_switched_off():
    said: list[str] = []
    load_models({"model": "student_tabletop", "backend": "torch", "warm_up": False}, log=said.append)
    assert said and not any("warm-up" in line for line in said)
