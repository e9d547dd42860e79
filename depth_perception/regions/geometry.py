"""From a region's cleaned points to its box, approach and width across the gripper.

Only the visible surface is observed, so a box fitted to it is too small and its centre sits too
close to the camera. Two completions fix that where the geometry allows:

- with a known support plane (objects stand on tables) the box is gravity-aligned: one axis is the
  plane normal, the footprint is the minimum-area rectangle of the points projected on the plane, and
  the box reaches down to the plane when the region touches it. Exact for prisms whose top is seen
  (boxes, upright cylinders), because the top face outlines the whole footprint;
- a region whose points fit a sphere (relative RMS residual below ``sphere_fit_tol``) is completed
  as the sphere's cube: a ball's far half is never seen, so no footprint rectangle can find it.

Otherwise the box is the PCA box of the visible points (axes = principal axes, extents = spread).
Moments come for all regions at once from one small Gram matrix each; the rest is a short loop
over regions, never over points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .params import RegionParams


@dataclass(frozen=True)
class Moments:
    """Moments of one region's points (float64)."""

    n: int
    mean: np.ndarray  # (3,)
    eigval: np.ndarray  # (3,) ascending eigenvalues of the covariance (divided by n)
    axes: np.ndarray  # (3, 3) principal axes as columns, largest spread first, right-handed
    sphere: tuple[np.ndarray, float, float] | None  # centre (absolute), radius, RMS distance


@dataclass(frozen=True)
class Footprint:
    """A region seen from its support plane."""

    plane: np.ndarray  # (4,) the support plane, normal towards the camera
    uv: np.ndarray  # (2, n) in-plane coordinates (``basis``) of points on the region's outline
    basis: np.ndarray  # (3, 3) :func:`depth_perception.grid.plane_basis` of the plane
    heights: tuple[float, float]  # lowest and highest point above the plane, metres
    pads: tuple[float, float]  # metres added to the footprint sides facing / facing away from the camera


@dataclass(frozen=True)
class Box:
    center: np.ndarray  # (3,) the estimate of the solid's centroid
    rotation: np.ndarray  # (3, 3) axes as columns
    size: np.ndarray  # (3,) full extents along them
    method: str  # "plane", "sphere", "pca"


@dataclass(frozen=True)
class Grasp:
    approach: np.ndarray  # (3,) unit, from the camera side into the object
    closing_axis: np.ndarray  # (3,) unit box axis the gripper closes along
    width: float  # metres across the closing axis


