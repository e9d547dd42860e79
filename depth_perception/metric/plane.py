"""Stage 2, plane: a metric scale from the known camera height above the support plane.

For a robot that sees its table or the floor and knows how high its camera is (from TF), but has no
depth sensor: :func:`fit_plane` finds the dominant plane in the *relative* cloud back-projected from
the HxW prediction, turns the plane pixels into metric samples with the camera height in metres
(a pixel with ray direction ρ, z = 1, lies at depth z = h / -(n·ρ)), and fits them with
:func:`~depth_perception.metric.fits.fit_inverse_affine` or
:func:`~depth_perception.metric.fits.fit_scale`. :func:`plane_normal_from_tilt` gives the plane's
unit normal (3,) in the camera optical frame from the camera's pitch and roll in radians (e.g. an IMU).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..camera import CameraModel
from ..grid import fit_plane_ransac
from .fits import ScaleFit, _refused, fit_affine, fit_scale


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

    The prediction is back-projected into a *relative* cloud (depth = pred for "metric" and
    "relative_depth", 1/pred for "relative_inverse"; an affine inverse depth keeps planes planar, so
    the support plane is found whatever the network's shift; an affine depth only when its shift is
    small). RANSAC finds the dominant plane (within ``max_angle_deg`` of ``normal_camera`` when that
    is given; inlier distance relative to depth < ``plane_threshold``).
    A plane pixel with ray direction ρ (z = 1) then has metric depth z = h / -(n·ρ), which makes the
    plane pixels metric samples. With a known normal (the tilt, e.g. from an IMU) a relative
    prediction gets the full affine fit; without one the normal comes from the relative cloud,
    which is right only when the network's shift is zero, so the fit is scale-only (shift 0).
    """
    space = "inverse_depth" if prediction_kind == "relative_inverse" else "depth"
    if not (np.isfinite(camera_height_m) and camera_height_m > 0):
        return _refused(space, f"plane mode needs a camera height > 0 m, got {camera_height_m!r}", 0, source)
    prior = None if normal_camera is None else _unit_vector(normal_camera)
    if normal_camera is not None and prior is None:
        return _refused(space, f"plane normal must be 3 finite values, got {normal_camera!r}", 0, source)
    pred = np.asarray(prediction, dtype=np.float32)
    cloud = _relative_cloud(pred, space, camera)
    idx = np.flatnonzero(np.isfinite(cloud).all(axis=1))
    n = idx.size
    if n < max(min_inliers, 3):
        return _refused(space, f"{n} valid prediction pixels, need at least {max(min_inliers, 3)}", n, source)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_points, replace=False))
    P = cloud[idx]
    plane = fit_plane_ransac(P, np.random.default_rng(seed + 1), iterations=iterations,
                             threshold_rel=plane_threshold, prior=prior,
                             max_angle_deg=max_angle_deg, refine=3)
    if plane is None:
        return _refused(space, f"no plane within {max_angle_deg:g} deg of the given normal", n, source)
    normal, off = plane[:3], float(plane[3])
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
    if prediction_kind != "metric" and prior is not None:
        fit = fit_affine(x_plane, z_plane, space=space, iterations=iterations, **kw)
    else:
        fit = fit_scale(x_plane, z_plane, space=space, **kw)
    # the plane share of the image is the more telling inlier ratio for diagnostics
    return ScaleFit(scale=fit.scale, shift=fit.shift, space=fit.space,
                    inlier_ratio=fit.inlier_ratio * n_plane / len(P), residual=fit.residual, n_points=n,
                    ok=fit.ok, reason=fit.reason if not fit.ok else f"plane covers {n_plane / len(P):.0%}",
                    n_inliers=fit.n_inliers, source=source, ref_pred=fit.ref_pred, threshold=fit.threshold)


def _unit_vector(normal_camera) -> np.ndarray | None:
    """``normal_camera`` as a unit (3,) float64 vector, or None unless it is 3 finite values, not all 0."""
    prior = np.asarray(normal_camera, dtype=np.float64).reshape(-1)
    if prior.size != 3 or not np.isfinite(prior).all() or np.linalg.norm(prior) == 0:
        return None
    return prior / np.linalg.norm(prior)


def _relative_cloud(pred: np.ndarray, space: str, camera: CameraModel) -> np.ndarray:
    """(H*W)x3 float64 cloud of the HxW prediction in relative units (depth = pred, or 1/pred for
    inverse depth), back-projected with ``camera`` scaled to the prediction grid; NaN rows where the
    relative depth is not finite and positive."""
    cam = camera.effective()
    if (cam.width, cam.height) != (pred.shape[1], pred.shape[0]):
        cam = cam.scaled(pred.shape[1], pred.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = pred if space == "depth" else np.float32(1.0) / pred
        rel = np.where(np.isfinite(rel) & (rel > 0), rel, np.float32(np.nan)).astype(np.float32)
    rays = cam.normalized_rays()
    return cam.backproject(rel, rays).reshape(-1, 3).astype(np.float64)
