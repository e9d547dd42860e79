"""Per-point arrays grouped by instance, their per-instance sums, and the (3, N) array helpers.

Points are kept instance-major (row-major inside each instance), so a per-instance sum, minimum or
maximum is one ``ufunc.reduceat`` for all instances, and a pixel's right-hand grid neighbour is the
next point. Coordinates are (3, N) float32: numpy is slow over a length-3 trailing axis, and cv2
converts to and from the (N, 3) layout of the outputs several times faster than numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InstanceSums:
    """Per-instance sums of the kept points: what region extraction measures boxes from."""

    mean: np.ndarray  # (3, k) float64
    gram: np.ndarray  # (k, 4, 4) float64 mean outer products of (q, |q|²), q = p - mean
    mean_normal: np.ndarray  # (3, k) mean camera-facing unit normal (0 where a point has none)
    heights: np.ndarray | None  # (k, 2) lowest / highest point above the support plane
    cols: np.ndarray  # (k, 2) leftmost / rightmost kept column (grid)


class Segments:
    """Instance j owns [start[j], start[j] + count[j]) of every per-point array."""

    def __init__(self, count: np.ndarray):
        self.count = np.asarray(count, dtype=np.int64)
        self.start = np.zeros_like(self.count)
        np.cumsum(self.count[:-1], out=self.start[1:])
        self.nonempty = self.count > 0
        self._at = self.start[self.nonempty]  # reduceat needs strictly increasing, in-range offsets

    def reduce(self, ufunc, values: np.ndarray, empty: float = 0, dtype=None) -> np.ndarray:
        """(..., N) → (..., n_instances); ``empty`` for instances without points."""
        dtype = np.dtype(dtype or values.dtype)
        out = np.full(values.shape[:-1] + (self.count.size,), empty, dtype=dtype)
        if self._at.size:
            out[..., self.nonempty] = ufunc.reduceat(values, self._at, axis=-1, dtype=dtype)
        return out

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-instance sums of (..., N) values, accumulated in float64."""
        return self.reduce(np.add, values, 0, np.float64)

    def count_true(self, mask: np.ndarray) -> np.ndarray:
        return self.reduce(np.add, mask.view(np.uint8), 0, np.int64)

    def repeat(self, per_instance: np.ndarray) -> np.ndarray:
        """(..., n_instances) → (..., N): each instance's value at each of its points."""
        return np.repeat(per_instance, self.count, axis=-1)

    def where(self, mask: np.ndarray) -> Segments:
        """The grouping of the points where ``mask`` holds (order kept)."""
        return Segments(self.count_true(mask))

    def slice(self, j: int) -> slice:
        return slice(int(self.start[j]), int(self.start[j] + self.count[j]))


def norm3(d: np.ndarray) -> np.ndarray:
    """Lengths of the columns of a (3, N) array."""
    return np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])


def cross_soa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products of the columns of two (3, N) arrays."""
    out = np.empty_like(a)
    np.multiply(a[1], b[2], out=out[0])
    out[0] -= a[2] * b[1]
    np.multiply(a[2], b[0], out=out[1])
    out[1] -= a[0] * b[2]
    np.multiply(a[0], b[1], out=out[2])
    out[2] -= a[1] * b[0]
    return out


def gather_points(pts: np.ndarray, pixel_index: np.ndarray) -> np.ndarray:
    """(3, N) float32 points of an HxWx3 cloud at flat pixel indices (one 12-byte gather each)."""
    import cv2

    records = np.ascontiguousarray(pts).reshape(-1).view(np.dtype((np.void, 12)))
    aos = records.take(pixel_index).view(np.float32).reshape(-1, 3)
    return cv2.transpose(aos) if aos.shape[0] else np.zeros((3, 0), np.float32)


def gather_rgb(rgb: np.ndarray, pixel_index: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours of an HxWx3 image at flat pixel indices."""
    records = np.ascontiguousarray(rgb).reshape(-1).view(np.dtype((np.void, 3)))
    return records.take(pixel_index).view(np.uint8).reshape(-1, 3)


def interleave(soa: np.ndarray) -> np.ndarray:
    """(3, N) → contiguous (N, 3)."""
    import cv2

    if soa.shape[1] == 0:
        return np.zeros((0, 3), soa.dtype)
    return cv2.merge([soa[0], soa[1], soa[2]]).reshape(-1, 3)


def orient_normals_soa(n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(3, N) normals → unit, facing the camera at points p (3, N); -p/|p| where undefined.
    Modifies ``n``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        length = norm3(n)
        bad = ~(length > 1e-12)  # NaN too
        if bad.any():
            b = np.flatnonzero(bad)
            n[:, b] = p[:, b]
            length[b] = norm3(n[:, b])
        # one pass: scale to unit length, and by -1 where the normal points away from the camera
        facing = n[0] * p[0] + n[1] * p[1] + n[2] * p[2]
        scale = (facing <= 0).astype(np.float32)
        scale *= 2
        scale -= 1
        scale /= length
        n *= scale
    return n.astype(np.float32, copy=False)
