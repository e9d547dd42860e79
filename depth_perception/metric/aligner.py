"""The aligner: one camera stream's relative or metric prediction → metric depth, every stage in turn.

:class:`MetricAligner` holds a :class:`MetricConfig` and the stream's temporal filter. Per frame,
``align()`` takes an HxW float prediction (relative inverse or relative depth, or metres from a metric network),
the camera model and the frame's signal, and runs: signal → sparse samples (signals.py) → fit
(fits.py, plane.py) → temporal filter (temporal.py) → metric depth → validity (validity.py). It returns
a :class:`MetricResult`: HxW float32 metres (NaN where invalid), the HxW bool valid mask, the fit,
the filter estimate, a confidence in [0, 1], a one-line message and a diagnostic level
(:data:`OK`, :data:`WARN`, :data:`ERROR`). A bad *signal* never raises (the last good scale is kept
and the message says why); a bad *prediction* raises ValueError (:func:`check_prediction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..camera import CameraModel
from ..params import check_fields, param
from ..stereo import StereoParams
from .fits import ScaleFit, _refused, apply_scale, fit_affine, fit_scale
from .motion import MotionParams, MotionSignal
from .plane import fit_plane
from .signals import (
    DepthImageSignal,
    PlaneSignal,
    PointCloudSignal,
    StereoSignal,
    _as_transform,
    sparse_from_depth_image,
    sparse_from_pointcloud,
    sparse_from_stereo,
    resample_sparse,
)
from .temporal import ScaleEstimate, TemporalScaleFilter
from .validity import apply_validity

MODES = ("auto", "sparse_depth", "pointcloud", "stereo", "plane", "model", "motion", "fixed")

#: What each mode needs, and the parameter or topic that gives it: the message of a frame without it.
MISSING_SIGNAL = {
    "sparse_depth": "no registered depth image on `sparse_depth` for this frame (metric.mode "
                    "sparse_depth): publish one, or choose another metric.mode",
    "pointcloud": "no LiDAR cloud on `lidar_points` for this frame (metric.mode pointcloud): publish "
                  "one, or choose another metric.mode",
    "stereo": "no right image for this frame (metric.mode stereo needs stereo: true and "
              "right/image + right/camera_info)",
    "plane": "plane mode needs the camera height above the support plane: set metric.camera_height "
             "(metres, > 0)",
    "model": "metric.mode model needs a metric network, but the model predicts relative "
             "depth: choose a metric model, or metric.mode auto with a signal",
    "motion": "no odometry pose for this frame (metric.mode motion needs poses on `odometry` "
              "and the camera extrinsic metric.motion.T_base_camera; see metric.motion.*)",
    "auto": "no metric signal (metric.mode auto): no registered depth on `sparse_depth`, no LiDAR "
            "cloud on `lidar_points`, no right camera (stereo: true), no metric network, no "
            "metric.camera_height and no pose on `odometry` (metric.motion.*); give one of them",
}
#: What a depth network predicts: affine-invariant inverse depth (near = large: Depth Anything,
#: MiDaS), affine-invariant depth (far = large: Marigold) or metres.
PREDICTION_KINDS = ("relative_inverse", "relative_depth", "metric")


def prediction_space(prediction_kind: str) -> str:
    """The space a prediction of ``prediction_kind`` is fitted in: ``inverse_depth`` for
    ``relative_inverse``, ``depth`` for ``relative_depth`` and ``metric``."""
    if prediction_kind not in PREDICTION_KINDS:
        raise ValueError(f"prediction_kind must be one of {PREDICTION_KINDS}, got {prediction_kind!r}")
    return "inverse_depth" if prediction_kind == "relative_inverse" else "depth"

#: diagnostic_msgs/DiagnosticStatus levels, so a driver can publish ``MetricResult.level`` as is.
OK, WARN, ERROR = 0, 1, 2

_NAN = float("nan")


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
    reported for unverified scales (fixed, or a metric model without a signal). ``motion``: the
    :class:`~depth_perception.metric.motion.MotionParams` of ``motion`` mode.
    """

    mode: str = param("auto", "how relative depth becomes metric: " + ", ".join(MODES) + "; auto "
                      "uses per frame the first signal present among sparse_depth, pointcloud "
                      "(lidar_points), stereo (a right camera), a metric network's own scale, "
                      "plane (metric.camera_height > 0) and motion (odometry)", choices=MODES,
                      read_only=True)
    min_depth_m: float = 0.1
    max_depth_m: float = 20.0
    flying_threshold: float = 0.1
    min_confidence: float = 0.0
    inlier_threshold: float = 0.1
    adaptive_threshold: bool = True
    min_inliers: int = param(20, "fewest inliers for an accepted fit", minimum=2,
                             maximum=1_000_000, step=1)
    min_inlier_ratio: float = 0.3
    max_residual: float = param(0.15, "largest accepted fit residual (> 0)", minimum=0.0,
                                maximum=10.0)
    ransac_iterations: int = 256
    max_points: int = 5000
    seed: int = 0
    temporal: bool = param(True, "filter the scale over time")
    process_noise: float = 0.003
    measurement_noise: float = 0.02
    jump_threshold: float = 0.1
    reset_frames: int = 3
    stale_after: int = param(30, "frames without a signal before the scale is reported stale",
                             minimum=1, maximum=100_000, step=1)
    camera_height_m: float = param(0.0, "camera height above the support plane for plane mode, "
                                   "metres (0 = unset)", name="camera_height", minimum=0.0,
                                   maximum=100.0)
    plane_normal: tuple[float, ...] | None = None
    plane_max_angle_deg: float = 20.0
    plane_threshold: float = 0.02
    fixed_scale: float = param(1.0, "fixed mode: scale (> 0)", minimum=-1e6, maximum=1e6)
    fixed_shift: float = param(0.0, "fixed mode: shift", minimum=-1e6, maximum=1e6)
    T_camera_from_cloud: tuple[float, ...] = param(
        _identity16(), "pointcloud mode: 16 values, row-major 4x4 from the LiDAR frame to the "
        "camera optical frame (TF is not used)")
    depth_scale_m: float = 0.001
    stereo: StereoParams | None = None
    prior_confidence: float = 0.5
    #: motion mode: keyframes, tracking and triangulation (``metric.motion.*``).
    motion: MotionParams = MotionParams()

    def __post_init__(self) -> None:
        check_fields(self, "metric")
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
        """Metric depth for one frame. ``prediction`` HxW float of ``prediction_kind``
        (one of :data:`PREDICTION_KINDS`),
        ``camera`` the model of the image the prediction was made from (scaled to the prediction grid
        here when sizes differ), ``confidence`` an optional HxW map for the validity mask. Raises
        ValueError only for a bad prediction or prediction_kind."""
        c = self.config
        pred = check_prediction(prediction)
        space = prediction_space(prediction_kind)
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

        mode = self.frame_mode(prediction_kind, signal)
        if isinstance(signal, MotionSignal):
            if mode == "motion" and signal.depth_m is not None and signal.status:
                notes.append(f"motion: {signal.status}")  # without depth, the miss names it
            elif mode != "motion" and c.mode == "auto":  # a metric network or the plane came first
                signal = None
        fit: ScaleFit | None = None
        if mode == "fixed":
            fit = ScaleFit(c.fixed_scale, c.fixed_shift, space, 1.0, 0.0, 0, True, "fixed", source="fixed")
            estimate = ScaleEstimate(scale=c.fixed_scale, shift=c.fixed_shift, space=space, inlier_ratio=1.0,
                                     residual=0.0, source="fixed", confidence=c.prior_confidence,
                                     reason="fixed scale from the configuration")
        else:
            try:
                fit = self._fit(mode, pred, prediction_kind, cam, cam_image, signal)
            except (ValueError, np.linalg.LinAlgError) as exc:
                fit = _refused(space, f"bad signal: {exc}", source=mode)
            except cv2.error as exc:  # OpenCV rejecting an odd image must not stop the stream either
                fit = _refused(space, f"bad signal (OpenCV): {exc}", source=mode)
            estimate = self.filter.miss(self._missing(mode, prediction_kind, signal)) if fit is None \
                else self.filter.update(fit)

        source = estimate.source
        if estimate.has_scale and estimate.space == space:
            depth = apply_scale(pred, estimate.scale, estimate.shift, estimate.space)
        elif prediction_kind == "metric" and mode == "model":
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

    def frame_mode(self, prediction_kind: str, signal) -> str:
        """The mode this frame is aligned in: the configured one, or for ``auto`` the kind of the
        signal present (a typed signal, a metric network's own scale, the configured camera height,
        then a :class:`MotionSignal`), ``"auto"`` when there is none."""
        c = self.config
        if c.mode != "auto":
            return c.mode
        if isinstance(signal, DepthImageSignal):
            return "sparse_depth"
        if isinstance(signal, PointCloudSignal):
            return "pointcloud"
        if isinstance(signal, StereoSignal):
            return "stereo"
        if isinstance(signal, PlaneSignal) or (
                isinstance(signal, (int, float)) and not isinstance(signal, bool)):
            return "plane"
        if isinstance(signal, np.ndarray):  # bare arrays: Nx3 points, else a depth image
            return "pointcloud" if signal.ndim == 2 and signal.shape[1] == 3 else "sparse_depth"
        if prediction_kind == "metric":
            return "model"
        if c.camera_height_m > 0:
            return "plane"
        if isinstance(signal, MotionSignal):  # the robot's own motion comes last
            return "motion"
        return "auto"

    @staticmethod
    def _missing(mode: str, prediction_kind: str, signal=None) -> str:
        """Why a frame in ``mode`` has no fit, naming the parameter or topic that would give one."""
        if mode == "model" and prediction_kind == "metric":
            return "no signal to check the metric network against this frame"
        if mode == "motion" and isinstance(signal, MotionSignal):
            return f"no motion sample this frame ({signal.status or 'no reason given'})"
        return MISSING_SIGNAL.get(mode, f"no {mode} signal this frame")

    def _fit(self, mode: str, pred: np.ndarray, kind: str, cam: CameraModel | None,
             cam_image: CameraModel | None, signal) -> ScaleFit | None:
        """This frame's fit in ``mode``, or None when there is no signal at all. ``cam`` is the
        camera scaled to the prediction grid, ``cam_image`` the one of the full image (for stereo)."""
        c = self.config
        kw = self._fit_kwargs()
        if mode == "auto":  # no signal it knows: a wrong type is a bad signal, not a missing one
            if signal is None:
                return None
            raise ValueError(f"unsupported signal type {type(signal).__name__} for auto mode")
        if mode == "plane":
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
            if not height > 0:
                return None
            return fit_plane(pred, kind, cam, height, normal, plane_threshold=c.plane_threshold,
                             max_angle_deg=c.plane_max_angle_deg, iterations=c.ransac_iterations, **kw)
        if signal is None or (isinstance(signal, MotionSignal) and signal.depth_m is None):
            return None
        samples, source = self._samples(mode, signal, pred.shape, cam, cam_image)
        if kind == "metric":
            return fit_scale(pred, samples, source=source, **kw)
        # relative predictions: an unknown scale and shift in their own space
        return fit_affine(pred, samples, space=prediction_space(kind), iterations=c.ransac_iterations,
                          source=source, **kw)

    def _samples(self, mode: str, signal, shape: tuple[int, int], cam: CameraModel | None,
                 cam_image: CameraModel | None) -> tuple[np.ndarray, str]:
        """(HxW float32 metric samples on the prediction grid, source name) for a signal."""
        c = self.config
        if isinstance(signal, np.ndarray):
            if mode == "pointcloud":
                signal = PointCloudSignal(signal)
            elif mode in ("sparse_depth", "model"):
                signal = DepthImageSignal(signal, c.depth_scale_m)
            else:
                wanted = "StereoSignal" if mode == "stereo" else "typed signal"
                raise ValueError(f"{mode} mode takes a {wanted}, not a bare array")
        if isinstance(signal, DepthImageSignal):
            return sparse_from_depth_image(signal.depth, shape, signal.depth_scale_m), "sparse_depth"
        if isinstance(signal, MotionSignal):
            depth = np.asarray(signal.depth_m, dtype=np.float32)
            if depth.ndim != 2:
                raise ValueError(f"motion depth must be HxW, got shape {depth.shape}")
            return resample_sparse(depth, shape), "motion"
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
        raise ValueError(f"unsupported signal type {type(signal).__name__} for {mode} mode")

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
