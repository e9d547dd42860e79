"""Stage 1, signals: whatever metric measurement the robot has → sparse metric samples on the
prediction grid.

Every ``sparse_from_*`` returns HxW float32 metres on the (H, W) prediction grid, NaN where there is
no sample; nothing is interpolated. The inputs are described by four signal types that a driver
hands to :class:`~depth_perception.metric.MetricAligner`:

- :class:`DepthImageSignal`: a registered depth image, 16UC1 (integer units of ``depth_scale_m``,
  0 invalid) or 32FC1 (metres, non-finite or <= 0 invalid), of any size; resampled by
  :func:`resample_sparse`, which keeps the nearest surface of each block instead of blending edges.
- :class:`PointCloudSignal`: Nx3 points in metres in the cloud's frame plus the 4x4
  ``T_camera_from_cloud``; projected into the image by :func:`project_points` (K and distortion of
  the camera model), each pixel keeping its nearest point.
- :class:`StereoSignal`: a rectified uint8 pair; SGBM disparity → depth (Z = f*B/(d + doffs)).
- :class:`PlaneSignal`: camera height (m) above the support plane and optionally its unit normal in
  the optical frame; consumed by :func:`~depth_perception.metric.fit_plane`, not turned into samples
  here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import CameraModel
from ..stereo import StereoParams


@dataclass(frozen=True)
class DepthImageSignal:
    """A depth image registered to the colour camera: HxW float32/64 metres (NaN/<= 0 invalid, 32FC1)
    or HxW unsigned integer in units of ``depth_scale_m`` (0 invalid; 16UC1 millimetres). Any size:
    it is resampled to the prediction grid."""

    depth: np.ndarray
    depth_scale_m: float = 0.001


@dataclass(frozen=True)
class PointCloudSignal:
    """Nx3 points (x, y, z metres) in the cloud's frame (e.g. a LiDAR), and the 4x4 transform that
    maps them into the colour camera's optical frame; None uses ``MetricConfig.T_camera_from_cloud``.
    Rows with NaN are dropped (REP 117)."""

    points: np.ndarray
    T_camera_from_cloud: np.ndarray | None = None


@dataclass(frozen=True)
class StereoSignal:
    """A rectified pair whose left image is the colour image (HxWx3 or HxW uint8 each). The baseline
    comes from ``baseline_m`` or else from ``right_camera.P`` (P[0,3] = -fx*B); ``doffs_px`` is
    cx_right - cx_left (0 for ROS pairs; taken from ``right_camera`` when given)."""

    left: np.ndarray
    right: np.ndarray
    baseline_m: float | None = None
    right_camera: CameraModel | None = None
    doffs_px: float = 0.0


@dataclass(frozen=True)
class PlaneSignal:
    """Per-frame camera height above the support plane (metres, e.g. from TF) and optionally the
    plane's unit normal in the camera optical frame, pointing from the plane towards the camera."""

    camera_height_m: float
    normal_camera: tuple[float, float, float] | None = None


def depth_image_to_metres(depth: np.ndarray, depth_scale_m: float = 0.001) -> np.ndarray:
    """HxW float32 metres, NaN where invalid, from a 16UC1-style integer image (0 invalid, units of
    ``depth_scale_m``) or a 32FC1-style float image (non-finite or <= 0 invalid)."""
    if not isinstance(depth, np.ndarray):
        raise ValueError(f"depth image must be a numpy array, got {type(depth).__name__}")
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth image must be HxW, got shape {depth.shape}")
    if np.issubdtype(depth.dtype, np.unsignedinteger):
        if not (np.isfinite(depth_scale_m) and depth_scale_m > 0):
            raise ValueError(f"depth_scale_m must be > 0, got {depth_scale_m!r}")
        out = depth.astype(np.float32) * np.float32(depth_scale_m)
        out[depth == 0] = np.nan
        return out
    if np.issubdtype(depth.dtype, np.floating):
        out = depth.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            out[~(np.isfinite(out) & (out > 0))] = np.nan
        return out
    raise ValueError(f"depth image must be unsigned integer (16UC1) or float (32FC1), got {depth.dtype}")


