"""numpy ↔ ROS 2 message conversion, for both message flavours.

Every message goes over the wire before it is read back: the rosbags flavour through the typestore's
CDR, the rclpy flavour through ``rclpy.serialization`` (no rclpy.init, no node, no DDS). A field the
conversion forgot to fill, or filled with the wrong type, fails here rather than on a robot.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable

import cv2
import numpy as np
import pytest

from depth_perception.camera import CameraModel, Roi
from depth_perception.ros.clouds import (
    cloud_to_array,
    cloud_to_xyz,
    points_to_cloud,
    points_to_clouds,
    unpack_rgb,
)
from depth_perception.ros.messages import (
    IMAGE_ENCODINGS,
    MessageError,
    MessageTypes,
    camera_info_size,
    camera_info_to_model,
    compressed_to_rgb,
    depth_to_image,
    image_to_depth,
    image_to_numpy,
    image_to_rgb,
    make_header,
    model_to_camera_info,
    numpy_to_image,
    rgb_to_compressed,
    rosbags_types,
    rclpy_types,
    stamp_to_ns,
)
from consumers import read_cloud, read_depth_m, read_image

H, W = 3, 5  # organised data is never square here, so a width/height swap cannot pass
STAMP_NS = 1_700_000_000_123_456_789


@dataclass
class Flavour:
    name: str
    types: MessageTypes
    wire: Callable[[Any], Any]  # serialise, then deserialise into a fresh message


def _rclpy_missing() -> str | None:
    try:
        import builtin_interfaces.msg  # noqa: F401
        import rclpy.serialization  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
    except ImportError as exc:
        reason = f"rclpy/sensor_msgs not importable ({exc}); pip install -r requirements/ros.txt"
        if os.environ.get("DP_REQUIRE_ROS") == "1":
            pytest.fail(reason + " (DP_REQUIRE_ROS=1)", pytrace=False)
        return reason
    return None


def _rosbags() -> Flavour:
    types = rosbags_types()
    ts = types.typestore
    return Flavour(
        "rosbags", types,
        lambda msg: ts.deserialize_cdr(ts.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__),
    )


def _rclpy() -> Flavour:
    from rclpy.serialization import deserialize_message, serialize_message

    return Flavour(
        "rclpy", rclpy_types(), lambda msg: deserialize_message(serialize_message(msg), type(msg))
    )


@pytest.fixture(scope="module", params=["rosbags", "rclpy"])
def flavour(request) -> Flavour:
    if request.param == "rclpy":
        reason = _rclpy_missing()
        if reason:
            pytest.skip(reason)
        return _rclpy()
    return _rosbags()


@pytest.fixture(scope="module")
def both() -> tuple[Flavour, Flavour]:
    reason = _rclpy_missing()
    if reason:
        pytest.skip(reason)
    return _rclpy(), _rosbags()


def _header(types: MessageTypes) -> Any:
    return make_header(types, STAMP_NS, "camera_color_optical_frame")


def _image(types: MessageTypes, enc: str, h: int, w: int, step: int, data: bytes, big=0) -> Any:
    """An Image built field by field, as a driver would."""
    return types.Image(
        header=_header(types), height=h, width=w, encoding=enc, is_bigendian=big, step=step,
        data=types.uint8_seq(data),
    )


def _random(enc: str, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    kind, channels = IMAGE_ENCODINGS[enc]
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    if kind == "f4":
        return rng.uniform(-1e3, 1e3, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(kind).max, shape, endpoint=True).astype(kind)


# -- headers --------------------------------------------------------------------------------------


def test_header_stamp_and_frame_survive_the_wire(flavour):
    header = flavour.wire(_header(flavour.types))
    assert stamp_to_ns(header.stamp) == STAMP_NS
    assert (header.stamp.sec, header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert header.frame_id == "camera_color_optical_frame"


# -- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1"])
def test_every_image_encoding_round_trips(flavour, enc):
    arr = _random(enc)
    msg = flavour.wire(numpy_to_image(flavour.types, arr, enc, _header(flavour.types)))
    kind, channels = IMAGE_ENCODINGS[enc]
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (H, W, enc, 0)
    assert msg.step == W * channels * np.dtype(kind).itemsize  # no padding written
    out = image_to_numpy(msg)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1"])
def test_cv_bridge_reads_every_encoding_as_written(flavour, enc):
    arr = _random(enc)
    msg = flavour.wire(numpy_to_image(flavour.types, arr, enc, _header(flavour.types)))
    out = read_image(msg)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_cv_bridge_converts_our_rgb8_to_bgr8_for_opencv_consumers(flavour):
    arr = _random("rgb8")
    msg = flavour.wire(numpy_to_image(flavour.types, arr, "rgb8", _header(flavour.types)))
    np.testing.assert_array_equal(read_image(msg, "bgr8"), arr[..., ::-1])


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_cv_bridge_reads_depth_in_rep118_units(flavour, encoding):
    depth = np.linspace(0.2, 9.0, H * W, dtype=np.float32).reshape(H, W)
    depth[1, 2] = np.nan
    msg = flavour.wire(depth_to_image(flavour.types, depth, _header(flavour.types), encoding))
    np.testing.assert_allclose(read_depth_m(msg), depth, atol=5e-4)
    assert np.isnan(read_depth_m(msg)[1, 2])


@pytest.mark.parametrize("enc", ["rgb8", "mono16", "32FC1"])
def test_padded_rows_are_skipped(flavour, enc):
    arr = _random(enc, seed=1)
    row = arr.reshape(H, -1).view(np.uint8).reshape(H, -1)
    pad = np.full((H, 7), 0xAB, np.uint8)  # garbage after each row, as some drivers send
    data = np.concatenate([row, pad], axis=1).tobytes()
    msg = flavour.wire(_image(flavour.types, enc, H, W, row.shape[1] + 7, data))
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


@pytest.mark.parametrize("enc, dtype", [("mono16", ">u2"), ("16UC1", ">u2"), ("32FC1", ">f4")])
def test_big_endian_data_reads_as_native_values(flavour, enc, dtype):
    arr = _random(enc, seed=2)
    msg = _image(flavour.types, enc, H, W, W * 2 if "16" in enc else W * 4,
                 arr.astype(dtype).tobytes(), big=1)
    out = image_to_numpy(flavour.wire(msg))
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_big_endian_depth_reads_in_metres(flavour):
    depth = np.array([[0.5, 1.25, np.nan]], np.float32)
    msg = _image(flavour.types, "32FC1", 1, 3, 12, depth.astype(">f4").tobytes(), big=1)
    np.testing.assert_array_equal(image_to_depth(flavour.wire(msg)), depth)


def test_truncated_image_data_raises(flavour):
    data = np.zeros(H * W * 3 - 1, np.uint8).tobytes()
    msg = flavour.wire(_image(flavour.types, "rgb8", H, W, W * 3, data))
    with pytest.raises(MessageError, match=r"44 bytes, rgb8 5x3 with step 15 needs 45"):
        image_to_numpy(msg)


def test_step_shorter_than_a_row_raises(flavour):
    msg = _image(flavour.types, "mono16", H, W, W, np.zeros(H * W * 2, np.uint8).tobytes())
    with pytest.raises(MessageError, match=r"step 5 < width·bytes per pixel 10"):
        image_to_numpy(flavour.wire(msg))


def test_unknown_encoding_raises_naming_it(flavour):
    msg = _image(flavour.types, "yuv422", H, W, W * 2, bytes(H * W * 2))
    with pytest.raises(MessageError, match=r"unsupported image encoding 'yuv422'"):
        image_to_numpy(flavour.wire(msg))
    with pytest.raises(MessageError, match=r"'yuv422'"):
        image_to_rgb(msg)


def test_numpy_to_image_rejects_the_wrong_dtype_or_channels(flavour):
    with pytest.raises(MessageError, match=r"rgb8 needs 3 channel"):
        numpy_to_image(flavour.types, np.zeros((H, W), np.uint8), "rgb8", _header(flavour.types))
    with pytest.raises(MessageError, match=r"32FC1 needs dtype float32, got float64"):
        numpy_to_image(flavour.types, np.zeros((H, W)), "32FC1", _header(flavour.types))


@pytest.mark.parametrize(
    "enc, pixel, rgb",
    [
        ("rgb8", [10, 20, 30], [10, 20, 30]),
        ("bgr8", [10, 20, 30], [30, 20, 10]),
        ("rgba8", [10, 20, 30, 40], [10, 20, 30]),
        ("bgra8", [10, 20, 30, 40], [30, 20, 10]),
        ("mono8", 77, [77, 77, 77]),
        ("mono16", 0xAB12, [0xAB, 0xAB, 0xAB]),  # high byte
    ],
)
def test_image_to_rgb_channel_order(flavour, enc, pixel, rgb):
    kind, channels = IMAGE_ENCODINGS[enc]
    arr = np.empty((H, W, channels), kind)
    arr[...] = pixel
    msg = flavour.wire(numpy_to_image(flavour.types, arr, enc, _header(flavour.types)))
    out = image_to_rgb(msg)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert (out == rgb).all()


def test_image_to_rgb_refuses_depth(flavour):
    msg = numpy_to_image(flavour.types, np.ones((H, W), np.float32), "32FC1", _header(flavour.types))
    with pytest.raises(MessageError, match=r"colour image has encoding '32FC1'"):
        image_to_rgb(msg)


# -- depth (REP 118) ------------------------------------------------------------------------------


def test_depth_32fc1_keeps_nan_and_metres(flavour):
    depth = np.linspace(0.2, 9.0, H * W, dtype=np.float32).reshape(H, W)
    depth[1, 2] = np.nan
    msg = flavour.wire(depth_to_image(flavour.types, depth, _header(flavour.types)))
    assert msg.encoding == "32FC1"
    assert np.isnan(image_to_numpy(msg)[1, 2])  # on the wire, NaN is the invalid value
    np.testing.assert_array_equal(image_to_depth(msg), depth)


def test_depth_32fc1_zero_and_negative_read_as_invalid(flavour):
    msg = numpy_to_image(
        flavour.types, np.array([[0.0, -1.0, np.inf, 2.0]], np.float32), "32FC1",
        _header(flavour.types),
    )
    np.testing.assert_array_equal(image_to_depth(flavour.wire(msg)), [[np.nan] * 3 + [2.0]])


def test_depth_16uc1_is_rounded_millimetres_with_zero_invalid(flavour):
    metres = np.array([[0.0, np.nan, 1.2344, 1.2346, 65.535, 65.6, -1.0, np.inf]], np.float32)
    msg = flavour.wire(depth_to_image(flavour.types, metres, _header(flavour.types), "16UC1"))
    assert msg.encoding == "16UC1"
    # 0, NaN, negative, infinite and beyond 65.535 m (the uint16 range) all become 0 = invalid
    np.testing.assert_array_equal(image_to_numpy(msg), [[0, 0, 1234, 1235, 65535, 0, 0, 0]])
    back = image_to_depth(msg)
    assert back.dtype == np.float32
    nan = np.nan
    np.testing.assert_allclose(back, [[nan, nan, 1.234, 1.235, 65.535, nan, nan, nan]], rtol=1e-6)


def test_depth_encoding_other_than_rep118_raises(flavour):
    with pytest.raises(MessageError, match=r"32FC1 or 16UC1, got 'mono8'"):
        depth_to_image(flavour.types, np.ones((H, W)), _header(flavour.types), "mono8")
    msg = numpy_to_image(flavour.types, np.ones((H, W), np.uint8), "mono8", _header(flavour.types))
    with pytest.raises(MessageError, match=r"depth image has encoding 'mono8'"):
        image_to_depth(msg)


# -- compressed images ----------------------------------------------------------------------------


def _smooth_rgb(h: int = 24, w: int = 32) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return np.stack([u * 255 // (w - 1), v * 255 // (h - 1), (u + v) * 3 % 256], -1).astype(np.uint8)


def test_compressed_png_is_lossless(flavour):
    rgb = _smooth_rgb()
    msg = flavour.wire(rgb_to_compressed(flavour.types, rgb, _header(flavour.types), "png"))
    assert msg.format == "png"
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)


def test_compressed_jpeg_is_close_and_in_rgb_order(flavour):
    rgb = _smooth_rgb()
    msg = flavour.wire(rgb_to_compressed(flavour.types, rgb, _header(flavour.types), "jpeg"))
    out = compressed_to_rgb(msg)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 4  # a swapped R/B would be ~100 off


def test_compressed_image_transport_format_string_is_understood(flavour):
    """image_transport writes e.g. "bgr8; jpeg compressed bgr8" into the format field."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(_smooth_rgb(), cv2.COLOR_RGB2BGR))
    msg = flavour.types.CompressedImage(
        header=_header(flavour.types), format="bgr8; png compressed bgr8",
        data=flavour.types.uint8_seq(buf.tobytes()),
    )
    np.testing.assert_array_equal(compressed_to_rgb(flavour.wire(msg)), _smooth_rgb())


