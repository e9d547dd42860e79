"""Relative → metric depth: metric signals, robust scale fits, a temporal scale filter, validity.

Relative networks (Depth Anything, MiDaS/DPT) predict affine-invariant *inverse* depth: the truth is
``1/z = scale * pred + shift`` for an unknown (scale, shift) per image. Metric networks predict depth in
metres that is often off by a scale on new scenes. Every frame is anchored to whatever metric signal
the robot has, in this order of stages:

1. **signal** → sparse metric samples on the prediction grid (HxW float32 metres, NaN = no sample):
   :func:`sparse_from_depth_image` (registered RGB-D depth), :func:`sparse_from_pointcloud` (LiDAR
   points + extrinsics, projected with the camera model), :func:`sparse_from_stereo` (SGBM);
   the ``plane`` mode instead derives the samples from the support plane and the known camera height.
2. **fit** → :class:`ScaleFit`: :func:`fit_inverse_affine` (relative: RANSAC on pairs + Huber IRLS in
   inverse depth), :func:`fit_scale` (metric: scale only), :func:`fit_plane` (known camera height),
   gated by minimum inliers, minimum inlier ratio and maximum residual.
3. **over time** → :class:`TemporalScaleFilter` (1-D Kalman on log-scale, jump detection and reset,
   staleness) → :class:`ScaleEstimate`.
4. **validity** → :func:`apply_validity`: NaN (REP 117/118) for non-finite, non-positive, out-of-range,
   flying pixels at discontinuities and low-confidence pixels. Holes are never filled.

:class:`MetricAligner` runs all four for one camera stream; ``align()`` never raises on bad *signals*
(it keeps the last good scale and says why in ``MetricResult.message``), only on a bad *prediction*.
Residuals are relative depth errors throughout (0.05 = 5 %), so thresholds do not depend on range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .camera import CameraModel
from .stereo import StereoParams

MODES = ("sparse_depth", "pointcloud", "stereo", "plane", "model", "fixed")
PREDICTION_KINDS = ("relative_inverse", "metric")
#: "inverse_depth": 1/z = scale * pred + shift (shift in 1/m); "depth": z = scale * pred + shift (m).
SPACES = ("inverse_depth", "depth")

#: diagnostic_msgs/DiagnosticStatus levels, so a driver can publish ``MetricResult.level`` as is.
OK, WARN, ERROR = 0, 1, 2

_NAN = float("nan")


# ------------------------------------------------------------------------------------------------
# Signals
# ------------------------------------------------------------------------------------------------


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
    from .stereo import stereo_depth

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


# ------------------------------------------------------------------------------------------------
# Fits
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleFit:
    """One frame's fit of the prediction to metric samples.

    space "inverse_depth": 1/z = scale * pred + shift; "depth": z = scale * pred + shift.
    inlier_ratio: inliers / n_points; residual: RMS relative depth error of the inliers (0.05 = 5 %);
    n_points: usable samples; ok: passed the gates (else ``reason`` says which failed; scale/shift
    may still hold the rejected values, or NaN when nothing could be computed).
    ref_pred: prediction values (10/50/90 % quantiles of the inliers) at which two fits are compared.
    threshold: the relative inlier threshold finally used (adaptive, see :func:`fit_inverse_affine`).
    """

    scale: float
    shift: float
    space: str
    inlier_ratio: float
    residual: float
    n_points: int
    ok: bool
    reason: str
    n_inliers: int = 0
    source: str = ""
    ref_pred: tuple[float, ...] = ()
    threshold: float = _NAN

    def apply(self, prediction: np.ndarray) -> np.ndarray:
        """Metric depth HxW float32 from the prediction; NaN where the map is non-positive."""
        return apply_scale(prediction, self.scale, self.shift, self.space)


def apply_scale(prediction: np.ndarray, scale: float, shift: float, space: str) -> np.ndarray:
    """Depth float32 (metres, NaN where the mapped value is non-positive or non-finite) from a
    prediction and a (scale, shift) in ``space`` (see :data:`SPACES`)."""
    p = np.asarray(prediction, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = np.float32(scale) * p + np.float32(shift)
        if space == "inverse_depth":
            out = np.where(v > 0, np.float32(1.0) / v, np.float32(np.nan))
        elif space == "depth":
            out = np.where(v > 0, v, np.float32(np.nan))
        else:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    out = out.astype(np.float32, copy=False)
    out[~np.isfinite(out)] = np.nan
    return out


def _refused(space: str, reason: str, n: int = 0, source: str = "", **values) -> ScaleFit:
    base: dict[str, Any] = dict(scale=_NAN, shift=_NAN, inlier_ratio=0.0, residual=_NAN, n_inliers=0,
                                ref_pred=())
    base.update(values)
    return ScaleFit(space=space, n_points=n, ok=False, reason=reason, source=source, **base)


def _pairs(prediction: np.ndarray, depth_m: np.ndarray, max_points: int, seed: int,
           positive_pred: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(pred, depth) float64 vectors of the usable samples, at most ``max_points`` of them (a seeded
    random subset: RANSAC cost grows with the count, accuracy barely), and the usable count."""
    x = np.asarray(prediction, dtype=np.float64).reshape(-1)
    z = np.asarray(depth_m, dtype=np.float64).reshape(-1)
    if x.shape != z.shape:
        raise ValueError(f"prediction ({np.shape(prediction)}) and samples ({np.shape(depth_m)}) differ in shape")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(z) & (z > 0)
        if positive_pred:
            ok &= x > 0
    idx = np.flatnonzero(ok)
    n = idx.size
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_points, replace=False))
    return x[idx], z[idx], n


def _constant_depth_reason(z: np.ndarray) -> str | None:
    if z.size >= 2 and np.ptp(z) == 0:
        return (f"all {z.size} sample depths equal {z[0]:.4g} m: a sensor fault or a placeholder value, "
                "not a measurement")
    return None


def _gate(fit: dict[str, Any], n: int, n_in: int, min_inliers: int, min_inlier_ratio: float,
          max_residual: float) -> tuple[bool, str]:
    ratio = n_in / max(n, 1)
    if not (np.isfinite(fit["scale"]) and fit["scale"] > 0):
        return False, f"fitted scale {fit['scale']:.4g} is not positive (prediction and samples disagree)"
    if n_in < min_inliers:
        return False, f"{n_in} inliers of {n} samples, need at least {min_inliers}"
    if ratio < min_inlier_ratio:
        return False, f"inlier ratio {ratio:.2f} below {min_inlier_ratio:.2f} ({n_in} of {n} samples)"
    if not fit["residual"] <= max_residual:
        return False, f"inlier residual {fit['residual']:.3f} above {max_residual:.3f}"
    return True, "ok"


