"""numpy ↔ ROS 2 messages, written once against message classes passed in.

The same functions serve rclpy's generated classes on a robot (:func:`rclpy_types`) and the
`rosbags` typestore classes in bag processing and tests (:func:`rosbags_types`); both carry the real
ROS 2 definitions. Nothing here imports rclpy at module level.

Encodings follow REP 118 and `sensor_msgs/image_encodings.hpp`. Point clouds are in
:mod:`.clouds`.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..camera import CameraModel, Roi

#: encoding → (numpy dtype, channels). Byte order is handled from ``is_bigendian``.
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "mono16": ("u2", 1),
    "16UC1": ("u2", 1),
    "32FC1": ("f4", 1),
}

COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")

# sensor_msgs/PointField datatype constants.


class MessageError(ValueError):
    """A message that cannot be converted; the text names the field and what is wrong."""


@dataclass(frozen=True)
class MessageTypes:
    """The message classes conversion needs, plus how each flavour stores sequence fields."""

    Time: Any
    Header: Any
    Image: Any
    CompressedImage: Any
    CameraInfo: Any
    RegionOfInterest: Any
    PointField: Any
    PointCloud2: Any
    uint8_seq: Callable[[Any], Any]  # bytes or a C-contiguous uint8 array → uint8[] field
    #: nbytes → (a uint8[] field's storage, a writable uint8 numpy view of it): a message's
    #: bytes written in place (the multi-megabyte cloud) instead of built, then copied in
    uint8_empty: Callable[[int], tuple[Any, np.ndarray]]
    float64_seq: Callable[[np.ndarray], Any]
    float64_fixed: Callable[[np.ndarray], Any]
    #: the typestore (rosbags) or None (rclpy); bag writing needs it to serialise.
    typestore: Any = None


def rosbags_types(distro: str = "ROS2_JAZZY") -> MessageTypes:
    """Message classes from a `rosbags` typestore (real definitions, serialise to CDR)."""
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(getattr(Stores, distro))
    t = ts.types
    return MessageTypes(
        Time=t["builtin_interfaces/msg/Time"],
        Header=t["std_msgs/msg/Header"],
        Image=t["sensor_msgs/msg/Image"],
        CompressedImage=t["sensor_msgs/msg/CompressedImage"],
        CameraInfo=t["sensor_msgs/msg/CameraInfo"],
        RegionOfInterest=t["sensor_msgs/msg/RegionOfInterest"],
        PointField=t["sensor_msgs/msg/PointField"],
        PointCloud2=t["sensor_msgs/msg/PointCloud2"],
        uint8_seq=lambda b: np.frombuffer(b, dtype=np.uint8).copy(),
        uint8_empty=_numpy_empty,
        float64_seq=lambda a: np.asarray(a, dtype=np.float64).reshape(-1).copy(),
        float64_fixed=lambda a: np.asarray(a, dtype=np.float64).reshape(-1).copy(),
        typestore=ts,
    )


def with_data(types: MessageTypes, cls: Any, data: np.ndarray, owned: bool = False,
              **fields: Any) -> Any:
    """``cls(**fields, data=data)`` for a message with a ``uint8[] data`` field, from a
    C-contiguous uint8 array, with the fewest copies of a multi-megabyte buffer: rclpy's generated
    constructor copies a sequence twice (``array('B', ...)`` in ``__init__`` and in the setter);
    rosbags keeps the array it is given. ``data`` is copied unless the caller ``owned`` a fresh
    buffer: a numpy array (rosbags) or the storage :attr:`MessageTypes.uint8_empty` gave."""
    if types.typestore is not None:
        return cls(**fields, data=data if owned else types.uint8_seq(data))
    msg = cls(**fields)
    keep = owned and isinstance(data, array.array) and data.typecode == "B"
    _keep_array(msg, "data", data if keep else types.uint8_seq(data))
    return msg


def _keep_array(msg: Any, name: str, value: array.array) -> None:
    """``msg.<name> = value`` for an rclpy message, keeping the array.array rather than a copy.

    Jazzy's generated setters copy an array.array (``array.array('B', value)``) unless the
    message checks its fields (``ROS_PYTHON_CHECK_FIELDS=1``), when they check its type code and
    keep it, as Humble's always do: a needless copy of a 6 MB cloud per frame. The check is
    switched on for this one assignment."""
    if getattr(msg, "_check_fields", None) is False:
        msg._check_fields = True
        try:
            setattr(msg, name, value)
        finally:
            msg._check_fields = False
    else:
        setattr(msg, name, value)


def _uint8_array(buffer: Any) -> array.array:
    out = array.array("B")
    out.frombytes(buffer)
    return out


def _uint8_array_empty(nbytes: int) -> tuple[array.array, np.ndarray]:
    # a one-byte array repeated is one memset: the pages are touched once, by the fill
    storage = array.array("B", b"\0") * int(nbytes)
    return storage, np.frombuffer(storage, dtype=np.uint8) if nbytes else np.empty(0, np.uint8)


def _numpy_empty(nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    buf = np.empty(int(nbytes), dtype=np.uint8)
    return buf, buf


def rclpy_types() -> MessageTypes:
    """Message classes generated for rclpy (needs a sourced ROS 2 install)."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import (
        CameraInfo,
        CompressedImage,
        Image,
        PointCloud2,
        PointField,
        RegionOfInterest,
    )
    from std_msgs.msg import Header

    return MessageTypes(
        Time=Time,
        Header=Header,
        Image=Image,
        CompressedImage=CompressedImage,
        CameraInfo=CameraInfo,
        RegionOfInterest=RegionOfInterest,
        PointField=PointField,
        PointCloud2=PointCloud2,
        # one memcpy from any C-contiguous buffer (bytes, a numpy array): array('B', x) would
        # iterate a non-bytes buffer, and rclpy validates lists element by element
        uint8_seq=_uint8_array,
        uint8_empty=_uint8_array_empty,
        float64_seq=lambda a: array.array("d", np.asarray(a, dtype=np.float64).reshape(-1)),
        float64_fixed=lambda a: np.asarray(a, dtype=np.float64).reshape(-1).copy(),
    )


