"""Pinhole camera model built from `sensor_msgs/CameraInfo` fields.

Conventions: REP 103 optical frame (x right, y down, z forward), pixel centres at integer
coordinates (OpenCV), depth in metres along +z. ``K`` is the 3x3 intrinsic matrix of the *raw*
(distorted) image, ``P`` the 3x4 projection matrix of the rectified image, as in CameraInfo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

#: Distortion models of `sensor_msgs/distortion_models.hpp` and their coefficient counts.
DISTORTION_COEFFS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

#: How an image relates to its CameraInfo (see :func:`image_geometry`).
GEOMETRIES = ("auto", "rectified", "raw")


def rectified_topic(topic: str) -> bool | None:
    """Whether a ROS image topic carries a rectified image by image_proc's naming (``image_rect``,
    ``image_rect_color``, also under ``.../compressed``): True for those, False for ``image_raw`` /
    ``image_color`` / ``image_mono``, None when the name says nothing (e.g. ``image``)."""
    parts = [p for p in topic.split("/") if p and p not in ("compressed", "compressedDepth")]
    if not parts:
        return None
    name = parts[-1]
    if name.startswith("image_rect"):
        return True
    if name in ("image_raw", "image_color", "image_mono"):
        return False
    return None


def image_geometry(setting: str, stereo: bool, rectified_hint: bool | None,
                   rectify: bool = False) -> str:
    """``"rectified"`` or ``"raw"``: how to read the CameraInfo of an image.

    As image_geometry's PinholeCameraModel: a rectified image (image_proc's ``image_rect``, every
    stereo pair SGBM can match) is described by P's 3x3 block with no distortion; a raw image by K
    and D. ``setting`` ``auto`` decides from the topic name (``rectified_hint``), else by
    ``rectify`` (asking to rectify says the images are raw), else stereo → rectified, monocular →
    raw.
    """
    if setting not in GEOMETRIES:
        raise ValueError(f"image_geometry must be one of {', '.join(GEOMETRIES)}, got {setting!r}")
    if setting != "auto":
        return setting
    if rectified_hint is not None:
        return "rectified" if rectified_hint else "raw"
    return "rectified" if stereo and not rectify else "raw"


@dataclass(frozen=True)
class Roi:
    """`sensor_msgs/RegionOfInterest` in full-resolution pixels; all zero means the full image."""

    x_offset: int = 0
    y_offset: int = 0
    height: int = 0
    width: int = 0
    do_rectify: bool = False

    @property
    def is_full(self) -> bool:
        return self.x_offset == 0 and self.y_offset == 0 and self.height == 0 and self.width == 0


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one camera image; the fields mirror `sensor_msgs/CameraInfo`.

    ``width``/``height`` are the full sensor resolution as in CameraInfo; with binning or an ROI the
    published image is smaller, and :meth:`effective` gives the model of that image.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: np.ndarray | None = None
    binning_x: int = 0
    binning_y: int = 0
    roi: Roi = field(default_factory=Roi)

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        P = np.hstack([K, np.zeros((3, 1))]) if self.P is None else np.asarray(self.P, np.float64)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "P", P.reshape(3, 4))
        self.validate()

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_intrinsics(
        cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int
    ) -> CameraModel:
        """An undistorted pinhole camera (rectified image: P = [K | 0])."""
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(width=int(width), height=int(height), K=K)

    def validate(self) -> None:
        """Raise ValueError naming the first field that no camera could have."""
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not np.all(np.isfinite(self.K)) or self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise ValueError(f"camera K must be finite with fx, fy > 0, got K={self.K.tolist()}")
        if self.K[2, 2] != 1.0 or self.K[1, 0] != 0.0 or self.K[2, 0] != 0.0 or self.K[2, 1] != 0.0:
            raise ValueError(f"camera K is not an intrinsic matrix: {self.K.tolist()}")
        # a calibration whose principal point lies over an image width/height outside the image
        # belongs to another camera or another resolution
        if not (-self.width <= self.cx <= 2 * self.width and -self.height <= self.cy <= 2 * self.height):
            raise ValueError(f"camera K principal point ({self.cx:g}, {self.cy:g}) lies far outside the "
                             f"{self.width}x{self.height} image")
        P = self.P
        if P is not None and (not np.all(np.isfinite(P)) or P[0, 0] <= 0 or P[1, 1] <= 0):
            raise ValueError(f"camera P must be finite with fx', fy' > 0, got P={np.asarray(P).tolist()}")
        if self.D.size and self.distortion_model not in DISTORTION_COEFFS:
            known = ", ".join(sorted(DISTORTION_COEFFS))
            raise ValueError(
                f"unsupported distortion model {self.distortion_model!r} (supported: {known})"
            )
        if self.D.size and self.D.size < DISTORTION_COEFFS[self.distortion_model]:
            need = DISTORTION_COEFFS[self.distortion_model]
            raise ValueError(
                f"distortion model {self.distortion_model!r} needs {need} coefficients, "
                f"got {self.D.size}"
            )
        if not np.all(np.isfinite(self.D)):
            raise ValueError("camera distortion coefficients D must be finite")
        if self.binning_x < 0 or self.binning_y < 0:
            raise ValueError("camera binning must be >= 0")

    # -- derived cameras -------------------------------------------------------------------------

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image this model describes."""
        return self.width, self.height

    @property
    def is_distorted(self) -> bool:
        return bool(self.D.size) and bool(np.any(self.D != 0.0))

    @property
    def baseline_m(self) -> float:
        """Stereo baseline from P (right camera of a rectified pair: P[0,3] = -fx'·B), else 0."""
        return float(-self.P[0, 3] / self.P[0, 0]) if self.P[0, 0] else 0.0

    def effective(self) -> CameraModel:
        """The model of the image actually published, with binning and ROI applied (as
        image_geometry does): size, K and P shrink by the binning, principal points shift by the ROI.
        """
        bx = max(self.binning_x, 1)
        by = max(self.binning_y, 1)
        if bx == 1 and by == 1 and self.roi.is_full:
            return self
        x0, y0 = self.roi.x_offset, self.roi.y_offset
        w = self.roi.width if self.roi.width else self.width
        h = self.roi.height if self.roi.height else self.height
        K = self.K.copy()
        P = self.P.copy()
        for M in (K, P):
            M[0, 2] = (M[0, 2] - x0) / bx
            M[1, 2] = (M[1, 2] - y0) / by
            M[0, 0] /= bx
            M[1, 1] /= by
            M[0, 1] /= bx
        P[0, 3] /= bx
        P[1, 3] /= by
        return replace(self, width=w // bx, height=h // by, K=K, P=P, binning_x=0, binning_y=0,
                       roi=Roi())

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for an image resized to ``width`` x ``height`` (no crop).

        Pixel centres map as u' = (u + 0.5)·s − 0.5, so the principal point moves accordingly.
        """
        cam = self.effective()
        if (width, height) == (cam.width, cam.height):
            return cam
        if width <= 0 or height <= 0:
            raise ValueError(f"cannot scale camera to {width}x{height}")
        sx, sy = width / cam.width, height / cam.height
        S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return replace(cam, width=int(width), height=int(height), K=S @ cam.K, P=S @ cam.P)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> CameraModel:
        """The same camera for the crop [y0:y0+height, x0:x0+width] of the effective image."""
        cam = self.effective()
        T = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        return replace(cam, width=int(width), height=int(height), K=T @ cam.K, P=T @ cam.P)

    def rectified(self) -> CameraModel:
        """The model of the rectified image: K = P[:, :3], no distortion, R = I (P unchanged, so a
        right camera keeps its Tx = -fx'·B)."""
        cam = self.effective()
        return replace(cam, K=cam.P[:, :3].copy(), D=np.zeros(0), R=np.eye(3))

    @property
    def rectification_is_identity(self) -> bool:
        """Whether rectifying changes nothing: no distortion, R = I and P's 3x3 block equal to K."""
        return (not self.is_distorted and np.allclose(self.R, np.eye(3))
                and np.allclose(self.P[:, :3], self.K))

    def describe(self, geometry: str) -> str:
        """One line naming the model used for rays, e.g. "rectified: rays from P (fx 525.0)"."""
        if geometry == "rectified":
            return f"rectified: rays from P (fx {self.P[0, 0]:.1f}, cx {self.P[0, 2]:.1f}), no distortion"
        if self.is_distorted:
            return (f"raw: rays from K (fx {self.fx:.1f}) and D ({self.distortion_model}, "
                    f"{np.count_nonzero(self.D)} non-zero)")
        return f"raw: rays from K (fx {self.fx:.1f}), no distortion"

    # -- image geometry ---------------------------------------------------------------------------

    def check_image(self, image: np.ndarray, what: str = "image") -> None:
        """Raise ValueError unless ``image`` (HxW or HxWxC) has this model's effective size."""
        cam = self.effective()
        h, w = image.shape[:2]
        if (w, h) != (cam.width, cam.height):
            raise ValueError(
                f"{what} is {w}x{h} but CameraInfo describes {cam.width}x{cam.height} "
                "(resized image without a matching CameraInfo?)"
            )

    def rectify_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV remap tables (two HxW float32) from the raw image to the rectified image."""
        import cv2

        cam = self.effective()
        size = (cam.width, cam.height)
        new_K = cam.P[:, :3]
        if cam.distortion_model == "equidistant" and cam.D.size:
            return cv2.fisheye.initUndistortRectifyMap(
                cam.K, cam.D[:4], cam.R, new_K, size, cv2.CV_32FC1
            )
        return cv2.initUndistortRectifyMap(cam.K, cam.D, cam.R, new_K, size, cv2.CV_32FC1)

    def rectify_image(self, image: np.ndarray, interpolation: int | None = None) -> np.ndarray:
        """Undistort and rectify a raw image (bilinear; pass cv2.INTER_NEAREST for labels)."""
        import cv2

        self.check_image(image)
        map_x, map_y = self.rectify_maps()
        interp = cv2.INTER_LINEAR if interpolation is None else interpolation
        return cv2.remap(image, map_x, map_y, interp, borderMode=cv2.BORDER_CONSTANT)

    def normalized_rays(self) -> np.ndarray:
        """HxWx2 float32 (x/z, y/z) of every pixel's viewing ray, distortion removed.

        Stored as two planes (the HxWx2 array is a view of a 2xHxW one), so that ``rays[..., 0]``
        is contiguous: backprojection multiplies whole planes.
        """
        cam = self.effective()
        u, v = np.meshgrid(
            np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64)
        )
        if not cam.is_distorted:
            x = (u - cam.cx - cam.K[0, 1] * (v - cam.cy) / cam.fy) / cam.fx
            y = (v - cam.cy) / cam.fy
            return np.stack([x, y]).astype(np.float32).transpose(1, 2, 0)
        import cv2

        pix = np.stack([u, v], axis=-1).reshape(-1, 1, 2)
        if cam.distortion_model == "equidistant":
            xy = cv2.fisheye.undistortPoints(pix, cam.K, cam.D[:4])
        else:
            # OpenCV's default stops after 5 iterations: ~0.01 px off for plumb_bob, ~0.7 px for
            # rational_polynomial. Iterate to convergence (undistortPointsIter is OpenCV 4 only).
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)
            if hasattr(cv2, "undistortPointsIter"):
                xy = cv2.undistortPointsIter(pix, cam.K, cam.D, None, None, criteria)
            else:
                xy = cv2.undistortPoints(pix, cam.K, cam.D, criteria=criteria)
        planes = np.ascontiguousarray(xy.reshape(cam.height, cam.width, 2).transpose(2, 0, 1), np.float32)
        return planes.transpose(1, 2, 0)

    def backproject(self, depth_m: np.ndarray, rays: np.ndarray | None = None) -> np.ndarray:
        """Organised cloud HxWx3 float32 (metres, camera optical frame) from HxW depth in metres.

        NaN depth gives NaN points (REP 117). Pass precomputed :meth:`normalized_rays` to skip
        recomputing them every frame.
        """
        import cv2

        self.check_image(depth_m, "depth")
        r = self.normalized_rays() if rays is None else rays
        z = np.ascontiguousarray(depth_m, dtype=np.float32)
        # planes multiplied, then interleaved by cv2: ~3x faster than numpy's strided writes
        return cv2.merge([r[..., 0] * z, r[..., 1] * z, z])

    def project(self, points: np.ndarray) -> np.ndarray:
        """Nx3 points (camera frame, metres) → Nx2 pixel coordinates in the rectified image (P).

        Points with z <= 0 give NaN.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        cam = self.effective()
        uvw = pts @ cam.P[:, :3].T + cam.P[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = uvw[:, :2] / uvw[:, 2:3]
        uv[pts[:, 2] <= 0] = np.nan
        return uv