def moments(mean: np.ndarray, gram: np.ndarray, count: np.ndarray, params: RegionParams) -> list[Moments]:
    """Principal axes and the algebraic sphere fit of every instance, from its mean (3, k) and the
    mean outer products (k, 4, 4) of (q, s): q the points centred on their mean, s = |q|².

    That one Gram matrix holds every sum needed: the covariance, mean(q s) and mean(s²). The sphere
    |q|² = 2 c·q + k is linear in (c, k); with centred points its normal equations split into
    cov · c = ½ mean(q s) and k = mean(s), so r² = mean(s) + |c|². The algebraic residual
    f = |q - c|² - r² then has mean(f²) = var(s) - 2 c·mean(q s), and |q - c| - r ≈ f / 2r (to within
    (|q - c| - r) / 2r: 1.5 % at the default tolerance), so the RMS distance to the sphere needs no
    second pass over the points (float64 sums: the generator's spheres fit to < 5e-4 r, its boxes
    and cylinders > 0.1 r, against the 3 % tolerance).
    """
    eigval, eigvec = np.linalg.eigh(gram[:, :3, :3])  # an empty instance has a zero matrix: harmless
    spheres = _spheres(mean, gram, eigval, count, params)
    axes = eigvec[:, :, ::-1].copy()
    a, b = axes[:, :, 0], axes[:, :, 1]  # third axis = first x second: right-handed
    axes[:, 0, 2] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    axes[:, 1, 2] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    axes[:, 2, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return [Moments(int(n), mean[:, j], eigval[j], axes[j], spheres[j]) for j, n in enumerate(count.tolist())]


def _spheres(mean, gram, eigval, count, params: RegionParams) -> list:
    """Per instance (centre, radius, RMS distance) of the algebraic sphere fit (see :func:`moments`),
    or None: only where the points have extent in all three directions."""
    cov = gram[:, :3, :3]
    spread = np.sqrt(np.maximum(eigval, 0.0))
    fit = (count >= 20) & (spread[:, 0] > 0)
    fit &= np.minimum(spread[:, 0], spread[:, 1]) >= params.degenerate_ratio * spread[:, 2]
    spheres: list = [None] * count.size
    if params.sphere_fit_tol <= 0 or not fit.any():
        return spheres
    qs = gram[fit, :3, 3]
    try:
        c = np.linalg.solve(cov[fit], 0.5 * qs[..., None])[..., 0]
    except np.linalg.LinAlgError:  # singular despite the spread test: no sphere
        c = np.full_like(qs, np.nan)
    ms = gram[fit, 3, 3]  # mean s²
    mean_s = np.trace(cov[fit], axis1=1, axis2=2)
    r2 = mean_s + (c * c).sum(axis=1)
    f2 = ms - mean_s * mean_s - 2 * (c * qs).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(r2)
        rms = np.sqrt(np.maximum(f2, 0.0)) / (2 * r)
    for j, cj, rj, ej in zip(np.flatnonzero(fit).tolist(), c, r.tolist(), rms.tolist()):
        if math.isfinite(rj) and rj > 0 and math.isfinite(ej):
            spheres[j] = (mean[:, j] + cj, rj, ej)
    return spheres


def degeneracies(m: Moments, params: RegionParams) -> list[str]:
    """Notes on a point set that lacks extent in some direction (its box there is not observed)."""
    s0, s1, s2 = (math.sqrt(max(w, 0.0)) for w in m.eigval[::-1].tolist())
    if m.n < 3 or s0 == 0:
        return [f"{m.n} point(s) without extent"]
    if s1 < params.degenerate_ratio * s0:
        return ["linear point set: box width and normal are not observable"]
    if s2 < params.degenerate_ratio * s0:
        return ["planar point set: box depth is not observable"]
    return []


def fit_box(q: np.ndarray, m: Moments, footprint: Footprint | None, params: RegionParams,
            notes: list[str]) -> Box:
    """The region's box from its points ``q`` (3, N): sphere, plane (with a ``footprint`` on the
    support plane) or PCA (module docstring). Appends to ``notes`` what limits it."""
    if params.sphere_fit_tol > 0 and m.n >= 20 and not notes and m.sphere is not None:
        c, r, rms = m.sphere
        # accept only a cap that spans at least a radius (a flat patch fits a huge sphere)
        if rms < params.sphere_fit_tol * r and _pca_extent(m.axes[:, :1], q)[1][0] >= r:
            R = footprint.basis if footprint is not None else m.axes
            return Box(c, R, np.full(3, 2 * r), "sphere")
    if footprint is not None and m.n >= 3:
        return _plane_box(footprint, params, notes)
    centre, size = _pca_extent(m.axes, q)
    return Box(centre, m.axes, size, "pca")


_DIRECTIONS = np.stack(
    [np.cos(np.arange(16) * np.pi / 16), np.sin(np.arange(16) * np.pi / 16)], axis=1
).astype(np.float32)  # (16, 2) unit directions over half a turn


def _plane_box(fp: Footprint, params: RegionParams, notes: list[str]) -> Box:
    """Gravity-aligned box on the support plane: min-area footprint rectangle × [bottom, top].
    Small vectors are plain floats: numpy costs microseconds per call on 2- and 3-vectors."""
    import cv2

    uv = fp.uv
    if uv.shape[1] > 1024:
        # the rectangle only touches hull points: keep the extremes along 32 directions (exact for
        # polygons with corners more than ~11 degrees apart, within 0.5 % of the radius for a disc)
        ext = _DIRECTIONS @ uv
        uv = uv.take(np.concatenate((ext.argmax(axis=1), ext.argmin(axis=1))), axis=1)
    (c0u, c0v), (c1u, c1v), (c2u, c2v), (c3u, c3v) = cv2.boxPoints(
        cv2.minAreaRect(np.ascontiguousarray(uv.T))).tolist()
    e_a, e_b = (c1u - c0u, c1v - c0v), (c2u - c1u, c2v - c1v)
    len_a, len_b = math.hypot(*e_a), math.hypot(*e_b)
    if max(len_a, len_b) < 1e-9:
        dirs = ((1.0, 0.0), (0.0, 1.0))
    else:
        (eu, ev), length = (e_a, len_a) if len_a >= len_b else (e_b, len_b)
        dirs = ((eu / length, ev / length), (-ev / length, eu / length))
    cu, cv = (c0u + c1u + c2u + c3u) / 4, (c0v + c1v + c2v + c3v) / 4
    half = (max(len_a, len_b) / 2, min(len_a, len_b) / 2)
    lo, hi = [], []
    for (du, dv), h in zip(dirs, half):
        # the camera sits at uv = (0, 0): a side is "far" when the camera is on the box's side of it
        cam = -(du * cu + dv * cv)  # camera in rectangle coordinates
        hi.append(h + (fp.pads[1] if cam < h else fp.pads[0]))
        lo.append(-h - (fp.pads[1] if cam > -h else fp.pads[0]))
    for (du, dv), a, b in zip(dirs, lo, hi):
        cu, cv = cu + du * (a + b) / 2, cv + dv * (a + b) / 2
    (b0x, b1x, nx), (b0y, b1y, ny), (b0z, b1z, nz) = fp.basis.tolist()
    a1 = (b0x * dirs[0][0] + b1x * dirs[0][1], b0y * dirs[0][0] + b1y * dirs[0][1],
          b0z * dirs[0][0] + b1z * dirs[0][1])
    a2 = (ny * a1[2] - nz * a1[1], nz * a1[0] - nx * a1[2], nx * a1[1] - ny * a1[0])
    bottom, top = fp.heights
    if bottom <= params.ground_gap_ratio * top:
        bottom = 0.0  # it stands on the plane; the hidden lower part is part of the object
    else:
        notes.append(f"not resting on the support plane (lowest point {bottom * 100:.1f} cm above it)")
    # in-plane coordinates → camera frame: the plane's point nearest the camera is -d·n
    along_n = (top + bottom) / 2 - float(fp.plane[3])
    centre = np.array([b0x * cu + b1x * cv + nx * along_n, b0y * cu + b1y * cv + ny * along_n,
                       b0z * cu + b1z * cv + nz * along_n])
    R = np.array([a1, a2, (nx, ny, nz)]).T
    return Box(centre, R, np.array([hi[0] - lo[0], hi[1] - lo[1], top - bottom]), "plane")


def _pca_extent(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and extents of the box with axes v (orthonormal columns) around points p (3, N)."""
    proj = v.T.astype(np.float32) @ p
    lo, hi = proj.min(axis=1).astype(np.float64), proj.max(axis=1).astype(np.float64)
    return v @ ((lo + hi) / 2), hi - lo


def grasp(box: Box, mean_normal: np.ndarray, surface: np.ndarray, notes: list[str]) -> Grasp:
    """Approach: the mean visible normal (facing the camera) reversed into the object, or the
    viewing ray when the normals do not agree. The gripper closes across the approach: the box axis
    most aligned with it is dropped and it closes along the narrower of the other two."""
    mx, my, mz = mean_normal.tolist()
    norm = math.sqrt(mx * mx + my * my + mz * mz)
    if norm > 0.1:
        approach = np.array([-mx / norm, -my / norm, -mz / norm])
    else:
        sx, sy, sz = surface.tolist()
        dist = math.sqrt(sx * sx + sy * sy + sz * sz)
        approach = np.array([sx / dist, sy / dist, sz / dist]) if dist > 0 else np.array([0.0, 0.0, 1.0])
        notes.append("no dominant surface normal: approach along the viewing ray")
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = box.rotation.tolist()
    ax, ay, az = approach.tolist()
    along = [abs(r00 * ax + r10 * ay + r20 * az), abs(r01 * ax + r11 * ay + r21 * az),
             abs(r02 * ax + r12 * ay + r22 * az)]
    sizes = box.size.tolist()
    others = sorted(range(3), key=along.__getitem__)[:2]
    k = min(others, key=sizes.__getitem__)
    return Grasp(approach, box.rotation[:, k].copy(), float(sizes[k]))