# -- headers -------------------------------------------------------------------------------------


def stamp_to_ns(stamp: Any) -> int:
    """`builtin_interfaces/Time` → integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_header(types: MessageTypes, stamp_ns: int, frame_id: str) -> Any:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types.Header(stamp=types.Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def copy_header(types: MessageTypes, header: Any) -> Any:
    """A header of ``types`` with the stamp and frame of ``header`` (any flavour)."""
    return make_header(types, stamp_to_ns(header.stamp), header.frame_id)


def _as_u8(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)


# -- images --------------------------------------------------------------------------------------


def image_to_numpy(msg: Any) -> np.ndarray:
    """`sensor_msgs/Image` → HxW or HxWxC array in the message's own channel order and dtype.

    Honours row padding (``step`` > width·bytes per pixel) and ``is_bigendian``; the result is
    native-endian and owns its memory.
    """
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise MessageError(
            f"unsupported image encoding {enc!r} (supported: {', '.join(IMAGE_ENCODINGS)})"
        )
    kind, channels = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = w * channels * dtype.itemsize
    if h == 0 or w == 0:
        raise MessageError(f"image is empty ({w}x{h})")
    if step < row_bytes:
        raise MessageError(f"image step {step} < width·bytes per pixel {row_bytes} ({enc}, {w}x{h})")
    raw = _as_u8(msg.data)
    if raw.size < step * (h - 1) + row_bytes:
        raise MessageError(
            f"image data has {raw.size} bytes, {enc} {w}x{h} with step {step} needs {step * h}"
        )
    rows = np.lib.stride_tricks.as_strided(raw, shape=(h, row_bytes), strides=(step, 1))
    img = rows.copy().view(dtype).reshape(h, w, channels)  # owned and writable, as documented
    img = img.astype(dtype.newbyteorder("="), copy=False)
    return img[..., 0] if channels == 1 else img


def image_to_rgb(msg: Any) -> np.ndarray:
    """A colour `sensor_msgs/Image` → HxWx3 uint8 RGB (mono is replicated, mono16 scaled)."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise MessageError(
            f"colour image has encoding {msg.encoding!r}; expected one of {', '.join(COLOUR_ENCODINGS)}"
        )
    return to_rgb8(image_to_numpy(msg), msg.encoding)