@pytest.mark.parametrize(
    "fmt, data, message",
    [
        ("jpeg", b"definitely not a jpeg stream", r"\(jpeg\) could not be decoded"),
        ("png", b"", r"\(png\) could not be decoded"),
        ("tiff", b"II*\x00", r"'tiff' is not jpeg or png"),
    ],
)
def test_undecodable_compressed_image_raises(flavour, fmt, data, message):
    msg = flavour.types.CompressedImage(
        header=_header(flavour.types), format=fmt, data=flavour.types.uint8_seq(data)
    )
    with pytest.raises(MessageError, match=message):
        compressed_to_rgb(flavour.wire(msg))


# -- camera info ----------------------------------------------------------------------------------


def _camera_info(types: MessageTypes, k, p=np.zeros(12), r=np.zeros(9), d=()) -> Any:
    return types.CameraInfo(
        header=_header(types), height=480, width=640, distortion_model="plumb_bob",
        d=types.float64_seq(np.asarray(d, np.float64)), k=types.float64_fixed(np.asarray(k)),
        r=types.float64_fixed(r), p=types.float64_fixed(p), binning_x=0, binning_y=0,
        roi=types.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def test_camera_info_round_trips_the_model(flavour):
    K = np.array([[1200.0, 0.0, 660.0], [0.0, 1210.0, 470.0], [0.0, 0.0, 1.0]])
    angle = np.deg2rad(1.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    P = np.array([[1150.0, 0, 650.0, -1150.0 * 0.06], [0, 1150.0, 480.0, 0], [0, 0, 1, 0]])
    cam = CameraModel(
        1280, 960, K, D=[-0.1, 0.02, 0.001, -0.002, 0.0005], distortion_model="plumb_bob", R=R, P=P,
        binning_x=2, binning_y=2, roi=Roi(x_offset=100, y_offset=60, height=480, width=640,
                                          do_rectify=True),
    )
    msg = flavour.wire(model_to_camera_info(flavour.types, cam, _header(flavour.types)))
    assert (msg.width, msg.height, msg.distortion_model) == (1280, 960, "plumb_bob")
    back = camera_info_to_model(msg)
    for name in ("K", "D", "R", "P"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cam, name), err_msg=name)
    assert (back.width, back.height, back.distortion_model) == (1280, 960, "plumb_bob")
    assert (back.binning_x, back.binning_y, back.roi) == (2, 2, cam.roi)
    assert back.baseline_m == pytest.approx(0.06)
    assert back.effective().size == (320, 240)


def test_camera_info_without_p_or_r_gets_p_from_k_and_identity_r(flavour):
    K = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    cam = camera_info_to_model(flavour.wire(_camera_info(flavour.types, K)))
    np.testing.assert_array_equal(cam.P, np.hstack([np.reshape(K, (3, 3)), np.zeros((3, 1))]))
    np.testing.assert_array_equal(cam.R, np.eye(3))
    assert not cam.is_distorted


def test_uncalibrated_camera_info_raises(flavour):
    with pytest.raises(MessageError, match=r"K is all zero.*uncalibrated"):
        camera_info_to_model(flavour.wire(_camera_info(flavour.types, np.zeros(9))))


def test_impossible_camera_info_raises_message_error_naming_the_field(flavour):
    K = [-500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    with pytest.raises(MessageError, match=r"invalid CameraInfo: camera K .* fx, fy > 0"):
        camera_info_to_model(_camera_info(flavour.types, K))
    K[0] = 500.0
    with pytest.raises(MessageError, match=r"'plumb_bob' needs 5 coefficients, got 2"):
        camera_info_to_model(_camera_info(flavour.types, K, d=[0.1, 0.2]))
    with pytest.raises(MessageError, match=r"K must be finite"):
        camera_info_to_model(_camera_info(flavour.types, [float("nan")] + K[1:]))
    with pytest.raises(MessageError, match=r"principal point \(319.5, 5000\) lies far outside"):
        camera_info_to_model(_camera_info(flavour.types, K[:5] + [5000.0] + K[6:]))
    bad_p = [0.0, 0.0, 319.5, 0.0, 0.0, 500.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    with pytest.raises(MessageError, match=r"camera P must be finite with fx', fy' > 0"):
        camera_info_to_model(_camera_info(flavour.types, K, p=np.array(bad_p)))


# -- point clouds ---------------------------------------------------------------------------------

# sensor_msgs_py.point_cloud2's PointField datatype table.
def _xyz(seed: int = 0) -> np.ndarray:
    xyz = np.random.default_rng(seed).uniform(-2, 2, (H, W, 3)).astype(np.float32)
    xyz[1, 3] = np.nan  # an invalid pixel keeps its place (REP 117)
    return xyz


def _fields(msg) -> list[tuple[str, int, int, int]]:
    return [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]


def test_organised_xyz_cloud_round_trips_height_major(flavour):
    xyz = _xyz()
    msg = flavour.wire(points_to_cloud(flavour.types, xyz, _header(flavour.types)))
    assert (msg.height, msg.width) == (H, W)
    assert _fields(msg) == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]  # 7 = FLOAT32
    assert (msg.point_step, msg.row_step) == (12, 12 * W)
    assert len(msg.data) == 12 * W * H
    assert msg.is_dense is False  # it has a NaN point
    np.testing.assert_array_equal(cloud_to_xyz(msg), xyz)

    pts = read_cloud(msg)
    np.testing.assert_array_equal(np.stack([pts["x"], pts["y"], pts["z"]], -1), xyz)
    # row v, column u: point (v=2, u=4) is the last one in the buffer
    last = np.frombuffer(bytes(msg.data)[-12:], "<f4")
    np.testing.assert_array_equal(last, xyz[2, 4])


def test_a_cloud_message_keeps_the_buffer_its_points_were_written_into(flavour, monkeypatch):
    """The multi-megabyte scene cloud is interleaved straight into the message's storage: no
    copy into the message afterwards (rclpy's generated setter would copy an array.array)."""
    made = []

    def empty(nbytes):
        storage, view = flavour.types.uint8_empty(nbytes)
        made.append(storage)
        return storage, view

    types = replace(flavour.types, uint8_empty=empty)
    xyz, rgb = _xyz(4), np.full((H, W, 3), 7, np.uint8)
    msg = points_to_cloud(types, xyz, _header(types), rgb=rgb)
    assert len(made) == 1
    assert np.shares_memory(np.frombuffer(msg.data, np.uint8), np.frombuffer(made[0], np.uint8))
    np.testing.assert_array_equal(cloud_to_xyz(flavour.wire(msg)), xyz)


def test_finite_cloud_is_dense(flavour):
    msg = flavour.wire(points_to_cloud(flavour.types, np.ones((H, W, 3)), _header(flavour.types)))
    assert msg.is_dense is True


def test_xyzrgb_cloud_packs_rgb_as_0x00rrggbb_float(flavour):
    xyz = _xyz(1)
    rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = [0x12, 0x34, 0x56]
    msg = flavour.wire(points_to_cloud(flavour.types, xyz, _header(flavour.types), rgb=rgb))
    assert _fields(msg)[3] == ("rgb", 12, 7, 1)
    assert (msg.point_step, msg.row_step) == (16, 16 * W)
    # The bytes of the first point's rgb float, read as a little-endian uint32.
    assert int(np.frombuffer(bytes(msg.data)[12:16], "<u4")[0]) == 0x00123456

    pts = read_cloud(msg)
    np.testing.assert_array_equal(unpack_rgb(pts["rgb"]), rgb)
    np.testing.assert_array_equal(cloud_to_xyz(msg), xyz)
    assert (pts["rgb"].view(np.uint32) >> 24 == 0).all()  # the top byte stays 0


def test_xyzrgb_label_cloud_round_trips(flavour):
    xyz = _xyz(2)
    rgb = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    label = np.arange(H * W, dtype=np.uint16).reshape(H, W)
    label[2, 4] = 65535
    msg = flavour.wire(
        points_to_cloud(flavour.types, xyz, _header(flavour.types), rgb=rgb, label=label)
    )
    assert _fields(msg)[3:] == [("rgb", 12, 7, 1), ("label", 16, 4, 1)]  # 4 = UINT16
    assert (msg.point_step, msg.row_step) == (20, 20 * W)  # padded to 4 bytes

    pts = read_cloud(msg)
    np.testing.assert_array_equal(pts["label"], label)
    np.testing.assert_array_equal(unpack_rgb(pts["rgb"]), rgb)
    arr = cloud_to_array(msg)
    assert arr.shape == (H, W)
    np.testing.assert_array_equal(arr["label"], label)
    np.testing.assert_array_equal(cloud_to_xyz(msg), xyz)


def test_unorganised_cloud_is_one_row(flavour):
    xyz = np.random.default_rng(3).uniform(-1, 1, (7, 3)).astype(np.float32)
    msg = flavour.wire(points_to_cloud(flavour.types, xyz, _header(flavour.types)))
    assert (msg.height, msg.width, msg.row_step) == (1, 7, 84)
    np.testing.assert_array_equal(cloud_to_xyz(msg), xyz[None])


def test_a_batch_of_clouds_equals_one_cloud_each(flavour):
    rng = np.random.default_rng(4)
    xyz = rng.uniform(-1, 1, (12, 3)).astype(np.float32)
    xyz[7] = np.nan
    rgb = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    header = _header(flavour.types)
    sizes = [5, 0, 7]
    batch = [flavour.wire(m) for m in points_to_clouds(flavour.types, xyz, sizes, header, rgb=rgb)]
    bounds = np.cumsum([0] + sizes)
    for msg, a, b in zip(batch, bounds[:-1], bounds[1:]):
        one = flavour.wire(points_to_cloud(flavour.types, xyz[a:b], header, rgb=rgb[a:b]))
        assert bytes(msg.data) == bytes(one.data) and msg.is_dense == one.is_dense
        assert (msg.width, msg.point_step, [f.name for f in msg.fields]) == (b - a, 16, ["x", "y", "z", "rgb"])
    assert [m.is_dense for m in batch] == [True, True, False]
    with pytest.raises(MessageError, match=r"cloud sizes \[5, 5\] do not add up to the 12 points"):
        points_to_clouds(flavour.types, xyz, [5, 5], header)


def test_cloud_shape_mismatches_raise(flavour):
    header = _header(flavour.types)
    with pytest.raises(MessageError, match=r"HxWx3 or Nx3, got shape \(3, 5, 2\)"):
        points_to_cloud(flavour.types, np.zeros((H, W, 2)), header)
    with pytest.raises(MessageError, match=r"rgb shape \(5, 3, 3\) does not match"):
        points_to_cloud(flavour.types, np.zeros((H, W, 3)), header, rgb=np.zeros((W, H, 3)))
    with pytest.raises(MessageError, match=r"label shape \(5, 3\) does not match"):
        points_to_cloud(flavour.types, np.zeros((H, W, 3)), header, label=np.zeros((W, H)))


def test_truncated_cloud_raises(flavour):
    msg = flavour.wire(points_to_cloud(flavour.types, _xyz(), _header(flavour.types)))
    short = flavour.types.PointCloud2(
        header=msg.header, height=msg.height, width=msg.width, fields=msg.fields,
        is_bigendian=False, point_step=msg.point_step, row_step=msg.row_step,
        data=flavour.types.uint8_seq(bytes(msg.data)[:-1]), is_dense=False,
    )
    with pytest.raises(MessageError, match=r"179 bytes, 3x5 points of 12 B"):
        cloud_to_xyz(short)


# -- across flavours ------------------------------------------------------------------------------


def test_rclpy_bytes_read_by_rosbags_and_back(both):
    """The two flavours speak the same CDR: a node's messages can be read from a bag and back."""
    from rclpy.serialization import deserialize_message, serialize_message

    rclpy_f, rosbags_f = both
    ts = rosbags_f.types.typestore
    rgb = _random("rgb8", seed=4)
    xyz = _xyz(4)
    label = np.arange(H * W, dtype=np.uint16).reshape(H, W)

    image = numpy_to_image(rclpy_f.types, rgb, "rgb8", _header(rclpy_f.types))
    cloud = points_to_cloud(rclpy_f.types, xyz, _header(rclpy_f.types), rgb=rgb, label=label)
    bag_image = ts.deserialize_cdr(serialize_message(image), "sensor_msgs/msg/Image")
    bag_cloud = ts.deserialize_cdr(serialize_message(cloud), "sensor_msgs/msg/PointCloud2")
    np.testing.assert_array_equal(image_to_numpy(bag_image), rgb)
    assert stamp_to_ns(bag_image.header.stamp) == STAMP_NS
    np.testing.assert_array_equal(cloud_to_xyz(bag_cloud), xyz)
    np.testing.assert_array_equal(cloud_to_array(bag_cloud)["label"], label)

    # ... and the bag's bytes deserialise into rclpy messages with the same content.
    node_image = deserialize_message(
        bytes(ts.serialize_cdr(bag_image, "sensor_msgs/msg/Image")), rclpy_f.types.Image
    )
    node_cloud = deserialize_message(
        bytes(ts.serialize_cdr(bag_cloud, "sensor_msgs/msg/PointCloud2")), rclpy_f.types.PointCloud2
    )
    np.testing.assert_array_equal(image_to_numpy(node_image), rgb)
    np.testing.assert_array_equal(cloud_to_xyz(node_cloud), xyz)
    assert (node_cloud.height, node_cloud.width) == (H, W)


def test_camera_info_crosses_flavours(both):
    from rclpy.serialization import serialize_message

    rclpy_f, rosbags_f = both
    cam = CameraModel(
        640, 480, [[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]],
        D=[0.1, -0.2, 0.001, 0.002, 0.05, 0.01, 0.0, 0.003], distortion_model="rational_polynomial",
    )
    msg = model_to_camera_info(rclpy_f.types, cam, _header(rclpy_f.types))
    back = camera_info_to_model(
        rosbags_f.types.typestore.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/CameraInfo")
    )
    np.testing.assert_array_equal(back.D, cam.D)
    np.testing.assert_array_equal(back.K, cam.K)
    assert back.distortion_model == "rational_polynomial"


def test_camera_info_with_ros1_field_names_from_a_converted_bag():
    """`rosbags-convert` keeps the ROS 1 definition: K, D, R, P in capitals."""
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    Info = ts.types["sensor_msgs/msg/CameraInfo"]
    assert "K" in Info.__dataclass_fields__ and "k" not in Info.__dataclass_fields__
    K = np.array([900.0, 0, 640, 0, 900.0, 480, 0, 0, 1])
    D = np.array([-0.28, 0.07, 0.001, -0.0005, 0.0])
    msg = Info(
        header=ts.types["std_msgs/msg/Header"](
            seq=3, stamp=ts.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam"),
        height=960, width=1280, distortion_model="plumb_bob", D=D, K=K, R=np.eye(3).ravel(),
        P=np.array([880.0, 0, 641, 0, 0, 880.0, 479, 0, 0, 0, 1, 0]), binning_x=2, binning_y=2,
        roi=ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                          width=0, do_rectify=False))
    cam = camera_info_to_model(ts.deserialize_ros1(ts.serialize_ros1(msg, Info.__msgtype__),
                                                   Info.__msgtype__))
    np.testing.assert_array_equal(cam.K.ravel(), K)
    np.testing.assert_array_equal(cam.D, D)
    assert cam.P[0, 0] == 880.0 and cam.is_distorted
    assert camera_info_size(msg) == (640, 480)  # binned 2x2


@pytest.mark.parametrize("binning, roi", [((0, 0), (0, 0, 0, 0)), ((2, 2), (0, 0, 0, 0)),
                                          ((1, 1), (100, 40, 320, 240)), ((2, 4), (8, 16, 640, 480)),
                                          ((3, 1), (0, 0, 0, 0))])
def test_camera_info_size_is_the_size_of_the_effective_camera(binning, roi):
    """The executor reads it for every CameraInfo, from the fields alone: it must agree with the
    full camera model's binning and ROI rules."""
    t = rosbags_types()
    cam = CameraModel.from_intrinsics(900.0, 900.0, 640.0, 480.0, 1280, 960)
    msg = model_to_camera_info(t, cam, make_header(t, 1, "cam"))
    msg.binning_x, msg.binning_y = binning
    x, y, w, h = roi
    msg.roi = t.RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False)
    assert camera_info_size(msg) == camera_info_to_model(msg).effective().size


def test_a_compressed_image_over_the_pixel_limit_is_refused_from_its_header():
    import cv2

    t = rosbags_types()
    ok, png = cv2.imencode(".png", np.zeros((15000, 15000), np.uint8))  # < 1 MB, 225 MP decoded
    msg = t.CompressedImage(header=make_header(t, 1, "cam"), format="png",
                            data=np.frombuffer(png.tobytes(), np.uint8))
    with pytest.raises(MessageError, match=r"225.0 MP, over max_image_pixels"):
        compressed_to_rgb(msg, max_pixels=40_000_000)
    small = rgb_to_compressed(t, np.zeros((48, 64, 3), np.uint8), msg.header, "png")
    assert compressed_to_rgb(small, max_pixels=64 * 48).shape == (48, 64, 3)
    with pytest.raises(MessageError, match="64x48"):
        compressed_to_rgb(small, max_pixels=64 * 48 - 1)


@pytest.mark.parametrize("flavour", ["rosbags", "rclpy"])
def test_an_odometry_pose_becomes_a_transform(flavour):
    from scipy.spatial.transform import Rotation

    from depth_perception.ros.messages import pose_to_matrix

    q = Rotation.from_euler("z", 30, degrees=True).as_quat()  # x, y, z, w
    if flavour == "rclpy":
        pytest.importorskip("nav_msgs.msg", reason="nav_msgs not installed")
        from nav_msgs.msg import Odometry

        odom = Odometry()
        pose = odom.pose.pose
        pose.position.x, pose.position.y, pose.position.z = 1.0, 2.0, 0.5
        (pose.orientation.x, pose.orientation.y, pose.orientation.z,
         pose.orientation.w) = (float(v) for v in q * 2.0)  # not normalised on the wire
    else:
        ts = rosbags_types().typestore
        G = ts.types
        pose = G["geometry_msgs/msg/Pose"](
            position=G["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=0.5),
            orientation=G["geometry_msgs/msg/Quaternion"](*(float(v) for v in q * 2.0)))
    T = pose_to_matrix(pose)
    assert np.allclose(T[:3, 3], [1.0, 2.0, 0.5])
    assert np.allclose(T[:3, :3], Rotation.from_euler("z", 30, degrees=True).as_matrix())
    if flavour == "rosbags":
        zero = G["geometry_msgs/msg/Pose"](position=pose.position,
                                          orientation=G["geometry_msgs/msg/Quaternion"](0, 0, 0, 0))
        with pytest.raises(MessageError, match="zero quaternion"):
            pose_to_matrix(zero)
