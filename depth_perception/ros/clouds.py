"""numpy ↔ `sensor_msgs/PointCloud2`, written once against message classes passed in (rclpy's or a
rosbags typestore's, see :mod:`.messages`). Layout follows `sensor_msgs_py.point_cloud2`:
organised clouds are height-major (row v, column u), NaN points keep their place (REP 117), and
`rgb` is the PCL/RViz float whose bytes are 0x00RRGGBB.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .messages import MessageError, MessageTypes, _as_u8, with_data

#: sensor_msgs/PointField datatype → numpy dtype string
POINTFIELD_DATATYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_DATATYPE_OF = {np.dtype(v).str[1:]: k for k, v in POINTFIELD_DATATYPES.items()}


# -- point clouds --------------------------------------------------------------------------------


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """...x3 uint8 RGB → float32 with the bytes 0x00RRGGBB (the PCL/RViz `rgb` field)."""
    c = np.asarray(rgb)
    if c.dtype == np.uint8 and c.ndim >= 1 and c.shape[-1] == 3 and 0 < c.size // 3 < 2**31 \
            and sys.byteorder == "little":
        import cv2

        # one cv2 pass: bytes B, G, R, 255 are the little-endian uint32 0xFFRRGGBB; clear the top
        # byte. One image row: cv2 pays per row.
        bgra = cv2.cvtColor(np.ascontiguousarray(c).reshape(1, -1, 3), cv2.COLOR_RGB2BGRA)
        packed = bgra.view(np.uint32).reshape(c.shape[:-1])
        packed &= np.uint32(0x00FFFFFF)
        return packed.view(np.float32)
    c = np.asarray(rgb, dtype=np.uint32)
    packed = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    return packed.astype(np.uint32).view(np.float32)


def unpack_rgb(rgb_f32: np.ndarray) -> np.ndarray:
    """float32 packed `rgb` field → ...x3 uint8 RGB."""
    u = np.ascontiguousarray(rgb_f32, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=-1).astype(np.uint8)


def _make_cloud_dtype(rgb: bool, label: bool) -> np.dtype:
    names, formats, offsets = ["x", "y", "z"], ["<f4"] * 3, [0, 4, 8]
    if rgb:
        names.append("rgb"), formats.append("<f4"), offsets.append(12)
    if label:
        names.append("label"), formats.append("<u2"), offsets.append(offsets[-1] + 4)
    itemsize = (offsets[-1] + np.dtype(formats[-1]).itemsize + 3) // 4 * 4
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})


_CLOUD_DTYPES = {(r, lb): _make_cloud_dtype(r, lb) for r in (False, True) for lb in (False, True)}


def cloud_dtype(rgb: bool, label: bool) -> np.dtype:
    """Point layout: x, y, z float32 [, rgb float32] [, label uint16], 4-byte aligned."""
    return _CLOUD_DTYPES[(bool(rgb), bool(label))]


def _cloud_words(pts: np.ndarray, rgb: np.ndarray | None, label: np.ndarray | None,
                 out: np.ndarray) -> np.ndarray:
    """(N, point_step / 4) float32 words of the points in ``out`` (N * point_step uint8),
    little-endian host: one cv2.mixChannels pass interleaves x, y, z, packed rgb and the label (a
    uint16 widened to 32 bits, so its pad bytes are zero). cv2 copies 4-byte words as integers:
    NaN payloads and the rgb / label bit patterns pass unchanged."""
    import cv2

    n = pts.shape[0] * (pts.shape[1] if pts.ndim == 3 else 1)
    sources = [np.ascontiguousarray(pts).reshape(1, n, 3)]  # one image row: cv2 pays per row
    if rgb is not None:
        sources.append(pack_rgb(rgb).reshape(1, n, 1))
    if label is not None:
        sources.append(np.asarray(label).astype(np.uint16, copy=False).astype(np.uint32).view(np.float32)
                       .reshape(1, n, 1))
    words = 3 + len(sources) - 1
    dst = out.view(np.float32).reshape(1, n, words)
    cv2.mixChannels(sources, [dst], [v for c in range(words) for v in (c, c)])
    return dst.reshape(n, words)


def _check_cloud_arrays(pts: np.ndarray, rgb: np.ndarray | None, label: np.ndarray | None) -> None:
    if pts.shape[-1] != 3 or pts.ndim not in (2, 3):
        raise MessageError(f"points must be HxWx3 or Nx3, got shape {pts.shape}")
    if rgb is not None and rgb.shape[:-1] != pts.shape[:-1]:
        raise MessageError(f"rgb shape {rgb.shape} does not match points {pts.shape}")
    if label is not None and label.shape != pts.shape[:-1]:
        raise MessageError(f"label shape {label.shape} does not match points {pts.shape}")


def _cloud_bytes(pts: np.ndarray, rgb: np.ndarray | None, label: np.ndarray | None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """(N, point_step) uint8 rows in the :func:`cloud_dtype` layout, written into ``out`` (N *
    point_step uint8, e.g. a message's own storage) or a fresh buffer."""
    n = pts.shape[0] * (pts.shape[1] if pts.ndim == 3 else 1)
    dtype = cloud_dtype(rgb is not None, label is not None)
    if out is None:
        out = np.empty(n * dtype.itemsize, dtype=np.uint8)
    uint8_rgb = rgb is None or np.asarray(rgb).dtype == np.uint8
    if sys.byteorder == "little" and 0 < n < 2**31 and uint8_rgb:
        if rgb is None and label is None:
            out.view(np.float32).reshape(n, 3)[:] = pts.reshape(n, 3)
        else:
            _cloud_words(pts, rgb, label, out)
        return out.reshape(n, dtype.itemsize)
    # big-endian host, empty cloud or unusual rgb dtype: per-field structured assignment
    points = np.zeros(n, dtype=dtype)  # zeroed padding keeps the bytes reproducible
    points["x"], points["y"], points["z"] = (pts[..., i].reshape(n) for i in range(3))
    if rgb is not None:
        points["rgb"] = pack_rgb(rgb).reshape(n)
    if label is not None:
        points["label"] = label.reshape(n)
    out[:] = points.view(np.uint8).reshape(-1)
    return out.reshape(n, dtype.itemsize)


def _cloud_msg(types: MessageTypes, rows: Any, h: int, w: int, dtype: np.dtype, header: Any,
               is_dense: bool) -> Any:
    """PointCloud2 around (h * w, point_step) uint8 ``rows`` (a view is fine: it is copied for
    rclpy), or the storage :attr:`MessageTypes.uint8_empty` gave, kept as it is."""
    fields = [
        types.PointField(
            name=name, offset=dtype.fields[name][1], datatype=_DATATYPE_OF[dtype.fields[name][0].str[1:]],
            count=1,
        )
        for name in dtype.names
    ]
    # rows are a fresh buffer (or a view of one) made for this message: rosbags may keep it
    data = rows.reshape(-1) if isinstance(rows, np.ndarray) else rows
    return with_data(types, types.PointCloud2, data, owned=True, header=header,
                     height=h, width=w, fields=fields, is_bigendian=False,
                     point_step=dtype.itemsize, row_step=dtype.itemsize * w, is_dense=is_dense)


def points_to_cloud(
    types: MessageTypes,
    xyz: np.ndarray,
    header: Any,
    rgb: np.ndarray | None = None,
    label: np.ndarray | None = None,
) -> Any:
    """Points → `sensor_msgs/PointCloud2`.

    ``xyz`` is HxWx3 (organised: height H, width W, row-major, NaN kept) or Nx3 (unorganised:
    height 1); ``rgb`` is the matching ...x3 uint8, ``label`` the matching ... integer ids.
    """
    pts = np.asarray(xyz, dtype=np.float32)
    _check_cloud_arrays(pts, rgb, label)
    h, w = (pts.shape[0], pts.shape[1]) if pts.ndim == 3 else (1, pts.shape[0])
    dtype = cloud_dtype(rgb is not None, label is not None)
    storage, out = types.uint8_empty(h * w * dtype.itemsize)  # the message's own bytes
    _cloud_bytes(pts, rgb, label, out)
    return _cloud_msg(types, storage, h, w, dtype, header, _all_finite(pts))


def points_to_clouds(
    types: MessageTypes,
    xyz: np.ndarray,
    counts: "list[int] | np.ndarray",
    header: Any,
    rgb: np.ndarray | None = None,
) -> list[Any]:
    """Consecutive runs of Nx3 points (``counts`` points each) → one unorganised PointCloud2 each.

    Many small clouds (one per region) cost one interleaving pass for all of them instead of one
    each; every message gets a view of its rows of the shared buffer (rosbags) or its bytes (rclpy).
    """
    pts = np.asarray(xyz, dtype=np.float32)
    if pts.ndim != 2:
        raise MessageError(f"points must be Nx3 for a batch of clouds, got shape {pts.shape}")
    _check_cloud_arrays(pts, rgb, None)
    sizes = [int(c) for c in counts]
    if sum(sizes) != pts.shape[0] or min(sizes, default=0) < 0:
        raise MessageError(f"cloud sizes {sizes} do not add up to the {pts.shape[0]} points")
    dtype = cloud_dtype(rgb is not None, False)
    rows = _cloud_bytes(pts, rgb, None)
    finite = np.isfinite(pts).all(axis=1)  # one pass for every cloud's is_dense
    bounds = np.cumsum([0] + sizes).tolist()
    return [_cloud_msg(types, rows[a:b], 1, b - a, dtype, header, bool(finite[a:b].all()))
            for a, b in zip(bounds[:-1], bounds[1:])]


def _all_finite(a: np.ndarray) -> bool:
    """np.isfinite(a).all(), answered by a sparse sample first when that already finds a NaN (an
    organised cloud from depth nearly always has some)."""
    flat = a.reshape(-1)
    if flat.size > 4096 and not np.isfinite(flat[:: flat.size // 1024]).all():
        return False
    return bool(np.isfinite(flat).all())


def cloud_to_array(msg: Any) -> np.ndarray:
    """`sensor_msgs/PointCloud2` → structured array of shape (height, width) with its own fields."""
    names, formats, offsets = [], [], []
    order = ">" if msg.is_bigendian else "<"
    for f in msg.fields:
        if int(f.datatype) not in POINTFIELD_DATATYPES:
            raise MessageError(f"point field {f.name!r} has unknown datatype {f.datatype}")
        base = order + POINTFIELD_DATATYPES[int(f.datatype)]
        names.append(f.name)
        formats.append(base if int(f.count) <= 1 else (base, int(f.count)))
        offsets.append(int(f.offset))
    h, w, step = int(msg.height), int(msg.width), int(msg.point_step)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    raw = _as_u8(msg.data)
    row_step = int(msg.row_step)
    if raw.size < row_step * h or row_step < step * w:
        raise MessageError(
            f"point cloud data has {raw.size} bytes, {h}x{w} points of {step} B (row_step {row_step})"
        )
    rows = np.lib.stride_tricks.as_strided(raw, shape=(h, step * w), strides=(row_step, 1))
    # The field dtypes carry the message's byte order, so values read correctly either way.
    return np.ascontiguousarray(rows).view(dtype).reshape(h, w)


def cloud_to_xyz(msg: Any) -> np.ndarray:
    """`sensor_msgs/PointCloud2` → (height, width, 3) float32 xyz."""
    arr = cloud_to_array(msg)
    for name in ("x", "y", "z"):
        if name not in arr.dtype.names:
            raise MessageError(f"point cloud has no {name!r} field (fields: {arr.dtype.names})")
    return np.stack([arr["x"], arr["y"], arr["z"]], axis=-1).astype(np.float32)