def to_rgb8(img: np.ndarray, encoding: str) -> np.ndarray:
    """HxW[xC] array in ``encoding`` → HxWx3 uint8 RGB."""
    if encoding == "mono16":
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(img[..., 2::-1])
    return np.ascontiguousarray(img[..., :3])


def numpy_to_image(
    types: MessageTypes, img: np.ndarray, encoding: str, header: Any
) -> Any:
    """HxW or HxWxC array → `sensor_msgs/Image` (little-endian, no padding)."""
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(f"unsupported image encoding {encoding!r}")
    kind, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise MessageError(f"{encoding} needs {channels} channel(s), got array of shape {img.shape}")
    if arr.dtype != np.dtype(kind):
        raise MessageError(f"{encoding} needs dtype {np.dtype(kind)}, got {arr.dtype}")
    arr = np.ascontiguousarray(arr.astype(np.dtype(kind).newbyteorder("<"), copy=False))
    h, w = arr.shape[:2]
    return with_data(types, types.Image, arr.reshape(-1).view(np.uint8), header=header, height=h,
                     width=w, encoding=encoding, is_bigendian=0,
                     step=w * channels * arr.dtype.itemsize)


def depth_to_image(
    types: MessageTypes, depth_m: np.ndarray, header: Any, encoding: str = "32FC1"
) -> Any:
    """HxW float depth in metres → REP 118 image: 32FC1 metres (NaN invalid) or 16UC1 mm (0 invalid)."""
    d = np.asarray(depth_m, dtype=np.float32)
    if encoding == "32FC1":
        return numpy_to_image(types, d, "32FC1", header)
    if encoding == "16UC1":
        mm = np.where(np.isfinite(d) & (d > 0), np.round(d * 1000.0), 0.0)
        mm = np.where(mm > 65535, 0, mm).astype(np.uint16)
        return numpy_to_image(types, mm, "16UC1", header)
    raise MessageError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")


def image_to_depth(msg: Any) -> np.ndarray:
    """REP 118 depth image (32FC1 m or 16UC1/mono16 mm) → HxW float32 metres, NaN invalid."""
    if msg.encoding == "32FC1":
        d = image_to_numpy(msg).astype(np.float32, copy=True)
        d[~np.isfinite(d) | (d <= 0)] = np.nan
        return d
    if msg.encoding in ("16UC1", "mono16"):
        mm = image_to_numpy(msg)
        d = mm.astype(np.float32) * 1e-3
        d[mm == 0] = np.nan
        return d
    raise MessageError(f"depth image has encoding {msg.encoding!r}; expected 32FC1 or 16UC1")


