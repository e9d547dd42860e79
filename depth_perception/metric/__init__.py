"""Relative → metric depth: metric signals, robust scale fits, a temporal scale filter, validity.

Relative networks (Depth Anything, MiDaS/DPT) predict affine-invariant *inverse* depth: the truth is
``1/z = scale * pred + shift`` for an unknown (scale, shift) per image. Metric networks predict depth in
metres that is often off by a scale on new scenes. Every frame is anchored to whatever metric signal
the robot has, in this order of stages (one module each, to be read in this order):

1. ``signals.py``: **signal** → sparse metric samples on the prediction grid (HxW float32 metres,
   NaN = no sample): :func:`sparse_from_depth_image` (registered RGB-D depth),
   :func:`sparse_from_pointcloud` (LiDAR points + extrinsics, projected with the camera model),
   :func:`sparse_from_stereo` (SGBM); ``motion.py``: :class:`MotionTracker` triangulates tracked
   features between keyframes with the robot's odometry (:class:`PoseBuffer`) → a
   :class:`MotionSignal`; the ``plane`` mode instead derives the samples from the support plane and
   the known camera height.
2. ``fits.py``, ``plane.py``: **fit** → :class:`ScaleFit`: :func:`fit_inverse_affine` (relative:
   RANSAC on pairs + Huber IRLS in inverse depth; :func:`fit_depth_affine`, its twin in depth for
   affine-invariant depth such as Marigold's), :func:`fit_scale` (metric: scale only),
   :func:`fit_plane` (known camera height), gated by minimum inliers, minimum inlier ratio and
   maximum residual.
3. ``temporal.py``: **over time** → :class:`TemporalScaleFilter` (1-D Kalman on log-scale, jump
   detection and reset, staleness) → :class:`ScaleEstimate`.
4. ``validity.py``: **validity** → :func:`apply_validity`: NaN (REP 117/118) for non-finite,
   non-positive, out-of-range, flying pixels at discontinuities and low-confidence pixels. Holes are
   never filled.

``aligner.py``: :class:`MetricAligner` runs all four for one camera stream; ``align()`` never raises on
bad *signals* (it keeps the last good scale and says why in ``MetricResult.message``), only on a bad
*prediction*. Residuals are relative depth errors throughout (0.05 = 5 %), so thresholds do not
depend on range.
"""

from __future__ import annotations

from .aligner import (
    ERROR,
    MODES,
    OK,
    PREDICTION_KINDS,
    WARN,
    MetricAligner,
    MetricConfig,
    MetricResult,
    check_prediction,
)
from .fits import SPACES, ScaleFit, apply_scale, fit_affine, fit_depth_affine, fit_inverse_affine, fit_scale
from .motion import CrossCheck, MotionParams, MotionSample, MotionSignal, MotionTracker, PoseBuffer
from .plane import fit_plane, plane_normal_from_tilt
from .signals import (
    DepthImageSignal,
    PlaneSignal,
    PointCloudSignal,
    StereoSignal,
    depth_image_to_metres,
    project_points,
    resample_sparse,
    sparse_from_depth_image,
    sparse_from_pointcloud,
    sparse_from_stereo,
)
from .temporal import ScaleEstimate, TemporalScaleFilter
from .validity import apply_validity, flying_pixel_mask, validity_mask

__all__ = [
    "ERROR",
    "MODES",
    "OK",
    "PREDICTION_KINDS",
    "SPACES",
    "WARN",
    "CrossCheck",
    "DepthImageSignal",
    "MetricAligner",
    "MetricConfig",
    "MetricResult",
    "MotionParams",
    "MotionSample",
    "MotionSignal",
    "MotionTracker",
    "PlaneSignal",
    "PointCloudSignal",
    "PoseBuffer",
    "ScaleEstimate",
    "ScaleFit",
    "StereoSignal",
    "TemporalScaleFilter",
    "apply_scale",
    "apply_validity",
    "check_prediction",
    "depth_image_to_metres",
    "fit_affine",
    "fit_depth_affine",
    "fit_inverse_affine",
    "fit_plane",
    "fit_scale",
    "flying_pixel_mask",
    "plane_normal_from_tilt",
    "project_points",
    "resample_sparse",
    "sparse_from_depth_image",
    "sparse_from_pointcloud",
    "sparse_from_stereo",
    "validity_mask",
]
