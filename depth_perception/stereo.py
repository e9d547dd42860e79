"""Classical stereo depth (OpenCV semi-global block matching) for a rectified pair, plus the
Middlebury 2014 Motorcycle pair that scikit-image ships, as a ground-truth benchmark.

Disparity d is in pixels of the left image (x_left - x_right). With doffs the difference of the two
principal points' x (Middlebury; 0 for ROS rectified pairs), depth is Z = fx * B / (d + doffs).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .params import check_fields, param

MODES = {"sgbm": cv2.STEREO_SGBM_MODE_SGBM, "hh": cv2.STEREO_SGBM_MODE_HH,
         "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY, "hh4": cv2.STEREO_SGBM_MODE_HH4}


@dataclass(frozen=True)
class StereoParams:
    """cv2.StereoSGBM settings. num_disparities must be a positive multiple of 16, block_size odd.

    p1, p2: smoothness penalties; None derives the usual 8 * channels * block_size**2 and 32 * ...
    speckle_range is in disparity pixels (OpenCV multiplies it by 16 internally).
    mode: one of "sgbm", "hh" (full 8-path, slow), "sgbm_3way", "hh4".
    scale: the pair is matched at this fraction of its size (area-averaged), with num_disparities
    and min_disparity scaled alike (num_disparities rounded up to a multiple of 16) and the same
    block_size, penalties and speckle settings; the disparity comes back in full-size pixels.
    """

    num_disparities: int = param(128, "SGBM disparity search range, multiple of 16",
                                 minimum=16, maximum=1024, step=16)
    block_size: int = param(5, "SGBM block size, odd", minimum=1, maximum=31, step=2)
    min_disparity: int = 0
    uniqueness_ratio: int = 10
    speckle_window_size: int = 100
    speckle_range: int = 2
    disp12_max_diff: int = 1
    pre_filter_cap: int = 63
    mode: str = "sgbm_3way"
    p1: int | None = None
    p2: int | None = None
    scale: float = param(1.0, "match at this fraction of the image size: 0.5 runs SGBM on half-size "
                         "images (about 4x less matching time) and upsamples the disparity to full "
                         "size (bilinear on smooth surfaces, nearest at depth edges); 1.0 = full size",
                         minimum=0.25, maximum=1.0)

    def check(self) -> None:
        """Raise ValueError naming the first setting SGBM cannot use (checked when matching, so
        that a test or a caller can hold an unusable set)."""
        check_fields(self, "stereo")
        if self.num_disparities <= 0 or self.num_disparities % 16:
            raise ValueError(f"stereo num_disparities must be a positive multiple of 16, got "
                             f"{self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ValueError(f"stereo block_size must be odd and >= 1, got {self.block_size}")
        if self.mode not in MODES:
            raise ValueError(f"stereo mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if not (0.0 < self.scale <= 1.0):
            raise ValueError(f"stereo scale must be in (0, 1], got {self.scale!r}")

    def matched(self) -> StereoParams:
        """The settings SGBM runs with at ``scale``: disparity range and offset in the pixels of
        the scaled images (num_disparities rounded up to a multiple of 16)."""
        if self.scale == 1.0:
            return self
        return replace(self, num_disparities=int(16 * np.ceil(self.num_disparities * self.scale / 16)),
                       min_disparity=int(np.floor(self.min_disparity * self.scale)), scale=1.0)

    def penalties(self, channels: int) -> tuple[int, int]:
        """(P1, P2) for images with this many channels."""
        p1 = 8 * channels * self.block_size**2 if self.p1 is None else self.p1
        p2 = 32 * channels * self.block_size**2 if self.p2 is None else self.p2
        return p1, p2


@dataclass(frozen=True)
class StereoResult:
    """depth_m, disparity_px: HxW float32, NaN where invalid; valid: HxW bool."""

    depth_m: np.ndarray
    disparity_px: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class MiddleburyPair:
    """A rectified pair with ground truth. left, right: HxWx3 uint8 RGB; disparity_gt_px, depth_gt_m:
    HxW float32, NaN where unknown; K: 3x3 float64 of the left camera; Z = K[0,0] * B / (d + doffs)."""

    left: np.ndarray
    right: np.ndarray
    disparity_gt_px: np.ndarray
    depth_gt_m: np.ndarray
    K: np.ndarray
    baseline_m: float
    doffs_px: float = 0.0
    name: str = field(default="")


def num_disparities_for(fx: float, baseline_m: float, min_depth_m: float, doffs: float = 0.0) -> int:
    """Smallest multiple of 16 covering the disparity of the nearest expected surface:
    d_max = fx * B / z_min - doffs."""
    if not (fx > 0 and baseline_m > 0 and min_depth_m > 0):
        raise ValueError(f"fx, baseline_m and min_depth_m must be > 0, got {fx!r}, {baseline_m!r}, {min_depth_m!r}")
    d_max = fx * baseline_m / min_depth_m - doffs
    return int(max(16, 16 * np.ceil(d_max / 16)))


def baseline_from_projection(P_right) -> float:
    """Baseline in metres from the right camera's 3x4 projection matrix of a rectified pair
    (ROS CameraInfo.P: P[0,3] = -fx' * B), i.e. B = -P[0,3] / P[0,0]."""
    P = np.asarray(P_right, dtype=np.float64)
    if P.size == 12:
        P = P.reshape(3, 4)
    if P.shape != (3, 4) or not np.isfinite(P).all():
        raise ValueError(f"P_right must be a finite 3x4 projection matrix (or 12 values), got shape {P.shape}")
    if P[0, 0] <= 0:
        raise ValueError(f"P_right[0,0] (fx') must be > 0, got {P[0, 0]}")
    return float(-P[0, 3] / P[0, 0])


def _check_image(name: str, img) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
        raise ValueError(f"{name} must be HxW gray or HxWx3 RGB, got shape {img.shape}")
    return np.ascontiguousarray(img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img)


def stereo_depth(left, right, fx: float, baseline_m: float, params: StereoParams | None = None,
                 doffs: float = 0.0, min_depth_m: float = 0.0, max_depth_m: float = float("inf")) -> StereoResult:
    """Metric depth of the left image of a rectified pair with OpenCV SGBM.

    :param left, right: HxWx3 uint8 RGB or HxW uint8 gray, same shape.
    :param fx: focal length of the rectified left camera, pixels.
    :param baseline_m: distance between the two camera centres, metres (> 0).
    :param doffs: x difference of the principal points (cx_right - cx_left), pixels; 0 for ROS pairs.
    :param min_depth_m, max_depth_m: depths outside this range are marked invalid.
    :returns: StereoResult; invalid pixels (no match, speckles, left border without overlap,
        out of range) are NaN in both images and False in valid.
    """
    left, right = _check_image("left", left), _check_image("right", right)
    if left.shape != right.shape:
        raise ValueError(f"left and right must have the same shape, got {left.shape} and {right.shape}")
    if not (np.isfinite(fx) and fx > 0):
        raise ValueError(f"fx must be a positive focal length in pixels, got {fx!r}")
    if not (np.isfinite(baseline_m) and baseline_m > 0):
        raise ValueError(f"baseline_m must be > 0 metres, got {baseline_m!r}")
    if not (np.isfinite(doffs) and 0 <= min_depth_m < max_depth_m):
        raise ValueError(f"need finite doffs and 0 <= min_depth_m < max_depth_m, got {doffs!r}, "
                         f"{min_depth_m!r}, {max_depth_m!r}")
    p = StereoParams() if params is None else params
    p.check()
    # SGBM's left strip of min_disparity + num_disparities (at the matched size) has no full search
    # range; in full-size pixels:
    q = p.matched()
    strip = (q.min_disparity + q.num_disparities) / p.scale
    if left.shape[1] <= strip:
        raise ValueError(f"image width {left.shape[1]} must exceed min_disparity + num_disparities "
                         f"({p.min_disparity + p.num_disparities}"
                         + (f", {strip:g} at scale {p.scale:g})" if p.scale != 1.0 else ")"))

    matched, disparity = _match(left, right, p)
    # one boolean image edited in place and two in-place NaN fills: each full-image temporary
    # costs about as much as the arithmetic on it
    valid = matched
    # SGBM's left strip has no full search range; beyond it every disparity (< min_disparity +
    # num_disparities) lands inside the right image
    valid[:, :int(np.ceil(strip))] = False
    denom = disparity + doffs
    with np.errstate(divide="ignore", invalid="ignore"):
        valid &= denom > 0
        # float32 or float64 as the arguments' types make it (a Python float or a numpy float64
        # fx), rounded to float32
        depth = (fx * baseline_m / denom).astype(np.float32, copy=False)
        valid &= depth >= min_depth_m
        valid &= depth <= max_depth_m
    invalid = ~valid
    np.copyto(depth, np.float32(np.nan), where=invalid)
    np.copyto(disparity, np.float32(np.nan), where=invalid)
    return StereoResult(depth_m=depth, disparity_px=disparity, valid=valid)


def _match(left: np.ndarray, right: np.ndarray, p: StereoParams) -> tuple[np.ndarray, np.ndarray]:
    """(matched HxW bool, disparity HxW float32 in full-size pixels) of a checked pair, SGBM run at
    ``p.scale`` of the size.

    Below full size the pair is area-averaged, and the disparity is scaled back by 1 / scale and
    upsampled edge-aware: bilinear inside smooth surfaces, nearest (the block's own value) where
    the neighbouring blocks differ by more than a pixel or are unmatched, so no depth is
    interpolated across an object's edge (no flying pixels) and unmatched blocks stay unmatched."""
    h, w = left.shape[:2]
    q = p.matched()
    if p.scale != 1.0:
        size = (max(1, round(w * p.scale)), max(1, round(h * p.scale)))
        left = cv2.resize(left, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(right, size, interpolation=cv2.INTER_AREA)
    channels = 1 if left.ndim == 2 else 3
    p1, p2 = q.penalties(channels)
    matcher = cv2.StereoSGBM_create(
        minDisparity=q.min_disparity, numDisparities=q.num_disparities, blockSize=q.block_size,
        P1=p1, P2=p2, disp12MaxDiff=q.disp12_max_diff, preFilterCap=q.pre_filter_cap,
        uniquenessRatio=q.uniqueness_ratio, speckleWindowSize=q.speckle_window_size,
        speckleRange=q.speckle_range, mode=MODES[q.mode])
    # OpenCV only uses channel order for its colour cost, so RGB works as well as BGR
    raw = matcher.compute(left, right)  # int16, disparity * 16, (min_disparity - 1) * 16 = no match
    if p.scale == 1.0:
        disparity = raw.astype(np.float32)
        disparity *= np.float32(1.0 / 16.0)  # a power of two: exactly the division
        return raw > (q.min_disparity - 1) * 16, disparity
    small = raw.astype(np.float32) / np.float32(16.0)
    nearest = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    linear = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # edge-aware: bilinear where the blocks around a pixel agree within one (matched-size) pixel,
    # so surfaces stay smooth (a staircase of constant blocks would read as creases); nearest at
    # depth edges and next to unmatched blocks, which the bilinear value would blend across
    k = np.ones((3, 3), np.uint8)
    smooth = cv2.dilate(nearest, k) - cv2.erode(nearest, k) <= 1.0
    disparity = np.where(smooth, linear, nearest)
    disparity *= np.float32(1.0 / p.scale)
    return nearest > q.min_disparity - 1, disparity


def motorcycle_pair() -> MiddleburyPair:
    """The Middlebury 2014 Motorcycle pair shipped by scikit-image (741x500, 4x4 block means).

    Calibration: Middlebury's full-size calib.txt (cam0 f = 3979.911, cx = 1244.772, cy = 1019.507;
    doffs = 124.343 px; baseline 193.001 mm) scaled by 1/4. skimage's docstring lists the same values
    divided by 4 and rounded (f 994.978, doffs 31.086); here the principal point also gets the
    half-pixel shift of block averaging (block k covers full pixels 4k..4k+3, centre 4k+1.5), which
    moves it 0.375 px from the docstring's. Unknown ground truth (inf in the shipped map, NaN in its
    docstring) becomes NaN. Depths span about 2.1-5.0 m.
    """
    from skimage.data import stereo_motorcycle  # lazy: only benchmarks need scikit-image

    left, right, disp = stereo_motorcycle()
    disp = np.asarray(disp, dtype=np.float32)
    if disp.ndim == 3:  # documented as (500, 741, 3) in some versions, shipped as (500, 741)
        disp = disp[..., 0]
    known = np.isfinite(disp) & (disp > 0)
    disparity = np.where(known, disp, np.float32(np.nan))
    scale = 0.25
    f, doffs, baseline = 3979.911 * scale, 124.343 * scale, 0.193001
    cx, cy = ((np.array([1244.772, 1019.507]) + 0.5) * scale - 0.5).tolist()
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    depth = (f * baseline / (disparity + doffs)).astype(np.float32)
    return MiddleburyPair(left=np.ascontiguousarray(left), right=np.ascontiguousarray(right),
                          disparity_gt_px=disparity, depth_gt_m=depth, K=K, baseline_m=baseline,
                          doffs_px=doffs, name="middlebury2014/motorcycle")
