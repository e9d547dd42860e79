"""The node under faults: random and boundary parameter values set at run time, images of odd
shapes and encodings, absurd CameraInfo, degenerate frames and a model that raises mid-stream.
After each, the node is alive, says what was wrong, and answers the next good frame with depth.

Real DDS between a tester node and the node (loopback namespace, see conftest.py); a small stereo
scene keeps every frame fast. Hypothesis draws the parameter values (bounded example counts).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depth_perception.camera import CameraModel
from depth_perception.config import PARAMETERS
from depth_perception.scene import generate_tabletop
from node_harness import FRAME_ID, NodeHarness

W, H = 160, 120


@pytest.fixture(scope="module")
def scene():
    return generate_tabletop(seed=3, width=W, height=H)


@pytest.fixture(scope="module")
def harness(rclpy_module_context):
    h = NodeHarness(rclpy_module_context, {"stereo": True, "max_depth": 5.0,
                                    "stereo.num_disparities": 32}, tester_name="dp_fault_tester")
    h.wait_for_connections()
    h.stamp = 1_000_000_000
    yield h
    h.close()


def next_stamp(h) -> int:
    h.stamp += 50_000_000
    return h.stamp


def good_frame_answered(h, scene) -> None:
    """Send a good frame and wait until its depth, with valid pixels, comes back."""
    from consumers import read_depth_m

    stamp = next_stamp(h)
    h.send_stereo(scene, stamp)

    def answered():
        return any(h.M.stamp_to_ns(m.header.stamp) == stamp for m in h.received["depth"])

    assert h.spin_until(answered, timeout=15.0), f"no depth for a good frame: {h.node.last_error}"
    (msg,) = [m for m in h.received["depth"] if h.M.stamp_to_ns(m.header.stamp) == stamp]
    assert np.isfinite(read_depth_m(msg)).mean() > 0.3


def answered_or_failed(h, stamp: int, failed_before: int) -> bool:
    return h.spin_until(
        lambda: h.node.frames_failed > failed_before
        or any(h.M.stamp_to_ns(m.header.stamp) == stamp for m in h.received["depth"]), 15.0)


# -- parameters ------------------------------------------------------------------------------------

SETTABLE = [spec for spec in PARAMETERS if not spec.read_only]


def _values_for(spec) -> st.SearchStrategy:
    """Boundary and random values of ``spec``'s type, and of other types."""
    default = spec.default
    other_types = st.sampled_from([True, -1, 1e300, "x" * 300, [1.0, 2.0], []])
    if isinstance(default, bool):
        return st.one_of(st.booleans(), other_types)
    if isinstance(default, int):
        edges = [0, -1, 1, 2**31 - 1, -(2**31)]
        if spec.min_value is not None:
            edges += [int(spec.min_value), int(spec.min_value) - 1]
        if spec.max_value is not None:
            edges += [int(spec.max_value), int(spec.max_value) + 1]
        return st.one_of(st.sampled_from(edges), st.integers(-(2**31), 2**31 - 1), other_types)
    if isinstance(default, float):
        edges = [0.0, -0.0, -1.0, 1e-12, 1e12, math.nan, math.inf, -math.inf]
        if spec.min_value is not None:
            edges += [float(spec.min_value), math.nextafter(float(spec.min_value), -math.inf)]
        if spec.max_value is not None:
            edges += [float(spec.max_value), math.nextafter(float(spec.max_value), math.inf)]
        return st.one_of(st.sampled_from(edges), st.floats(allow_nan=True), other_types)
    if isinstance(default, str):
        choices = list(spec.choices or []) + ["", "NONE", "\x00"]
        return st.one_of(st.sampled_from(choices), st.text(max_size=20), other_types)
    return st.one_of(st.lists(st.floats(allow_nan=True), max_size=20), other_types)


@st.composite
def parameter_change(draw):
    spec = draw(st.sampled_from(SETTABLE))
    return spec.name, draw(_values_for(spec))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(change=parameter_change())