def _huber_weights(r: np.ndarray, inl: np.ndarray) -> np.ndarray:
    """Huber weights with the tuning constant 1.345 sigma, sigma from the MAD of the inliers."""
    sigma = 1.4826 * float(np.median(np.abs(r[inl]))) if inl.any() else 0.0
    k = max(1.345 * sigma, 1e-6)
    return np.where(inl, np.minimum(1.0, k / np.maximum(np.abs(r), 1e-12)), 0.0)


def _adapted_threshold(r: np.ndarray, inl: np.ndarray, base: float) -> float:
    """3x the RMS residual of the current inliers, within [0.5, 2.5] x base. Iterated, this settles
    near 2.9 sigma of Gaussian inlier noise (the truncated RMS underestimates sigma; the fixed point
    absorbs that)."""
    return float(np.clip(3.0 * np.sqrt(np.mean(r[inl] ** 2)), 0.5 * base, 2.5 * base))


def fit_inverse_affine(prediction: np.ndarray, depth_m: np.ndarray, *, inlier_threshold: float = 0.1,
                       adaptive: bool = True, min_inliers: int = 20, min_inlier_ratio: float = 0.3,
                       max_residual: float = 0.15, min_spread: float = 0.02, max_explained: float = 0.8,
                       iterations: int = 256, max_points: int = 5000, seed: int = 0,
                       source: str = "") -> ScaleFit:
    """Fit 1/z ≈ scale * pred + shift (a relative network's affine-invariant inverse depth).

    ``prediction`` and ``depth_m`` have the same shape (HxW grids with NaN where there is no sample,
    or N vectors). The residual of a sample is relative, r = (scale*pred + shift) * z - 1 (≈ the
    relative depth error), so minimising it is linear in (scale, shift). RANSAC on random pairs
    (MSAC cost truncated at ``inlier_threshold``) finds the consensus, then Huber IRLS on the inliers
    refines it. With ``adaptive`` the inlier threshold then follows the inliers' own spread (3x their
    RMS residual, within 0.5-2.5x ``inlier_threshold``): tight for a sharp network, so mild outliers
    go, and loose for a blurry one, so its true samples are not discarded as outliers.

    Refused (``ok`` False, ``reason`` set) with fewer than ``min_inliers`` inliers, an inlier ratio
    below ``min_inlier_ratio``, an inlier RMS residual above ``max_residual``, a non-positive scale,
    samples whose inverse depths span less than ``min_spread`` (then the shift is not observable),
    or an inlier residual above ``max_explained`` times that of the best constant depth (the
    prediction does not explain the samples: a signal unrelated to the image).
    """
    space = "inverse_depth"
    x, z, n = _pairs(prediction, depth_m, max_points, seed)
    if n < max(min_inliers, 2):
        return _refused(space, f"{n} usable samples, need at least {max(min_inliers, 2)}", n, source)
    why = _constant_depth_reason(z)
    if why:
        return _refused(space, why, n, source)
    y = 1.0 / z
    q10, q50, q90 = np.quantile(y, [0.1, 0.5, 0.9])
    if (q90 - q10) < min_spread * q50:
        return _refused(space, f"sample inverse depths span only {100 * (q90 - q10) / q50:.1f} % "
                               f"(need {100 * min_spread:.0f} %): scale and shift are not separable", n, source)
    x_span = float(np.ptp(x))
    if not x_span > 0:
        return _refused(space, "the prediction is constant at the sample pixels", n, source)

    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, x.size, size=(2, iterations))
    dx = x[i] - x[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (y[i] - y[j]) / dx
    t = y[i] - s * x[i]
    good = (np.abs(dx) > 1e-9 * x_span) & np.isfinite(s) & (s > 0)
    if not good.any():
        return _refused(space, "no sample pair gives a positive scale (prediction anti-correlated "
                               "with inverse depth?)", n, source)
    s, t = s[good], t[good]
    r = (s[:, None] * x[None, :] + t[:, None]) * z[None, :] - 1.0
    cost = np.minimum(r * r, inlier_threshold**2).sum(axis=1)
    best = int(np.argmin(cost))
    scale, shift = float(s[best]), float(t[best])

    A = np.column_stack([x * z, z])
    thr = inlier_threshold
    for _ in range(30):
        r = A @ [scale, shift] - 1.0
        inl = np.abs(r) < thr
        if inl.sum() < 2:
            break
        new_thr = _adapted_threshold(r, inl, inlier_threshold) if adaptive else thr
        sw = np.sqrt(_huber_weights(r, inl))
        sol, *_ = np.linalg.lstsq(A * sw[:, None], sw, rcond=None)
        done = (abs(sol[0] - scale) <= 1e-7 * abs(scale) and abs(sol[1] - shift) <= 1e-7 * abs(scale) * x_span
                and abs(new_thr - thr) <= 1e-4 * thr)
        scale, shift, thr = float(sol[0]), float(sol[1]), new_thr
        if done:
            break
    r = A @ [scale, shift] - 1.0
    inl = np.abs(r) < thr
    n_in = int(inl.sum())
    # scale the inlier count back to all usable samples when a subset was fitted
    n_in_all = int(round(n_in * n / x.size))
    res = float(np.sqrt(np.mean(r[inl] ** 2))) if n_in else _NAN
    values: dict[str, Any] = dict(scale=scale, shift=shift, residual=res, n_inliers=n_in_all,
                                  inlier_ratio=n_in / x.size, threshold=thr,
                  ref_pred=tuple(np.quantile(x[inl], [0.1, 0.5, 0.9]).tolist()) if n_in else ())
    ok, reason = _gate(values, x.size, n_in, min(min_inliers, x.size), min_inlier_ratio, max_residual)
    if ok:
        # A signal unrelated to the image (wrong topic, garbage) still finds a near-constant map with
        # many "inliers": demand that the prediction explain the depths clearly better than the best
        # constant depth on the same inliers.
        zi = z[inl]
        const = float(np.sqrt(np.mean((zi * (zi.sum() / (zi * zi).sum()) - 1.0) ** 2)))
        if not res <= max_explained * const:
            ok, reason = False, (f"the prediction hardly explains the sample depths: residual {res:.3f} vs "
                                 f"{const:.3f} for a constant depth (signal unrelated to the image?)")
    return ScaleFit(space=space, n_points=n, ok=ok, reason=reason, source=source, **values)


def fit_scale(prediction: np.ndarray, depth_m: np.ndarray, *, inlier_threshold: float = 0.1,
              adaptive: bool = True, min_inliers: int = 20, min_inlier_ratio: float = 0.3,
              max_residual: float = 0.15,
              iterations: int = 128, max_points: int = 5000, seed: int = 0, source: str = "",
              space: str = "depth") -> ScaleFit:
    """Fit z ≈ scale * pred (a metric network, or any prediction proportional to depth).

    Works on log ratios log(z / pred), where a scale is a constant: one-sample MSAC picks the
    consensus, Huber IRLS refines its mean (``adaptive`` threshold as there). Same gates as
    :func:`fit_inverse_affine` except spread and explanation: a flat wall is fine for a scale.
    Predictions <= 0 are not usable samples.
    ``space="inverse_depth"`` fits 1/z ≈ scale * pred instead (zero shift), for relative predictions
    whose shift is known to be 0.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    x, z, n = _pairs(prediction, depth_m, max_points, seed, positive_pred=True)
    if n < max(min_inliers, 1):
        return _refused(space, f"{n} usable samples (positive prediction and depth), need at least "
                               f"{max(min_inliers, 1)}", n, source)
    why = _constant_depth_reason(z)
    if why:
        return _refused(space, why, n, source)
    # depth: z = k*x → log k = log z - log x; inverse: 1/z = k*x → log k = -log z - log x
    lk = (np.log(z) if space == "depth" else -np.log(z)) - np.log(x)
    thr = math.log1p(inlier_threshold)
    rng = np.random.default_rng(seed)
    cand = lk if lk.size <= iterations else lk[rng.choice(lk.size, size=iterations, replace=False)]
    cost = np.minimum((cand[:, None] - lk[None, :]) ** 2, thr**2).sum(axis=1)
    m = float(cand[int(np.argmin(cost))])
    thr0 = thr
    for _ in range(30):
        r = lk - m
        inl = np.abs(r) < thr
        if not inl.any():
            break
        new_thr = _adapted_threshold(r, inl, thr0) if adaptive else thr
        w = _huber_weights(r, inl)
        m_new = float(np.sum(w * lk) / np.sum(w))
        done = abs(m_new - m) < 1e-9 and abs(new_thr - thr) <= 1e-4 * thr
        m, thr = m_new, new_thr
        if done:
            break
    r = lk - m
    inl = np.abs(r) < thr
    n_in = int(inl.sum())
    rel = np.expm1(np.abs(r[inl]))  # relative depth error of the inliers
    res = float(np.sqrt(np.mean(rel**2))) if n_in else _NAN
    values: dict[str, Any] = dict(scale=math.exp(m), shift=0.0, residual=res,
                                  n_inliers=int(round(n_in * n / x.size)), inlier_ratio=n_in / x.size,
                                  threshold=math.expm1(thr),
                  ref_pred=tuple(np.quantile(x[inl], [0.1, 0.5, 0.9]).tolist()) if n_in else ())
    ok, reason = _gate(values, x.size, n_in, min(min_inliers, x.size), min_inlier_ratio, max_residual)
    return ScaleFit(space=space, n_points=n, ok=ok, reason=reason, source=source, **values)


def plane_normal_from_tilt(pitch_rad: float, roll_rad: float = 0.0) -> np.ndarray:
    """Unit normal (3,) of a horizontal support plane in the camera optical frame (REP 103), pointing
    up (towards the camera), for a camera pitched down by ``pitch_rad`` below the horizon and rolled
    by ``roll_rad`` about its optical axis: (-sin r cos p, -cos r cos p, -sin p)."""
    p, r = float(pitch_rad), float(roll_rad)
    return np.array([-math.sin(r) * math.cos(p), -math.cos(r) * math.cos(p), -math.sin(p)])


def fit_plane(prediction: np.ndarray, prediction_kind: str, camera: CameraModel, camera_height_m: float,
              normal_camera=None, *, plane_threshold: float = 0.02, max_angle_deg: float = 20.0,
              inlier_threshold: float = 0.1, adaptive: bool = True, min_inliers: int = 20,
              min_inlier_ratio: float = 0.3, max_residual: float = 0.15, iterations: int = 256,
              max_points: int = 5000, seed: int = 0, source: str = "plane") -> ScaleFit:
    """Scale from a known camera height above the support plane (a table, the floor).

    The prediction is back-projected into a *relative* cloud (depth = pred for "metric", 1/pred for
    "relative_inverse"; an affine inverse depth keeps planes planar, so the support plane is found
    whatever the network's shift). RANSAC finds the dominant plane (within ``max_angle_deg`` of
    ``normal_camera`` when that is given; inlier distance relative to depth < ``plane_threshold``).
    A plane pixel with ray direction ρ (z = 1) then has metric depth z = h / -(n·ρ), which makes the
    plane pixels metric samples. With a known normal (the tilt, e.g. from an IMU) a relative
    prediction gets the full affine fit; without one the normal comes from the relative cloud,
    which is right only when the network's shift is zero, so the fit is scale-only (shift 0).
    """
    space = "inverse_depth" if prediction_kind == "relative_inverse" else "depth"
    if not (np.isfinite(camera_height_m) and camera_height_m > 0):
        return _refused(space, f"plane mode needs a camera height > 0 m, got {camera_height_m!r}", 0, source)
    prior = None
    if normal_camera is not None:
        prior = np.asarray(normal_camera, dtype=np.float64).reshape(-1)
        if prior.size != 3 or not np.isfinite(prior).all() or np.linalg.norm(prior) == 0:
            return _refused(space, f"plane normal must be 3 finite values, got {normal_camera!r}", 0, source)
        prior = prior / np.linalg.norm(prior)
    pred = np.asarray(prediction, dtype=np.float32)
    cam = camera.effective()
    if (cam.width, cam.height) != (pred.shape[1], pred.shape[0]):
        cam = cam.scaled(pred.shape[1], pred.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = pred if space == "depth" else np.float32(1.0) / pred
        rel = np.where(np.isfinite(rel) & (rel > 0), rel, np.float32(np.nan)).astype(np.float32)
    rays = cam.normalized_rays()
    cloud = cam.backproject(rel, rays).reshape(-1, 3).astype(np.float64)
    idx = np.flatnonzero(np.isfinite(cloud).all(axis=1))
    n = idx.size
    if n < max(min_inliers, 3):
        return _refused(space, f"{n} valid prediction pixels, need at least {max(min_inliers, 3)}", n, source)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_points, replace=False))
    P = cloud[idx]
    rng = np.random.default_rng(seed + 1)
    tri = rng.integers(0, len(P), size=(3, iterations))
    nrm = np.cross(P[tri[1]] - P[tri[0]], P[tri[2]] - P[tri[0]])
    length = np.linalg.norm(nrm, axis=1)
    good = length > 0
    nrm = nrm[good] / length[good, None]
    d = -np.einsum("ij,ij->i", nrm, P[tri[0][good]])
    nrm[d < 0] *= -1  # orient every normal towards the camera (the origin is on its positive side)
    d = np.abs(d)
    if prior is not None:
        good = nrm @ prior >= math.cos(math.radians(max_angle_deg))
        nrm, d = nrm[good], d[good]
    if len(nrm) == 0:
        return _refused(space, f"no plane within {max_angle_deg:g} deg of the given normal", n, source)
    dist = (nrm @ P.T + d[:, None]) / P[:, 2][None, :]
    cost = np.minimum(dist**2, plane_threshold**2).sum(axis=1)
    best = int(np.argmin(cost))
    normal, off = nrm[best], d[best]
    for _ in range(3):  # least-squares plane through the inliers (smallest principal axis)
        inl = np.abs((P @ normal + off) / P[:, 2]) < plane_threshold
        if inl.sum() < 3:
            break
        c = P[inl].mean(axis=0)
        normal = np.linalg.svd(P[inl] - c, full_matrices=False)[2][2]
        off = -float(normal @ c)
        if off < 0:
            normal, off = -normal, -off
    inl = np.abs((P @ normal + off) / P[:, 2]) < plane_threshold
    if prior is not None and normal @ prior < math.cos(math.radians(max_angle_deg)):
        return _refused(space, f"refined plane is {math.degrees(math.acos(np.clip(normal @ prior, -1, 1))):.0f} "
                               f"deg from the given normal", n, source)
    n_plane = int(inl.sum())
    if n_plane < max(min_inliers, 3):
        return _refused(space, f"support plane has {n_plane} pixels, need at least {max(min_inliers, 3)}",
                        n, source)
    use = prior if prior is not None else normal
    rho = P[inl] / P[inl, 2:3]  # ray directions with z = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        z_plane = camera_height_m / -(rho @ use)
    x_plane = pred.reshape(-1)[idx[inl]].astype(np.float64)
    kw: dict[str, Any] = dict(inlier_threshold=inlier_threshold, adaptive=adaptive, min_inliers=min_inliers,
                              min_inlier_ratio=min_inlier_ratio, max_residual=max_residual,
                              max_points=max_points, seed=seed, source=source)
    if space == "inverse_depth" and prior is not None:
        fit = fit_inverse_affine(x_plane, z_plane, iterations=iterations, **kw)
    else:
        fit = fit_scale(x_plane, z_plane, space=space, **kw)
    # the plane share of the image is the more telling inlier ratio for diagnostics
    return ScaleFit(scale=fit.scale, shift=fit.shift, space=fit.space,
                    inlier_ratio=fit.inlier_ratio * n_plane / len(P), residual=fit.residual, n_points=n,
                    ok=fit.ok, reason=fit.reason if not fit.ok else f"plane covers {n_plane / len(P):.0%}",
                    n_inliers=fit.n_inliers, source=source, ref_pred=fit.ref_pred, threshold=fit.threshold)


# ------------------------------------------------------------------------------------------------
# Over time
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleEstimate:
    """The filtered scale a frame was converted with; every field is a diagnostic.

    scale/shift/space: as in :class:`ScaleFit` (NaN before the first accepted fit).
    age: frames since the last accepted measurement (0 = this frame); stale: age >= stale_after.
    source: what produced the scale ("sparse_depth", "pointcloud", "stereo", "plane", "model",
    "fixed", "none"); confidence in [0, 1]; reason: what the filter did with this frame.
    """

    scale: float = _NAN
    shift: float = _NAN
    space: str = ""
    inlier_ratio: float = 0.0
    residual: float = _NAN
    age: int = 0
    stale: bool = False
    source: str = "none"
    confidence: float = 0.0
    n_updates: int = 0
    n_rejected: int = 0
    reason: str = "no measurement yet"

    @property
    def has_scale(self) -> bool:
        return bool(np.isfinite(self.scale) and self.scale > 0 and self.space in SPACES)


def _shift_units(fit: ScaleFit) -> float:
    """The shift the filter carries: in prediction units (shift / scale) for inverse depth, where
    1/z = scale * (pred + u), so that smoothing the scale does not drag the shift; metres otherwise."""
    return fit.shift / fit.scale if fit.space == "inverse_depth" else fit.shift


class TemporalScaleFilter:
    """1-D Kalman filter on log(scale), with the shift carried along in prediction units (u =
    shift / scale, updated with the same gain) for inverse-depth fits.

    A measurement whose depth map differs from the estimate by more than ``jump_threshold``
    (relative, at the fit's reference prediction values) is rejected as an outlier; when
    ``reset_frames`` consecutive measurements agree with each other but not with the estimate, the
    scene (or the network's normalisation) really changed, and the filter resets to them. A refused
    fit or a frame without a signal leaves the estimate as is and ages it; after ``stale_after``
    frames without an accepted measurement the estimate is stale. ``smoothing=False`` takes every
    accepted measurement as is (no gating), but still holds it when fits are refused.
    One instance per camera stream; not thread-safe.
    """

    def __init__(self, process_noise: float = 0.003, measurement_noise: float = 0.02,
                 jump_threshold: float = 0.1, reset_frames: int = 3, stale_after: int = 30,
                 max_residual: float = 0.15, smoothing: bool = True) -> None:
        if not (process_noise >= 0 and measurement_noise > 0 and jump_threshold > 0):
            raise ValueError("need process_noise >= 0, measurement_noise > 0 and jump_threshold > 0, got "
                             f"{process_noise!r}, {measurement_noise!r}, {jump_threshold!r}")
        if reset_frames < 1 or stale_after < 1:
            raise ValueError(f"reset_frames and stale_after must be >= 1, got {reset_frames}, {stale_after}")
        self.q = float(process_noise) ** 2
        self.r = float(measurement_noise) ** 2
        self.jump_threshold = float(jump_threshold)
        self.reset_frames = int(reset_frames)
        self.stale_after = int(stale_after)
        self.max_residual = float(max_residual)
        self.smoothing = bool(smoothing)
        self.reset()

    def reset(self) -> None:
        """Forget everything (e.g. when the camera or the network changes)."""
        self._log_s = _NAN
        self._u = 0.0
        self._var = _NAN
        self._space = ""
        self._source = "none"
        self._inlier_ratio = 0.0
        self._residual = _NAN
        self._age = 0
        self._n_updates = 0
        self._n_rejected = 0
        self._pending: list[ScaleFit] = []
        self._reason = "no measurement yet"

    # -- state ------------------------------------------------------------------------------------

    @property
    def has_scale(self) -> bool:
        return bool(np.isfinite(self._log_s))

    @property
    def estimate(self) -> ScaleEstimate:
        if not self.has_scale:
            return ScaleEstimate(age=self._age, n_rejected=self._n_rejected, reason=self._reason)
        scale = math.exp(self._log_s)
        shift = scale * self._u if self._space == "inverse_depth" else self._u
        stale = self._age >= self.stale_after
        quality = self._inlier_ratio * (1.0 - 0.5 * min(1.0, (self._residual or 0.0) / self.max_residual)) \
            if np.isfinite(self._residual) else self._inlier_ratio
        freshness = max(0.0, 1.0 - self._age / self.stale_after)
        return ScaleEstimate(scale=scale, shift=shift, space=self._space, inlier_ratio=self._inlier_ratio,
                             residual=self._residual, age=self._age, stale=stale, source=self._source,
                             confidence=float(np.clip(quality * freshness, 0.0, 1.0)),
                             n_updates=self._n_updates, n_rejected=self._n_rejected, reason=self._reason)

    # -- updates ----------------------------------------------------------------------------------

    def miss(self, reason: str) -> ScaleEstimate:
        """A frame without a usable measurement: keep the estimate, age it."""
        self._age += 1
        if self.has_scale:
            self._var += self.q
        self._reason = reason
        return self.estimate

    def update(self, fit: ScaleFit) -> ScaleEstimate:
        """Feed one frame's fit (a refused fit counts as a miss, with its reason)."""
        if not fit.ok:
            return self.miss(f"fit refused: {fit.reason}")
        u = _shift_units(fit)
        if not self.has_scale or fit.space != self._space or not self.smoothing:
            why = ("initialised" if not self.has_scale else
                   "re-initialised (prediction kind changed)" if fit.space != self._space else "set")
            self._set(fit, math.log(fit.scale), u, self.r, f"{why} from {fit.source or 'fit'}")
            return self.estimate
        self._var += self.q
        jump = self._discrepancy(self._log_s, self._u, fit)
        if jump > self.jump_threshold:
            self._pending = (self._pending + [fit])[-self.reset_frames:]
            self._n_rejected += 1
            self._age += 1
            recent = self._pending
            last = recent[-1]
            agree = all(self._discrepancy(math.log(f.scale), _shift_units(f), last) <= self.jump_threshold
                        for f in recent)
            if len(recent) >= self.reset_frames and agree:
                log_s = float(np.mean([math.log(f.scale) for f in recent]))
                u_mean = float(np.mean([_shift_units(f) for f in recent]))
                self._set(last, log_s, u_mean, self.r / len(recent),
                          f"reset: depth map moved {100 * jump:.0f} % for {len(recent)} frames")
            else:
                self._reason = (f"measurement rejected: depth map {100 * jump:.0f} % from the estimate "
                                f"(> {100 * self.jump_threshold:.0f} %; {len(recent)}/{self.reset_frames} "
                                "before a reset)")
            return self.estimate
        self._pending.clear()
        gain = self._var / (self._var + self.r)
        self._log_s += gain * (math.log(fit.scale) - self._log_s)
        self._u += gain * (u - self._u)
        self._var *= 1.0 - gain
        self._inlier_ratio, self._residual = fit.inlier_ratio, fit.residual
        self._source = fit.source or self._source
        self._age = 0
        self._n_updates += 1
        self._reason = f"updated from {fit.source or 'fit'} (gain {gain:.2f})"
        return self.estimate

    def _set(self, fit: ScaleFit, log_s: float, u: float, var: float, reason: str) -> None:
        self._log_s, self._u, self._var, self._space = log_s, u, var, fit.space
        self._inlier_ratio, self._residual = fit.inlier_ratio, fit.residual
        self._source = fit.source or "fit"
        self._age = 0
        self._n_updates += 1
        self._pending.clear()
        self._reason = reason

    def _discrepancy(self, log_s: float, u: float, fit: ScaleFit) -> float:
        """Largest |log| ratio between the depths that the state and the fit give at the fit's
        reference prediction values (parametrisation-free: scale and shift trade off)."""
        if fit.space != "inverse_depth" or not fit.ref_pred:
            return abs(math.log(fit.scale) - log_s)
        p = np.asarray(fit.ref_pred, dtype=np.float64)
        a = np.exp(log_s) * (p + u)  # state's inverse depth
        b = fit.scale * p + fit.shift
        if not ((a > 0).all() and (b > 0).all()):
            return math.inf
        return float(np.max(np.abs(np.log(a / b))))


# ------------------------------------------------------------------------------------------------
# Validity
# ------------------------------------------------------------------------------------------------


def flying_pixel_mask(depth_m: np.ndarray, threshold: float, radius: int = 1) -> np.ndarray:
    """HxW bool, True at pixels on a depth discontinuity: the depth range (max - min) over the
    (2*radius+1)^2 neighbourhood exceeds ``threshold`` times the pixel's depth. Both sides of an
    edge are flagged, which removes the interpolated "flying" points that smear between an object
    and its background. NaN neighbours are ignored."""
    z = np.asarray(depth_m, dtype=np.float32)
    finite = np.isfinite(z)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    hi = cv2.dilate(np.where(finite, z, np.float32(-np.inf)), kernel, borderType=cv2.BORDER_REPLICATE)
    lo = cv2.erode(np.where(finite, z, np.float32(np.inf)), kernel, borderType=cv2.BORDER_REPLICATE)
    with np.errstate(invalid="ignore", over="ignore"):
        return finite & ((hi - lo) > np.float32(threshold) * z)


def validity_mask(depth_m: np.ndarray, min_depth_m: float = 0.0, max_depth_m: float = float("inf"),
                  flying_threshold: float | None = None, confidence: np.ndarray | None = None,
                  min_confidence: float | None = None, flying_radius: int = 1) -> np.ndarray:
    """HxW bool of trustworthy depth: finite, > 0, inside [min_depth_m, max_depth_m], not on a
    discontinuity (:func:`flying_pixel_mask`, when ``flying_threshold`` is set) and, when a HxW
    ``confidence`` map and ``min_confidence`` are given, at least that confident."""
    z = np.asarray(depth_m)
    if z.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {z.shape}")
    if not (0.0 <= min_depth_m < max_depth_m):
        raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {min_depth_m} and {max_depth_m}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > 0) & (z >= min_depth_m) & (z <= max_depth_m)
    if flying_threshold:
        if not flying_threshold > 0:
            raise ValueError(f"flying_threshold must be > 0, got {flying_threshold!r}")
        valid &= ~flying_pixel_mask(np.where(valid, z, np.nan), flying_threshold, flying_radius)
    if confidence is not None and min_confidence is not None:
        c = np.asarray(confidence)
        if c.shape != z.shape:
            raise ValueError(f"confidence map {c.shape} does not match depth {z.shape}")
        with np.errstate(invalid="ignore"):
            valid &= c >= min_confidence
    return valid


def apply_validity(depth_m: np.ndarray, min_depth_m: float = 0.0, max_depth_m: float = float("inf"),
                   flying_threshold: float | None = None, confidence: np.ndarray | None = None,
                   min_confidence: float | None = None, flying_radius: int = 1) -> np.ndarray:
    """Set invalid pixels of float ``depth_m`` (HxW, metres) to NaN *in place* (see
    :func:`validity_mask`) and return the HxW bool valid mask. Nothing is filled in."""
    valid = validity_mask(depth_m, min_depth_m, max_depth_m, flying_threshold, confidence,
                          min_confidence, flying_radius)
    depth_m[~valid] = np.nan
    return valid


# ------------------------------------------------------------------------------------------------
# The aligner
# ------------------------------------------------------------------------------------------------


def _identity16() -> tuple[float, ...]:
    return tuple(np.eye(4).reshape(-1).tolist())


@dataclass(frozen=True)
class MetricConfig:
    """Settings of :class:`MetricAligner`; flat fields so that ROS parameters map 1:1.

    mode: one of :data:`MODES`. Depth range and validity: ``min_depth_m``, ``max_depth_m``,
    ``flying_threshold`` (relative depth range over a 3x3 window; 0 disables), ``min_confidence``
    (applies when a confidence map is passed). Fit gates: ``inlier_threshold`` (relative; RANSAC's,
    and the centre of the adaptive range with ``adaptive_threshold``),
    ``min_inliers``, ``min_inlier_ratio``, ``max_residual``; RANSAC: ``ransac_iterations``,
    ``max_points``, ``seed``. Temporal filter: ``temporal``, ``process_noise`` and
    ``measurement_noise`` (std of log-scale per frame), ``jump_threshold``, ``reset_frames``,
    ``stale_after`` (frames). Plane: ``camera_height_m`` (0 = unset), ``plane_normal`` (unit normal
    in the optical frame towards the camera; None or empty = unknown), ``plane_max_angle_deg``,
    ``plane_threshold``. Fixed: ``fixed_scale``, ``fixed_shift`` (in the prediction's space).
    ``T_camera_from_cloud``: 16 values, row-major 4x4, for bare Nx3 point arrays.
    ``depth_scale_m``: metres per unit of integer depth images. ``prior_confidence``: confidence
    reported for unverified scales (fixed, or a metric model without a signal).
    """

    mode: str = "sparse_depth"
    min_depth_m: float = 0.1
    max_depth_m: float = 20.0
    flying_threshold: float = 0.1
    min_confidence: float = 0.0
    inlier_threshold: float = 0.1
    adaptive_threshold: bool = True
    min_inliers: int = 20
    min_inlier_ratio: float = 0.3
    max_residual: float = 0.15
    ransac_iterations: int = 256
    max_points: int = 5000
    seed: int = 0
    temporal: bool = True
    process_noise: float = 0.003
    measurement_noise: float = 0.02
    jump_threshold: float = 0.1
    reset_frames: int = 3
    stale_after: int = 30
    camera_height_m: float = 0.0
    plane_normal: tuple[float, ...] | None = None
    plane_max_angle_deg: float = 20.0
    plane_threshold: float = 0.02
    fixed_scale: float = 1.0
    fixed_shift: float = 0.0
    T_camera_from_cloud: tuple[float, ...] = field(default_factory=_identity16)
    depth_scale_m: float = 0.001
    stereo: StereoParams | None = None
    prior_confidence: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"metric mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not (0.0 <= self.min_depth_m < self.max_depth_m):
            raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m} and {self.max_depth_m}")
        for name in ("inlier_threshold", "max_residual", "measurement_noise", "jump_threshold",
                     "plane_threshold", "depth_scale_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not (0.0 <= self.min_inlier_ratio <= 1.0 and 0.0 <= self.prior_confidence <= 1.0):
            raise ValueError("min_inlier_ratio and prior_confidence must lie in [0, 1]")
        if self.min_inliers < 2 or self.ransac_iterations < 1 or self.max_points < 2:
            raise ValueError("need min_inliers >= 2, ransac_iterations >= 1 and max_points >= 2")
        if self.flying_threshold < 0:
            raise ValueError(f"flying_threshold must be >= 0 (0 disables), got {self.flying_threshold}")
        if self.mode == "fixed" and not (np.isfinite(self.fixed_scale) and self.fixed_scale > 0):
            raise ValueError(f"fixed mode needs fixed_scale > 0, got {self.fixed_scale!r}")
        normal = self.plane_normal
        if normal is not None and len(normal) == 0:
            normal = None
        if normal is not None:
            v = np.asarray(normal, dtype=np.float64).reshape(-1)
            if v.size != 3 or not np.isfinite(v).all() or np.linalg.norm(v) == 0:
                raise ValueError(f"plane_normal must be 3 finite values, not all zero; got {normal!r}")
            normal = tuple((v / np.linalg.norm(v)).tolist())
        object.__setattr__(self, "plane_normal", normal)
        object.__setattr__(self, "T_camera_from_cloud",
                           tuple(_as_transform(self.T_camera_from_cloud).reshape(-1).tolist()))


@dataclass(frozen=True)
class MetricResult:
    """One frame's metric depth and how it was obtained.

    depth_m: HxW float32 metres on the prediction grid, NaN where invalid (all NaN without a scale).
    valid: HxW bool. fit: this frame's fit (None when none was attempted). estimate: the filter state
    the depth was made with. source: what produced the scale ("none" without one). confidence in
    [0, 1]. message: one human-readable line (why a fit was refused, that the scale is held/stale).
    level: diagnostic_msgs/DiagnosticStatus level (OK / WARN: held, stale or unverified / ERROR: no scale).
    """

    depth_m: np.ndarray
    valid: np.ndarray
    fit: ScaleFit | None
    estimate: ScaleEstimate
    source: str
    confidence: float
    message: str
    mode: str = ""
    level: int = OK

    def diagnostics(self) -> dict[str, str]:
        """Key/value strings for a diagnostic_msgs/DiagnosticStatus."""
        e = self.estimate
        values = {
            "mode": self.mode, "source": self.source, "scale": f"{e.scale:.6g}", "shift": f"{e.shift:.6g}",
            "space": e.space, "inlier_ratio": f"{e.inlier_ratio:.3f}", "residual": f"{e.residual:.4f}",
            "age_frames": str(e.age), "stale": str(e.stale).lower(), "confidence": f"{self.confidence:.3f}",
            "valid_fraction": f"{float(self.valid.mean()) if self.valid.size else 0.0:.3f}",
            "fit_ok": "" if self.fit is None else str(self.fit.ok).lower(),
            "fit_reason": "" if self.fit is None else self.fit.reason,
            "fit_points": "" if self.fit is None else str(self.fit.n_points),
            "message": self.message,
        }
        return values


def check_prediction(prediction) -> np.ndarray:
    """The prediction as HxW float32; ValueError for anything else (a bad prediction is a bug
    upstream, unlike a bad signal)."""
    if not isinstance(prediction, np.ndarray):
        raise ValueError(f"prediction must be a numpy array, got {type(prediction).__name__}")
    p = prediction[:, :, 0] if prediction.ndim == 3 and prediction.shape[2] == 1 else prediction
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"prediction must be HxW (or HxWx1), got shape {prediction.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"prediction must be a float array (float16/32/64), got {p.dtype}")
    return p.astype(np.float32, copy=False)


class MetricAligner:
    """Relative or metric prediction → metric depth for one camera stream (keeps the scale state).

    ``align(prediction, prediction_kind, camera, signal)`` with ``signal`` one of:
    :class:`DepthImageSignal`, :class:`PointCloudSignal`, :class:`StereoSignal`, :class:`PlaneSignal`
    (or a float camera height) in plane mode, None (no signal this frame), or a bare numpy array:
    a depth image in ``sparse_depth``/``model`` mode, Nx3 points (with the config's extrinsics) in
    ``pointcloud`` mode. A typed signal is used whatever the mode (the result names it as source).
    Not thread-safe: call it from one worker.
    """

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config or MetricConfig()
        c = self.config
        self.filter = TemporalScaleFilter(process_noise=c.process_noise, measurement_noise=c.measurement_noise,
                                          jump_threshold=c.jump_threshold, reset_frames=c.reset_frames,
                                          stale_after=c.stale_after, max_residual=c.max_residual,
                                          smoothing=c.temporal)

    def reset(self) -> None:
        self.filter.reset()

    # -- one frame -------------------------------------------------------------------------------

    def align(self, prediction: np.ndarray, prediction_kind: str = "relative_inverse",
              camera: CameraModel | None = None, signal=None,
              confidence: np.ndarray | None = None) -> MetricResult:
        """Metric depth for one frame. ``prediction`` HxW float (relative inverse depth or metres),
        ``camera`` the model of the image the prediction was made from (scaled to the prediction grid
        here when sizes differ), ``confidence`` an optional HxW map for the validity mask. Raises
        ValueError only for a bad prediction or prediction_kind."""
        c = self.config
        pred = check_prediction(prediction)
        if prediction_kind not in PREDICTION_KINDS:
            raise ValueError(f"prediction_kind must be one of {PREDICTION_KINDS}, got {prediction_kind!r}")
        h, w = pred.shape
        notes: list[str] = []
        cam = cam_image = None
        if camera is not None:
            cam = cam_image = camera.effective()
            if (cam.width, cam.height) != (w, h):
                if abs(cam.width / cam.height - w / h) > 0.01 * (w / h):
                    notes.append(f"camera {cam.width}x{cam.height} and prediction {w}x{h} differ in "
                                 "aspect ratio (crop?): scaled anyway")
                cam = cam.scaled(w, h)

        space = "inverse_depth" if prediction_kind == "relative_inverse" else "depth"
        fit: ScaleFit | None = None
        if c.mode == "fixed":
            fit = ScaleFit(c.fixed_scale, c.fixed_shift, space, 1.0, 0.0, 0, True, "fixed", source="fixed")
            estimate = ScaleEstimate(scale=c.fixed_scale, shift=c.fixed_shift, space=space, inlier_ratio=1.0,
                                     residual=0.0, source="fixed", confidence=c.prior_confidence,
                                     reason="fixed scale from the configuration")
        else:
            try:
                fit = self._fit(pred, prediction_kind, cam, cam_image, signal)
            except (ValueError, np.linalg.LinAlgError) as exc:
                fit = _refused(space, f"bad signal: {exc}", source=c.mode)
            except cv2.error as exc:  # OpenCV rejecting an odd image must not stop the stream either
                fit = _refused(space, f"bad signal (OpenCV): {exc}", source=c.mode)
            estimate = self.filter.miss(f"no {c.mode} signal this frame") if fit is None \
                else self.filter.update(fit)

        source = estimate.source
        if estimate.has_scale and estimate.space == space:
            depth = apply_scale(pred, estimate.scale, estimate.shift, estimate.space)
        elif prediction_kind == "metric" and c.mode == "model":
            # a metric network with no correction yet is published as is, flagged as unverified
            depth = pred.copy()
            source = "model"
            estimate = ScaleEstimate(scale=1.0, shift=0.0, space="depth", inlier_ratio=1.0, residual=_NAN,
                                     age=estimate.age, source="model", confidence=c.prior_confidence,
                                     n_rejected=estimate.n_rejected,
                                     reason=f"metric network output taken as is ({estimate.reason})")
        else:
            depth = np.full(pred.shape, np.nan, dtype=np.float32)
            if estimate.has_scale:
                notes.append(f"the held scale is for {estimate.space}, but the prediction is {prediction_kind}")
            source = "none"
        conf = 0.0 if source == "none" else estimate.confidence

        valid = apply_validity(depth, c.min_depth_m, c.max_depth_m, c.flying_threshold or None,
                               confidence, c.min_confidence if confidence is not None else None)
        level, message = self._describe(fit, estimate, source, notes)
        return MetricResult(depth_m=depth, valid=valid, fit=fit, estimate=estimate, source=source,
                            confidence=float(conf), message=message, mode=c.mode, level=level)

    # -- internals ---------------------------------------------------------------------------------

    def _fit_kwargs(self) -> dict[str, Any]:
        c = self.config
        return dict(inlier_threshold=c.inlier_threshold, adaptive=c.adaptive_threshold, min_inliers=c.min_inliers,
                    min_inlier_ratio=c.min_inlier_ratio, max_residual=c.max_residual,
                    max_points=c.max_points, seed=c.seed)

    def _fit(self, pred: np.ndarray, kind: str, cam: CameraModel | None, cam_image: CameraModel | None,
             signal) -> ScaleFit | None:
        """This frame's fit, or None when there is no signal at all. ``cam`` is the camera scaled to
        the prediction grid, ``cam_image`` the one of the full image (for stereo)."""
        c = self.config
        kw = self._fit_kwargs()
        if c.mode == "plane":
            height, normal = c.camera_height_m, c.plane_normal
            if isinstance(signal, PlaneSignal):
                height = signal.camera_height_m
                normal = signal.normal_camera if signal.normal_camera is not None else normal
            elif isinstance(signal, (int, float)) and not isinstance(signal, bool):
                height = float(signal)
            elif signal is not None:
                raise ValueError(f"plane mode takes a PlaneSignal or a camera height, got {type(signal).__name__}")
            if cam is None:
                raise ValueError("plane mode needs the camera model")
            return fit_plane(pred, kind, cam, height, normal, plane_threshold=c.plane_threshold,
                             max_angle_deg=c.plane_max_angle_deg, iterations=c.ransac_iterations, **kw)
        if signal is None:
            return None
        samples, source = self._samples(signal, pred.shape, cam, cam_image)
        if kind == "relative_inverse":
            return fit_inverse_affine(pred, samples, iterations=c.ransac_iterations, source=source, **kw)
        return fit_scale(pred, samples, source=source, **kw)

    def _samples(self, signal, shape: tuple[int, int], cam: CameraModel | None,
                 cam_image: CameraModel | None) -> tuple[np.ndarray, str]:
        """(HxW float32 metric samples on the prediction grid, source name) for a signal."""
        c = self.config
        if isinstance(signal, np.ndarray):
            if c.mode == "pointcloud":
                signal = PointCloudSignal(signal)
            elif c.mode in ("sparse_depth", "model"):
                signal = DepthImageSignal(signal, c.depth_scale_m)
            else:
                wanted = "StereoSignal" if c.mode == "stereo" else "typed signal"
                raise ValueError(f"{c.mode} mode takes a {wanted}, not a bare array")
        if isinstance(signal, DepthImageSignal):
            return sparse_from_depth_image(signal.depth, shape, signal.depth_scale_m), "sparse_depth"
        if isinstance(signal, PointCloudSignal):
            if cam is None:
                raise ValueError("a point cloud signal needs the camera model")
            T = c.T_camera_from_cloud if signal.T_camera_from_cloud is None else signal.T_camera_from_cloud
            samples = sparse_from_pointcloud(signal.points, T, cam, shape, min_depth_m=c.min_depth_m)
            if not np.isfinite(samples).any():
                n = len(signal.points) if hasattr(signal.points, "__len__") else 0
                raise ValueError(f"none of the {n} cloud points lands in the image in front of the camera "
                                 "(extrinsics T_camera_from_cloud wrong, or the cloud in another frame?)")
            return samples, "pointcloud"
        if isinstance(signal, StereoSignal):
            if cam_image is None:
                raise ValueError("a stereo signal needs the camera model")
            if not isinstance(signal.left, np.ndarray) or signal.left.ndim < 2:
                raise ValueError("stereo left image must be an HxW or HxWx3 array")
            lh, lw = signal.left.shape[:2]
            left_cam = cam_image.scaled(lw, lh)
            baseline, doffs = signal.baseline_m, signal.doffs_px
            if signal.right_camera is not None:
                right = signal.right_camera.effective().scaled(lw, lh)
                baseline = right.baseline_m if baseline is None else baseline
                doffs = float(right.P[0, 2] - left_cam.P[0, 2])  # Middlebury-style principal point offset
            if baseline is None or not (np.isfinite(baseline) and baseline > 0):
                raise ValueError(f"stereo needs a baseline > 0 (baseline_m or right_camera.P), got {baseline!r}")
            samples = sparse_from_stereo(signal.left, signal.right, left_cam, float(baseline), shape,
                                         params=c.stereo, doffs_px=doffs, min_depth_m=c.min_depth_m,
                                         max_depth_m=c.max_depth_m)
            return samples, "stereo"
        raise ValueError(f"unsupported signal type {type(signal).__name__} for {c.mode} mode")

    def _describe(self, fit: ScaleFit | None, e: ScaleEstimate, source: str,
                  notes: list[str]) -> tuple[int, str]:
        parts: list[str] = []
        if source == "none":
            level = ERROR
            why = fit.reason if fit is not None and not fit.ok else e.reason
            parts.append(f"no metric scale yet ({why}): depth is all NaN")
        elif source == "fixed":
            level = OK
            parts.append(e.reason)
        elif source == "model" and e.n_updates == 0:
            level = WARN
            parts.append(e.reason)
        elif fit is not None and fit.ok and e.age == 0:
            level = OK
            parts.append(f"{source}: scale {e.scale:.5g}, shift {e.shift:.4g}, {fit.n_inliers}/{fit.n_points} "
                         f"inliers, residual {100 * fit.residual:.1f} %; {e.reason}")
        else:
            level = WARN
            held = f"keeping scale {e.scale:.5g} from {e.source}, {e.age} frame{'s' if e.age != 1 else ''} old"
            if e.stale:
                held += " (STALE)"
            parts.append(f"{e.reason}; {held}")
        parts.extend(notes)
        return level, "; ".join(parts)
