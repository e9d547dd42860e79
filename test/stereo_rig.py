"""A calibrated stereo rig with real distortion and a rotation between its cameras, rectified by
OpenCV's own ``stereoRectify``, looking at a textured plane: exact rectified and raw images of both
cameras, the CameraInfo models a calibration would publish, and the true depth of the rectified
left image."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_perception.camera import CameraModel

SIZE = (320, 240)  # width, height
D_LEFT = np.array([-0.3, 0.1, 0.001, -0.002, 0.0])
D_RIGHT = np.array([-0.28, 0.09, -0.001, 0.001, 0.0])


@dataclass(frozen=True)
class StereoRig:
    left: CameraModel  # K, D of the raw camera, R and P of its rectification (as CameraInfo)
    right: CameraModel
    baseline_m: float
    plane: np.ndarray  # (4,) n, d of the plane n·X = d in the rectified left frame
    texture: np.ndarray  # HxWx3 uint8, 300 px per metre on the plane

    def rays_rectified(self) -> np.ndarray:
        """HxWx3 rays (z = 1) of the rectified left image, rectified left frame."""
        return _pinhole_rays(self.left.P[:, :3], SIZE)

    def rays_raw(self, cam: CameraModel) -> np.ndarray:
        """HxWx3 rays of a raw image (distortion removed), rotated into the rectified frame."""
        w, h = SIZE
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        xy = cv2.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), cam.K, cam.D,
                                 criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12))
        rays = np.concatenate([xy.reshape(-1, 2), np.ones((w * h, 1))], 1) @ cam.R.T
        return rays.reshape(h, w, 3)

    def render(self, rays: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 image, HxW float32 z in the rectified left frame) seen along ``rays``
        from ``origin`` (both in the rectified left frame)."""
        n, d = self.plane[:3], self.plane[3]
        t = (d - n @ origin) / (rays @ n)
        X = origin + t[..., None] * rays
        e1 = np.cross(n, [0.0, 1.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(n, e1)
        th, tw = self.texture.shape[:2]
        tu = (X @ e1 * 300.0 + tw / 2).astype(np.float32)
        tv = (X @ e2 * 300.0 + th / 2).astype(np.float32)
        image = cv2.remap(self.texture, tu, tv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return image, X[..., 2].astype(np.float32)

    def rectified_pair(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(left, right) rectified images and the true depth of the left one."""
        rays = self.rays_rectified()
        left, depth = self.render(rays, np.zeros(3))
        right, _ = self.render(rays, np.array([self.baseline_m, 0.0, 0.0]))
        return left, right, depth

    def raw_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) raw (distorted, unrectified) images."""
        left, _ = self.render(self.rays_raw(self.left), np.zeros(3))
        right, _ = self.render(self.rays_raw(self.right), np.array([self.baseline_m, 0.0, 0.0]))
        return left, right


def _pinhole_rays(K: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([u, v, np.ones_like(u)], -1)
    return pix @ np.linalg.inv(K).T


def make_rig() -> StereoRig:
    """Two cameras 6 cm apart, rotated ~1.5 degrees relative to each other, with plumb_bob
    distortion, rectified by ``cv2.stereoRectify`` (zero disparity at infinity), facing a tilted
    plane 0.8-1.3 m away textured with a real photograph."""
    from skimage import data

    w, h = SIZE
    K1 = np.array([[260.0, 0, 158.0], [0, 262.0, 121.0], [0, 0, 1]])
    K2 = np.array([[255.0, 0, 163.0], [0, 257.0, 118.0], [0, 0, 1]])
    R, _ = cv2.Rodrigues(np.array([0.01, -0.02, 0.008]))
    T = np.array([-0.06, 0.002, 0.001])
    R1, R2, P1, P2, *_ = cv2.stereoRectify(K1, D_LEFT, K2, D_RIGHT, (w, h), R, T.reshape(3, 1),
                                           flags=cv2.CALIB_ZERO_DISPARITY, alpha=0.0)
    left = CameraModel(width=w, height=h, K=K1, D=D_LEFT, R=R1, P=P1)
    right = CameraModel(width=w, height=h, K=K2, D=D_RIGHT, R=R2, P=P2)
    n = np.array([0.15, -0.35, -1.0])
    n /= np.linalg.norm(n)
    texture = np.ascontiguousarray(np.tile(data.astronaut(), (2, 2, 1)))
    return StereoRig(left=left, right=right, baseline_m=float(-P2[0, 3] / P2[0, 0]),
                     plane=np.append(n, -1.0), texture=texture)