def test_any_value_set_at_run_time_is_refused_with_a_reason_or_taken_and_the_node_goes_on(
        harness, scene, change):
    from rclpy.parameter import Parameter

    name, value = change
    h = harness
    before = h.node.get_parameter(name).value
    try:
        results = h.node.set_parameters([Parameter(name, value=value)])
    except Exception as exc:  # noqa: BLE001 - rclpy itself refuses a value of another type
        assert "type" in str(exc).lower() or "parameter" in str(exc).lower(), exc
        results = None
    if results is not None:
        (result,) = results
        if not result.successful:
            assert result.reason and len(result.reason) < 2000, result.reason
            assert h.node.get_parameter(name).value == before
    # whatever was accepted, a frame is answered (depth, maybe all invalid) or counted as failed
    stamp, failed = next_stamp(h), h.node.frames_failed
    h.send_stereo(scene, stamp)
    assert answered_or_failed(h, stamp, failed), h.node.last_error
    (restored,) = h.node.set_parameters([Parameter(name, value=before)])
    assert restored.successful, restored.reason
    good_frame_answered(h, scene)


# -- images and CameraInfo -----------------------------------------------------------------------


def _image(h, array: np.ndarray, encoding: str, stamp: int, overrides: dict):
    msg = h.M.numpy_to_image(h.types, array, encoding, h.M.make_header(h.types, stamp, FRAME_ID))
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


ODD_IMAGES = {
    "1x1": lambda: (np.zeros((1, 1, 3), np.uint8), "rgb8", {}),
    "1 row": lambda: (np.full((1, 640, 3), 128, np.uint8), "rgb8", {}),
    "1 column": lambda: (np.full((480, 1, 3), 128, np.uint8), "rgb8", {}),
    "odd 3x5": lambda: (np.full((3, 5, 3), 90, np.uint8), "rgb8", {}),
    "yuv422 encoding": lambda: (np.zeros((H, W * 2), np.uint8), "mono8", {"encoding": "yuv422"}),
    "bayer encoding": lambda: (np.zeros((H, W), np.uint8), "mono8", {"encoding": "bayer_rggb8"}),
    "16UC3": lambda: (np.zeros((H, W, 3), np.uint8), "rgb8", {"encoding": "16UC3"}),
    "step too small": lambda: (np.zeros((H, W, 3), np.uint8), "rgb8", {"step": 7}),
    "data truncated": lambda: (np.zeros((H, W, 3), np.uint8), "rgb8", {"height": H * 4}),
    "empty": lambda: (np.zeros((0, 0, 3), np.uint8), "rgb8", {}),
}


@pytest.mark.parametrize("kind", list(ODD_IMAGES))
def test_an_odd_image_is_an_error_for_that_frame_only(harness, scene, kind):
    h = harness
    array, encoding, fields = ODD_IMAGES[kind]()
    stamp, failed = next_stamp(h), h.node.frames_failed
    header = h.M.make_header(h.types, stamp, FRAME_ID)
    hh, ww = array.shape[:2]
    info = h.M.model_to_camera_info(h.types, CameraModel.from_intrinsics(
        100.0, 100.0, max(ww - 1, 0) / 2, max(hh - 1, 0) / 2, max(ww, 1), max(hh, 1)), header)
    right_info = h.M.model_to_camera_info(h.types, CameraModel(
        width=max(ww, 1), height=max(hh, 1), K=np.asarray(info.k).reshape(3, 3),
        P=[[100.0, 0, max(ww - 1, 0) / 2, -6.0], [0, 100.0, max(hh - 1, 0) / 2, 0], [0, 0, 1, 0]]),
        header)
    for topic, msg in (("image", _image(h, array, encoding, stamp, fields)), ("camera_info", info),
                       ("right/image", _image(h, array, encoding, stamp, fields)),
                       ("right/camera_info", right_info)):
        h.pubs[topic].publish(msg)
    assert answered_or_failed(h, stamp, failed), f"{kind}: neither answered nor reported"
    if h.node.frames_failed > failed:
        assert h.node.last_error and "Traceback" not in h.node.last_error
    good_frame_answered(h, scene)


def _absurd(scene, field: str, value) -> dict:
    K = scene.K.copy()
    info = {"K": K, "D": np.zeros(5), "distortion_model": "plumb_bob"}
    if field == "fx":
        K[0, 0] = value
    elif field == "cx":
        K[0, 2] = value
    elif field == "K":
        info["K"] = np.zeros((3, 3))
    elif field == "D":
        info["D"] = np.asarray(value)
    elif field == "distortion_model":
        info["distortion_model"] = value
    return info


