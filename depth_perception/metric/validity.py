"""Stage 4, validity: which pixels of a metric depth map (HxW float, metres) to trust.

Untrusted pixels become NaN (REP 117/118); holes are never filled. A pixel is invalid when it is
non-finite or <= 0, outside [min_depth_m, max_depth_m], a "flying pixel" on a depth discontinuity
(:func:`flying_pixel_mask`: the depth range over its neighbourhood, relative to its own depth, is
above a threshold), or below ``min_confidence`` in an optional HxW confidence map.
"""

from __future__ import annotations

import cv2
import numpy as np


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