def check_image_size(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """Raise MessageError when a ``width`` x ``height`` image is over ``max_pixels`` (None: no
    limit), before anything of its size is allocated."""
    _check_pixels(f"{width}x{height}", width * height, max_pixels, what)


def _check_pixels(size: str, pixels: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and pixels > max_pixels:
        raise MessageError(f"{what} is {size} = {pixels / 1e6:.1f} MP, over max_image_pixels "
                           f"({max_pixels / 1e6:.1f} MP)")


def compressed_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """`sensor_msgs/CompressedImage` (jpeg/png) → HxWx3 uint8 RGB. An image over ``max_pixels`` is
    refused from its header: a few kB of PNG can decode to gigabytes."""
    import cv2

    fmt = str(msg.format).lower()
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise MessageError(f"compressed image format {msg.format!r} is not jpeg or png")
    buf = _as_u8(msg.data)
    if max_pixels is not None and buf.size:
        from ..files import header_pixels

        header = header_pixels(buf.tobytes())
        if header is not None:
            _check_pixels(*header, max_pixels, f"compressed image ({msg.format})")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise MessageError(f"compressed image ({msg.format}) could not be decoded")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(types: MessageTypes, rgb: np.ndarray, header: Any, fmt: str = "jpeg") -> Any:
    import cv2

    ext = ".png" if fmt == "png" else ".jpg"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MessageError(f"could not encode image as {fmt}")
    return with_data(types, types.CompressedImage, np.ascontiguousarray(buf).reshape(-1).view(np.uint8),
                     owned=True, header=header, format=fmt)


# -- camera info ---------------------------------------------------------------------------------


def _info_field(msg: Any, name: str) -> Any:
    """A CameraInfo matrix field by its ROS 2 name (``k``) or its ROS 1 name (``K``): bags
    converted from ROS 1 keep the ROS 1 definitions."""
    value = getattr(msg, name, None)
    return getattr(msg, name.upper()) if value is None else value


def camera_info_to_model(msg: Any) -> CameraModel:
    """`sensor_msgs/CameraInfo` (ROS 2 field names ``d k r p`` or ROS 1 ``D K R P``) →
    :class:`CameraModel` (the full-resolution description)."""
    K = np.asarray(_info_field(msg, "k"), dtype=np.float64)
    if K.size != 9 or not np.any(K):
        raise MessageError("CameraInfo has no intrinsics (K is all zero): camera is uncalibrated")
    P = np.asarray(_info_field(msg, "p"), dtype=np.float64)
    R = np.asarray(_info_field(msg, "r"), dtype=np.float64)
    roi = msg.roi
    try:
        return CameraModel(
            width=int(msg.width),
            height=int(msg.height),
            K=K.reshape(3, 3),
            D=np.asarray(_info_field(msg, "d"), dtype=np.float64),
            distortion_model=str(msg.distortion_model) or "plumb_bob",
            R=R.reshape(3, 3) if np.any(R) else np.eye(3),
            P=P.reshape(3, 4) if np.any(P) else None,
            binning_x=int(msg.binning_x),
            binning_y=int(msg.binning_y),
            roi=Roi(
                int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width),
                bool(roi.do_rectify),
            ),
        )
    except ValueError as exc:
        raise MessageError(f"invalid CameraInfo: {exc}") from exc


def camera_info_size(msg: Any) -> tuple[int, int]:
    """(width, height) of the images a CameraInfo describes, binning and ROI applied (as
    :meth:`CameraModel.effective`). An unusable CameraInfo (no K) has a size too, so the image it
    would calibrate finds it and fails naming the real problem."""
    # read from the fields, not through camera_info_to_model: this runs on the executor for every
    # CameraInfo (a millisecond each would hold the GIL the worker needs)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    roi = msg.roi
    width = int(roi.width) if int(roi.width) else int(msg.width)
    height = int(roi.height) if int(roi.height) else int(msg.height)
    return width // bx, height // by


def model_to_camera_info(types: MessageTypes, cam: CameraModel, header: Any) -> Any:
    """:class:`CameraModel` → `sensor_msgs/CameraInfo`."""
    r = cam.roi
    return types.CameraInfo(
        header=header,
        height=cam.height,
        width=cam.width,
        distortion_model=cam.distortion_model,
        d=types.float64_seq(cam.D),
        k=types.float64_fixed(cam.K),
        r=types.float64_fixed(cam.R),
        p=types.float64_fixed(cam.P),
        binning_x=cam.binning_x,
        binning_y=cam.binning_y,
        roi=types.RegionOfInterest(
            x_offset=r.x_offset, y_offset=r.y_offset, height=r.height, width=r.width,
            do_rectify=r.do_rectify,
        ),
    )


# -- poses -------------------------------------------------------------------------------------------


def pose_to_matrix(pose: Any) -> np.ndarray:
    """`geometry_msgs/Pose` → 4x4 float64 transform (e.g. T_odom_base from `nav_msgs/Odometry`
    ``pose.pose``): rotation from the quaternion (normalised), translation in metres. Raises
    MessageError for a non-finite pose or a zero quaternion."""
    from scipy.spatial.transform import Rotation

    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w],
                 dtype=np.float64)
    t = np.array([pose.position.x, pose.position.y, pose.position.z], dtype=np.float64)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise MessageError("pose is not finite")
    norm = float(np.linalg.norm(q))
    if norm < 1e-6:
        raise MessageError("pose orientation is a zero quaternion")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / norm).as_matrix()
    T[:3, 3] = t
    return T