@pytest.mark.parametrize("field, value, words", [
    ("fx", 0.0, "K"), ("fx", -300.0, "K"), ("fx", math.nan, "K"), ("cx", 1e6, "principal point"),
    ("K", None, "K is all zero"), ("D", [0.1, math.inf, 0, 0, 0], "finite"),
    ("D", [0.1], "coefficients"), ("distortion_model", "kannala_brandt_9", "distortion model"),
])
def test_absurd_camera_info_is_refused_naming_the_field(harness, scene, field, value, words):
    h = harness
    stamp, failed = next_stamp(h), h.node.frames_failed
    header = h.M.make_header(h.types, stamp, FRAME_ID)
    good = h.M.model_to_camera_info(h.types, CameraModel(width=W, height=H, K=scene.K), header)
    bad = _absurd(scene, field, value)
    good.k = bad["K"].reshape(-1).tolist()
    good.d = [float(x) for x in bad["D"]]
    good.distortion_model = bad["distortion_model"]
    h.pubs["camera_info"].publish(good)
    h.pubs["image"].publish(h.M.numpy_to_image(h.types, scene.rgb, "rgb8", header))
    right_P = np.hstack([scene.K, [[-scene.K[0, 0] * scene.baseline_m], [0.0], [0.0]]])
    h.pubs["right/camera_info"].publish(h.M.model_to_camera_info(
        h.types, CameraModel(width=W, height=H, K=scene.K, P=right_P), header))
    h.pubs["right/image"].publish(h.M.numpy_to_image(h.types, scene.right_rgb, "rgb8", header))
    assert h.spin_until(lambda: h.node.frames_failed > failed, timeout=15.0)
    assert words in h.node.last_error, h.node.last_error
    good_frame_answered(h, scene)  # the next good CameraInfo replaces the absurd one


@pytest.mark.parametrize("kind", ["black", "saturated", "noise"])
def test_a_degenerate_frame_gives_no_depth_and_says_why(harness, scene, kind):
    from consumers import read_depth_m

    h = harness
    rng = np.random.default_rng(0)
    image = {"black": np.zeros_like(scene.rgb), "saturated": np.full_like(scene.rgb, 255),
             "noise": rng.integers(0, 256, scene.rgb.shape, dtype=np.uint8)}[kind]
    fake = type("Scene", (), {"rgb": image, "right_rgb": image, "depth_m": scene.depth_m,
                              "K": scene.K, "baseline_m": scene.baseline_m})
    stamp = next_stamp(h)
    h.send_stereo(fake, stamp)
    assert h.spin_until(lambda: any(h.M.stamp_to_ns(m.header.stamp) == stamp
                                    for m in h.received["depth"]), timeout=15.0)
    (msg,) = [m for m in h.received["depth"] if h.M.stamp_to_ns(m.header.stamp) == stamp]
    assert np.isnan(read_depth_m(msg)).all()
    assert h.spin_until(lambda: kind in h.node._no_depth, timeout=5.0), h.node._no_depth
    good_frame_answered(h, scene)
    assert h.spin_until(lambda: h.node._no_depth == "", timeout=5.0)  # set just after publishing


def test_a_model_that_raises_mid_stream_costs_only_its_frames(rclpy_context, scene):
    """The monocular model raising on every other frame (a CUDA error, an OOM): those frames are
    logged and counted; the frames in between get depth."""
    h = NodeHarness(rclpy_context, {"model": "student_tabletop", "backend": "torch", "stereo": True,
                                    "max_depth": 5.0}, tester_name="dp_fault_model")
    try:
        h.wait_for_connections()
        assert h.node._ready.wait(timeout=60.0), h.node.last_error
        estimator = h.node._pipeline.estimator
        calls = {"n": 0}
        real_predict = estimator.predict

        def flaky_predict(rgb):
            calls["n"] += 1
            if calls["n"] % 2 == 0:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return real_predict(rgb)

        estimator.predict = flaky_predict
        h.stamp = 5_000_000_000
        for _ in range(2):
            failed = h.node.frames_failed
            good_frame_answered(h, scene)
            stamp = next_stamp(h)
            h.send_stereo(scene, stamp)
            assert h.spin_until(lambda: h.node.frames_failed > failed, timeout=15.0)
            assert "illegal memory access" in h.node.last_error
        assert calls["n"] == 4
    finally:
        h.close()
