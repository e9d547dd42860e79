"""Raw (distorted) frame → rectified frame, for ``rectify: true``.

Every pixel-aligned input is resampled into the rectified geometry of its own CameraInfo (K, D, R →
P, as image_proc's rectify node): colour images bilinearly, instance masks and sparse depth with the
nearest sample (ids and depths must not be blended). Pixel coordinates (detection boxes, prompt
points) are moved with the same model, and 3-D inputs expressed in the camera frame (LiDAR
extrinsics, a support plane) are rotated by R into the rectified frame.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .camera import CameraModel

if TYPE_CHECKING:
    from .pipeline import Frame
    from .segmentation.base import Detection


def _camera_key(cam: CameraModel) -> tuple:
    return (cam.width, cam.height, cam.K.tobytes(), cam.D.tobytes(), cam.R.tobytes(),
            cam.P.tobytes(), cam.distortion_model)


class RectifyMaps:
    """Remap tables (two HxW float32) per camera, computed once: a camera's calibration rarely
    changes, and building the tables costs more than applying them."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._maps: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
        key = _camera_key(cam)
        maps = self._maps.get(key)
        if maps is None:
            if len(self._maps) >= self.capacity:  # a stereo pair and a size change or two
                self._maps.pop(next(iter(self._maps)))
            maps = self._maps[key] = cam.rectify_maps()
        return maps


def remap(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray], nearest: bool = False) -> np.ndarray:
    """``image`` (HxW or HxWxC) resampled through ``maps``; outside the raw image: 0 (NaN for float)."""
    import cv2

    border = np.nan if np.issubdtype(image.dtype, np.floating) else 0
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(image, maps[0], maps[1], interp, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=border)


def rectify_points(cam: CameraModel, points_xy: np.ndarray) -> np.ndarray:
    """Nx2 raw pixel coordinates → Nx2 coordinates in the rectified image (K, D, R → P)."""
    import cv2

    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2))
    if cam.distortion_model == "equidistant" and cam.D.size:
        out = cv2.fisheye.undistortPoints(pts, cam.K, cam.D[:4], R=cam.R, P=cam.P[:, :3])
    else:
        D = cam.D if cam.D.size else None
        # iterate to convergence: OpenCV's default 5 iterations leave ~0.05 px at the corners
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)
        if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
            out = cv2.undistortPointsIter(pts, cam.K, D, cam.R, cam.P[:, :3], criteria)
        else:
            out = cv2.undistortPoints(pts, cam.K, D, R=cam.R, P=cam.P[:, :3], criteria=criteria)
    return out.reshape(-1, 2)


def rectify_box(cam: CameraModel, box_xyxy: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) raw box → the rectified box around its outline (distortion bends edges)."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    t = np.linspace(0.0, 1.0, 9)
    outline = np.concatenate([
        np.stack([x0 + (x1 - x0) * t, np.full_like(t, y0)], 1),
        np.stack([x0 + (x1 - x0) * t, np.full_like(t, y1)], 1),
        np.stack([np.full_like(t, x0), y0 + (y1 - y0) * t], 1),
        np.stack([np.full_like(t, x1), y0 + (y1 - y0) * t], 1)])
    r = rectify_points(cam, outline)
    return np.array([r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()])


def _rectify_detections(cam: CameraModel, detections: Sequence[Detection]) -> list[Detection]:
    out = []
    for det in detections:
        box = None if det.box_xyxy is None else rectify_box(cam, det.box_xyxy)
        pts = None if det.points_xy is None else rectify_points(cam, det.points_xy)
        out.append(replace(det, box_xyxy=box, points_xy=pts))
    return out


def rectify_frame(frame: Frame, maps: RectifyMaps,
                  T_camera_from_cloud: Sequence[float] | np.ndarray | None = None) -> Frame:
    """The frame resampled into its rectified geometry; its camera becomes ``camera.rectified()``
    (K = P's 3x3 block, D = 0, R = I). ``T_camera_from_cloud`` (16 values or 4x4) is the LiDAR
    extrinsics used when the frame brings none; it is rotated by R like the frame's own."""
    cam = frame.camera.effective()
    cam.check_image(frame.rgb, "colour image")
    left = maps.get(cam)
    R4 = np.eye(4)
    R4[:3, :3] = cam.R
    changes: dict = {"rgb": remap(frame.rgb, left), "camera": cam.rectified()}
    if frame.right_rgb is not None and frame.right_camera is not None:
        right = frame.right_camera.effective()
        right.check_image(frame.right_rgb, "right image")
        changes["right_rgb"] = remap(frame.right_rgb, maps.get(right))
        changes["right_camera"] = right.rectified()
    if frame.masks is not None and np.shape(frame.masks)[:2] == frame.rgb.shape[:2]:
        changes["masks"] = remap(np.asarray(frame.masks), left, nearest=True)
    if frame.sparse_depth is not None and np.shape(frame.sparse_depth)[:2] == frame.rgb.shape[:2]:
        changes["sparse_depth"] = remap(np.asarray(frame.sparse_depth), left, nearest=True)
    if frame.detections:
        changes["detections"] = _rectify_detections(cam, frame.detections)
    if frame.cloud_points is not None:
        T = frame.T_camera_from_cloud if frame.T_camera_from_cloud is not None else T_camera_from_cloud
        T = np.eye(4) if T is None else np.asarray(T, dtype=np.float64).reshape(4, 4)
        changes["T_camera_from_cloud"] = R4 @ T
    if frame.T_odom_camera is not None:  # the rectified optical frame is R x the raw one
        changes["T_odom_camera"] = np.asarray(frame.T_odom_camera, dtype=np.float64) @ R4.T
    if frame.support_plane is not None:
        plane = np.asarray(frame.support_plane, dtype=np.float64).copy()
        plane[:3] = cam.R @ plane[:3]
        changes["support_plane"] = plane
    return replace(frame, **changes)


__all__ = ["RectifyMaps", "rectify_box", "rectify_frame", "rectify_points", "remap"]