def resample_sparse(depth_m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample HxW float32 metric depth (NaN = no sample) to ``shape`` = (H', W') without inventing
    depth: shrinking takes the *nearest* (minimum) valid depth of each block of source pixels, so a
    block straddling an object edge reports the foreground surface, never a blend of the two;
    enlarging picks the nearest source pixel."""
    h, w = depth_m.shape
    th, tw = int(shape[0]), int(shape[1])
    if (h, w) == (th, tw):
        return depth_m
    # NaN → +inf so that minimum ignores it; all-NaN blocks come back as inf → NaN
    out = np.where(np.isfinite(depth_m), depth_m, np.float32(np.inf)).astype(np.float32)
    for axis, (n_src, n_dst) in enumerate(((h, th), (w, tw))):
        if n_src >= n_dst:  # block i covers source pixels [floor(i*n_src/n_dst), floor((i+1)*...))
            starts = (np.arange(n_dst) * n_src) // n_dst
            out = np.minimum.reduceat(out, starts, axis=axis)
        else:  # pixel centres: source index of the target pixel centre
            idx = np.minimum(((np.arange(n_dst) + 0.5) * n_src / n_dst).astype(np.intp), n_src - 1)
            out = np.take(out, idx, axis=axis)
    out[~np.isfinite(out)] = np.nan
    return out


def sparse_from_depth_image(depth: np.ndarray, shape: tuple[int, int],
                            depth_scale_m: float = 0.001) -> np.ndarray:
    """Metric samples HxW float32 (NaN = none) on a (H, W) prediction grid from a registered depth
    image (see :func:`depth_image_to_metres` for the encodings and :func:`resample_sparse`)."""
    return resample_sparse(depth_image_to_metres(depth, depth_scale_m), shape)


def project_points(camera: CameraModel, points_camera: np.ndarray) -> np.ndarray:
    """Nx2 float64 pixel coordinates of Nx3 camera-frame points (all z > 0) with the same model that
    :meth:`CameraModel.backproject` inverts (K and the distortion D of the image), so a projected
    sample lands where that pixel's ray is."""
    cam = camera.effective()
    pts = np.asarray(points_camera, dtype=np.float64).reshape(-1, 3)
    if not cam.is_distorted:
        uvw = pts @ cam.K.T
        return uvw[:, :2] / uvw[:, 2:3]
    if len(pts) == 0:
        return np.zeros((0, 2))
    zero = np.zeros(3)
    if cam.distortion_model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), zero, zero, cam.K, cam.D[:4])
    else:
        uv, _ = cv2.projectPoints(pts, zero, zero, cam.K, cam.D)
    return uv.reshape(-1, 2)


def _as_transform(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.size == 16:
        T = T.reshape(4, 4)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"T_camera_from_cloud must be a finite 4x4 matrix (or 16 values), got shape {T.shape}")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"T_camera_from_cloud's last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    return T


def sparse_from_pointcloud(points: np.ndarray, T_camera_from_cloud, camera: CameraModel,
                           shape: tuple[int, int] | None = None, min_depth_m: float = 0.0) -> np.ndarray:
    """Metric samples HxW float32 (NaN = none) from Nx3 points (metres, cloud frame).

    The points are moved into the camera optical frame with ``T_camera_from_cloud`` (4x4), those with
    z <= ``min_depth_m`` (behind the camera) dropped, the rest projected with ``camera`` (scaled to
    ``shape`` = (H, W) when given) and rounded to the nearest pixel; points outside the image are
    dropped and each pixel keeps its *nearest* point (the one the camera sees).
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3 or not np.issubdtype(pts.dtype, np.number):
        raise ValueError(f"points must be an Nx3 numeric array, got shape {pts.shape} dtype {pts.dtype}")
    T = _as_transform(T_camera_from_cloud)
    cam = camera.effective()
    h, w = (cam.height, cam.width) if shape is None else (int(shape[0]), int(shape[1]))
    if (w, h) != (cam.width, cam.height):
        cam = cam.scaled(w, h)
    out = np.full((h, w), np.nan, dtype=np.float32)
    xyz = pts[:, :3].astype(np.float64)
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    p = xyz @ T[:3, :3].T + T[:3, 3]
    p = p[p[:, 2] > max(min_depth_m, 1e-6)]
    if len(p) == 0:
        return out
    uv = project_points(cam, p)
    ui = np.floor(uv[:, 0] + 0.5)
    vi = np.floor(uv[:, 1] + 0.5)
    inside = np.isfinite(uv).all(axis=1) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    if not inside.any():
        return out
    pix = vi[inside].astype(np.intp) * w + ui[inside].astype(np.intp)
    z = p[inside, 2]
    order = np.argsort(z, kind="stable")  # nearest first: np.unique keeps the first occurrence
    first_pix, first = np.unique(pix[order], return_index=True)
    out.reshape(-1)[first_pix] = z[order][first].astype(np.float32)
    return out


def sparse_from_stereo(left: np.ndarray, right: np.ndarray, camera: CameraModel, baseline_m: float,
                       shape: tuple[int, int] | None = None, params: StereoParams | None = None,
                       doffs_px: float = 0.0, min_depth_m: float = 0.0,
                       max_depth_m: float = float("inf")) -> np.ndarray:
    """Metric samples HxW float32 (NaN = none) from SGBM on a rectified pair (Z = f*B/(d + doffs)).

    ``camera`` describes the left image (scaled to its size if it describes another resolution); the
    result is resampled to ``shape`` = (H, W) (nearest surface per block, see :func:`resample_sparse`).
    """
    from ..stereo import stereo_depth

    if not isinstance(left, np.ndarray) or left.ndim < 2:
        raise ValueError(f"stereo left image must be an HxW or HxWx3 array, got {getattr(left, 'shape', left)!r}")
    cam = camera.effective()
    lh, lw = left.shape[:2]
    if (lw, lh) != (cam.width, cam.height):
        cam = cam.scaled(lw, lh)
    fx = float(cam.P[0, 0]) if cam.P[0, 0] > 0 else cam.fx
    res = stereo_depth(left, right, fx=fx, baseline_m=baseline_m, params=params, doffs=doffs_px,
                       min_depth_m=min_depth_m, max_depth_m=max_depth_m)
    return res.depth_m if shape is None else resample_sparse(res.depth_m, shape)
