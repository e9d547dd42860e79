"""Geometric segmentation, no weights: support-plane RANSAC + clustering of what stands on the plane.

The default segmenter, and the demo's. Works on the metric organised cloud (HxWx3 float32 metres,
camera optical frame, NaN invalid), so neighbourhoods come from the pixel grid, not a k-d tree:

1. planes: vectorised RANSAC (all hypotheses scored at once on a random subset of a strided grid),
   refined by least squares on the inliers; repeated on the remaining points to find up to
   ``max_planes`` large planes (table, walls);
2. the support plane: the largest plane, weighted by how well its normal agrees with ``up_camera``
   (a camera looking at a table sees it "from above": image-up, -y); a wall facing the camera is
   found too and its inliers are excluded from the objects when it is larger than any object;
3. candidates: pixels above the support plane by more than a margin (the larger of ``min_height_m``
   and ``margin_sigmas`` x the plane's robust residual, so noisy depth does not turn the table into
   objects) and below ``max_height_m``;
4. instances: connected components of the candidates over 4-neighbour grid edges shorter than the
   cluster gap in 3-D (max of ``cluster_gap_m`` and ``cluster_gap_px`` pixel footprints), the
   components of :func:`depth_perception.grid.grid_components`; edges that fold concavely (two
   surfaces meeting in a valley, as touching objects do) are cut as well when ``concave_cut_deg`` > 0;
5. the band of pixels within the margin above the plane (object feet) is grown back onto the
   instance it touches, in 3-D, so masks reach down to the table;
6. components with fewer than ``min_points`` pixels or wider than ``max_object_size_m`` are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# np.median imports numpy.ma on its first call (~15 ms): paid here, when the pipeline imports its
# segmenter, instead of inside the first frame
import numpy.ma  # noqa: F401

from ..grid import (
    fit_plane_ransac,
    grid_components,
    orient_plane,
    pixel_angle,
    plane_basis,
    valid_points,
)
from .base import Segmentation, SegmentationError, check_points


@dataclass(frozen=True)
class GeometricParams:
    """Settings of :func:`segment_geometric` (ROS parameters ``segmentation.geometric.*``)."""

    #: RANSAC inlier distance to a plane, metres, plus ``plane_threshold_rel`` x depth (noisy sensors).
    plane_threshold_m: float = 0.008
    plane_threshold_rel: float = 0.0
    ransac_iterations: int = 256
    #: points every hypothesis is scored on (a random subset; the refit uses all grid points).
    ransac_samples: int = 3000
    #: the grid the planes are fitted on is strided to at most this many valid points.
    plane_fit_points: int = 20000
    max_planes: int = 3
    #: a plane must hold at least this fraction of the valid points.
    min_plane_fraction: float = 0.08
    #: gravity-up in the camera frame if known (e.g. from TF); default image-up, (0, -1, 0).
    up_camera: tuple[float, float, float] | None = (0.0, -1.0, 0.0)
    #: candidates are higher than max(min_height_m, margin_sigmas x plane residual) above the plane.
    min_height_m: float = 0.006
    margin_sigmas: float = 3.0
    max_height_m: float = 0.5
    cluster_gap_m: float = 0.006
    cluster_gap_px: float = 4.0
    #: cut grid edges where the surface folds concavely by more than this (0 disables the cut).
    concave_cut_deg: float = 50.0
    #: grow instances into the band between the plane and the margin (object feet).
    grow_feet: bool = True
    min_points: int = 60
    max_object_size_m: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("plane_threshold_m", "min_height_m", "max_height_m", "cluster_gap_m",
                     "max_object_size_m"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise SegmentationError(f"geometric {name} must be a finite number > 0, got {v!r}")
        for name in ("plane_threshold_rel", "margin_sigmas", "cluster_gap_px", "concave_cut_deg",
                     "min_plane_fraction"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise SegmentationError(f"geometric {name} must be a finite number >= 0, got {v!r}")
        for name in ("ransac_iterations", "ransac_samples", "plane_fit_points", "max_planes", "min_points"):
            if int(getattr(self, name)) < 1:
                raise SegmentationError(f"geometric {name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.min_height_m >= self.max_height_m:
            raise SegmentationError(
                f"geometric min_height_m ({self.min_height_m}) must be below max_height_m ({self.max_height_m})")
        if self.up_camera is not None:
            up = np.asarray(self.up_camera, float)
            if up.shape != (3,) or not np.isfinite(up).all() or np.linalg.norm(up) < 1e-9:
                raise SegmentationError(f"geometric up_camera must be a non-zero 3-vector, got {self.up_camera!r}")


@dataclass(frozen=True)
class PlaneFit:
    """A plane found in an organised cloud.

    plane: (4,) float64 (nx, ny, nz, d), n·p + d = 0 with unit n oriented towards the camera (d > 0).
    inliers: HxW bool, points within the RANSAC threshold (planes found later may share pixels
        with earlier ones, e.g. along the line where a wall meets the table).
    residual_m: robust standard deviation (1.4826 x MAD) of the inliers' signed distances, metres.
    extent_m: spread of the inliers along the plane (2-98 percentile, larger axis), metres.
    """

    plane: np.ndarray
    inliers: np.ndarray
    residual_m: float
    extent_m: float

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())


def _threshold(z: np.ndarray, params: GeometricParams) -> np.ndarray | float:
    """RANSAC inlier distance at depth z, metres (a scalar when it does not depend on depth: a
    full image of one value costs a pass over the frame)."""
    if params.plane_threshold_rel == 0:
        return params.plane_threshold_m
    return params.plane_threshold_m + params.plane_threshold_rel * z


def find_planes(points: np.ndarray, params: GeometricParams | None = None,
                valid: np.ndarray | None = None) -> list[PlaneFit]:
    """Large planes of an organised cloud (HxWx3 metres, NaN invalid), largest first.

    Sequential RANSAC: each plane's inliers are removed before the next search. Planes holding fewer
    than ``min_plane_fraction`` of the valid points end the search. ``valid``: the caller's
    :func:`valid_points` of the same cloud, when it has them.
    """
    params = params or GeometricParams()
    pts = check_points(points)
    valid = valid_points(pts) if valid is None else valid
    n_valid = int(valid.sum())
    if n_valid < 3:
        return []
    stride = max(1, int(np.ceil(np.sqrt(n_valid / params.plane_fit_points))))
    grid = pts[::stride, ::stride]
    gvalid = valid[::stride, ::stride]
    p = grid[gvalid].astype(np.float64)
    rng = np.random.default_rng(params.seed)
    remaining = np.ones(len(p), bool)
    min_count = params.min_plane_fraction * len(p)
    fits: list[PlaneFit] = []
    for _ in range(int(params.max_planes)):
        if remaining.sum() < max(3, min_count):
            break
        plane = fit_plane_ransac(p[remaining], rng, iterations=params.ransac_iterations,
                                 threshold_m=params.plane_threshold_m,
                                 threshold_rel=params.plane_threshold_rel,
                                 score_points=params.ransac_samples)
        if plane is None:
            break
        plane = orient_plane(plane)
        on = np.abs(p @ plane[:3] + plane[3]) < _threshold(p[:, 2], params)
        on &= remaining
        if on.sum() < max(3, min_count):
            break
        remaining &= ~on
        with np.errstate(invalid="ignore"):
            sd = pts @ plane[:3].astype(np.float32) + np.float32(plane[3])
            inliers = np.abs(sd) < _threshold(pts[..., 2], params)  # NaN compares False
        fits.append(PlaneFit(plane=plane, inliers=inliers, residual_m=_robust_sd(p[on] @ plane[:3] + plane[3]),
                             extent_m=_plane_extent(p[on], plane)))
    return fits


def _robust_sd(r: np.ndarray) -> float:
    """1.4826 x MAD: the standard deviation of the inliers' plane distances, outliers aside."""
    return 1.4826 * float(np.median(np.abs(r - np.median(r)))) if r.size else 0.0


def _plane_extent(p: np.ndarray, plane: np.ndarray) -> float:
    uv = p @ plane_basis(plane[:3])[:, :2]
    lo, hi = np.percentile(uv, [2, 98], axis=0)
    return float((hi - lo).max())


def _given_plane(pts: np.ndarray, valid: np.ndarray, support_plane, params: GeometricParams) -> PlaneFit:
    """A known support plane (e.g. from TF) as a :class:`PlaneFit` of this cloud."""
    sp = np.asarray(support_plane, float).reshape(-1)
    if sp.size != 4 or not np.isfinite(sp).all() or np.linalg.norm(sp[:3]) < 1e-9:
        raise SegmentationError(f"support_plane must be finite (nx, ny, nz, d), got {support_plane!r}")
    sp = orient_plane(sp)
    with np.errstate(invalid="ignore"):
        sd = pts @ sp[:3].astype(np.float32) + np.float32(sp[3])
        inl = valid & (np.abs(sd) < _threshold(pts[..., 2], params))
    return PlaneFit(sp, inl, _robust_sd(sd[inl]), np.inf)


def choose_support_plane(fits: list[PlaneFit], up_camera=(0.0, -1.0, 0.0)) -> PlaneFit | None:
    """The plane objects stand on: inlier count weighted by max(n·up, 0.1) (so a top-down view,
    where no plane faces image-up, still takes the largest), or simply the largest when up is None."""
    if not fits:
        return None
    if up_camera is None:
        return max(fits, key=lambda f: f.n_inliers)
    up = np.asarray(up_camera, float)
    up = up / np.linalg.norm(up)
    return max(fits, key=lambda f: f.n_inliers * max(float(f.plane[:3] @ up), 0.1))


PAD = 2


def pad_flat(mask: np.ndarray) -> np.ndarray:
    """HxW array padded by PAD zeros and flattened: indices match :func:`padded_cloud`."""
    return np.pad(mask, PAD).reshape(-1)


def padded_cloud(pts: np.ndarray) -> np.ndarray:
    """(H+4)x(W+4)x3 copy with a 2-pixel NaN border, flattened to ((H+4)(W+4), 3): the grid
    neighbours of every pixel, and theirs, are valid flat indices (idx ± 1, idx ± row) without
    border checks."""
    h, w = pts.shape[:2]
    out = np.full((h + 2 * PAD, w + 2 * PAD, 3), np.nan, np.float32)
    out[PAD:-PAD, PAD:-PAD] = pts
    return out.reshape(-1, 3)


def _normals_at(xyz: np.ndarray, idx: np.ndarray, row: int) -> np.ndarray:
    """3xN unit normals (central differences on the grid) at flat padded indices ``idx``, oriented
    towards the camera; NaN where a neighbour is missing. ``xyz``: the padded cloud as 3 x (H+4)(W+4)
    coordinate planes."""
    X, Y, Z = xyz
    ax, ay, az = X[idx + 1] - X[idx - 1], Y[idx + 1] - Y[idx - 1], Z[idx + 1] - Z[idx - 1]
    bx, by, bz = X[idx + row] - X[idx - row], Y[idx + row] - Y[idx - row], Z[idx + row] - Z[idx - row]
    n = np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx])
    with np.errstate(invalid="ignore", divide="ignore"):
        n /= np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
        flip = n[0] * X[idx] + n[1] * Y[idx] + n[2] * Z[idx] > 0
    n[:, flip] *= -1
    return n


def _components(cand_idx: np.ndarray, xyz: np.ndarray, gap: np.ndarray, row: int,
                cos_cut: float | None = None) -> np.ndarray:
    """Component id of every candidate (flat padded indices ``cand_idx``, sorted) over 4-neighbour
    edges that are short in 3-D (``gap``: per padded pixel, metres) and, when ``cos_cut`` is given,
    not concave folds sharper than its angle. ``xyz``: the padded cloud as 3 x (H+4)(W+4)
    coordinate planes (the per-edge gathers fetch one float32 each, several times faster than
    rows of an Nx3 array)."""
    n_nodes = len(cand_idx)
    X, Y, Z = xyz
    if cos_cut is not None and n_nodes:
        # normals of the candidates and their 4-neighbours, computed once; the pixels marked in a
        # flag image (np.unique would sort five copies of the candidates). Gathers at these
        # pixels, not slices over the rows they span: the span's temporaries overflow the cache
        # and cost several times more. Left uninitialised elsewhere (a NaN fill is a pass over
        # three images): the concave test reads normals only one pixel beyond a candidate.
        is_near = np.zeros(len(X), bool)
        for o in (0, 1, -1, row, -row):
            is_near[cand_idx + o] = True
        near = np.flatnonzero(is_near)
        normals = np.empty(xyz.shape, np.float32)
        normals[:, near] = _normals_at(xyz, near, row)
        NX, NY, NZ = normals
    # node number of every padded pixel (-1: not a candidate): a neighbour's node is one lookup
    node = np.full(len(X), -1, np.int32)
    node[cand_idx] = np.arange(n_nodes, dtype=np.int32)
    right = np.zeros(max(n_nodes - 1, 0), dtype=bool)  # node i to node i + 1, the next pixel
    edges = []
    # 4-neighbour edges, plus edges that jump a single invalid pixel (speckle, a dead row) so
    # that holes in the depth do not cut an object in two. Each test runs on the edges that
    # passed the one before (the arrays shrink as they go; their order, increasing a, is kept).
    for step, jump in ((1, False), (row, False), (2, True), (2 * row, True)):
        j = node[cand_idx + step]
        a = np.flatnonzero(j >= 0)  # the neighbour is a candidate too; j is its node number
        ia = cand_idx[a]
        if jump:
            over = ~np.isfinite(Z[ia + step // 2])
            a, ia = a[over], ia[over]
        ib = ia + step
        dx, dy, dz = X[ib] - X[ia], Y[ib] - Y[ia], Z[ib] - Z[ia]
        ok = dx * dx + dy * dy + dz * dz < (np.minimum(gap[ia], gap[ib]) * (2 if jump else 1)) ** 2
        a, ia = a[ok], ia[ok]
        if cos_cut is not None and not jump:
            # normals one pixel back from each end of the edge: central differences right at a
            # crease straddle it and blur the fold away
            ia2, ib2 = ia - step, ia + 2 * step
            nax, nay, naz = NX[ia2], NY[ia2], NZ[ia2]
            nbx, nby, nbz = NX[ib2], NY[ib2], NZ[ib2]
            with np.errstate(invalid="ignore"):  # NaN normals (a missing neighbour) are not sharp
                sharp = np.flatnonzero(nax * nbx + nay * nby + naz * nbz < cos_cut)
            # concave: each point lies on the camera side of the other's tangent plane (tested on
            # the few sharp edges only)
            sa, sb = ia2[sharp], ib2[sharp]
            dx, dy, dz = X[sb] - X[sa], Y[sb] - Y[sa], Z[sb] - Z[sa]
            nax, nay, naz, nbx, nby, nbz = (v[sharp] for v in (nax, nay, naz, nbx, nby, nbz))
            concave = (nax * dx + nay * dy + naz * dz > 0) & (nbx * dx + nby * dy + nbz * dz < 0)
            keep = np.ones(len(a), bool)
            keep[sharp[concave]] = False
            a = a[keep]
        if step == 1:
            right[a] = True
        else:
            edges.append((a, j[a]))
    return grid_components(n_nodes, right, edges)


def _grow(lab: np.ndarray, band_idx: np.ndarray, P: np.ndarray, gap: np.ndarray, row: int,
          max_iter: int) -> None:
    """Grow labels (flat padded, 0 = none; modified in place) into the ``band_idx`` pixels that have
    a labelled 4-neighbour within the 3-D gap (the receiving pixel's), one pixel ring per pass,
    ``max_iter`` passes; where several neighbours qualify, the first of right, left, down, up.

    Breadth-first over a frontier: a band pixel whose labelled neighbours are all too far stays
    unlabelled until a new neighbour is labelled, so each pass only examines the free neighbours
    of the pixels the pass before labelled (the first pass: band pixels next to any label), not
    the whole band again."""
    steps = (1, -1, row, -row)
    free = np.zeros(len(lab), bool)
    free[band_idx] = True
    touching = np.zeros(len(band_idx), bool)
    for step in steps:
        touching |= lab[band_idx + step] > 0
    todo = band_idx[touching]
    for _ in range(max_iter):
        if todo.size == 0:
            break
        best = np.zeros(len(todo), lab.dtype)
        p_todo, gap2 = P[todo], gap[todo] ** 2
        for step in steps:
            nb = todo + step
            src = lab[nb]
            take = (best == 0) & (src > 0)
            if not take.any():
                continue
            i = np.flatnonzero(take)
            with np.errstate(invalid="ignore"):  # NaN points are never near
                d = p_todo[i] - P[nb[i]]
                near = (d * d).sum(axis=1) < gap2[i]
            best[i[near]] = src[i[near]]
        got = best > 0
        if not got.any():
            break
        new = todo[got]
        lab[new] = best[got]
        free[new] = False
        # the next ring: free band pixels next to a pixel labelled in this pass
        nxt = np.concatenate([new + step for step in steps])
        todo = np.unique(nxt[free[nxt]])


def segment_geometric(points: np.ndarray, params: GeometricParams | None = None,
                      support_plane: np.ndarray | None = None) -> Segmentation:
    """Instance masks of the objects standing on the support plane of an organised cloud.

    :param points: HxWx3 float32 metres, camera optical frame (REP 103), NaN where invalid.
    :param params: :class:`GeometricParams`.
    :param support_plane: (4,) known plane (n·p + d = 0), e.g. from the metric stage or a calibrated
        table; skips the support-plane search (other planes are still searched, to exclude walls).
    :returns: :class:`Segmentation` with ids 1..N by decreasing pixel count, names "object", scores
        1.0, ``support_plane`` set; an empty segmentation with a message when no plane is found.
    """
    params = params or GeometricParams()
    pts = check_points(points)
    shape = pts.shape[:2]
    valid = valid_points(pts)
    if valid.sum() < params.min_points:
        return Segmentation.empty(shape, "geometric", f"only {int(valid.sum())} valid points")
    fits = find_planes(pts, params, valid)
    if support_plane is not None:
        support = _given_plane(pts, valid, support_plane, params)
        # a searched plane parallel and close to the given one is the same table
        sp = support.plane
        others = [f for f in fits if not (abs(f.plane[:3] @ sp[:3]) > 0.97 and abs(f.plane[3] - sp[3]) < 0.03)]
    else:
        chosen = choose_support_plane(fits, params.up_camera)
        if chosen is None:
            return Segmentation.empty(shape, "geometric",
                                      "no support plane found (no plane holds "
                                      f"{params.min_plane_fraction:.0%} of the valid points)")
        support = chosen
        others = [f for f in fits if f is not support]
    plane = support.plane
    with np.errstate(invalid="ignore"):
        height = pts @ plane[:3].astype(np.float32) + np.float32(plane[3])
    margin = max(params.min_height_m, params.margin_sigmas * support.residual_m)
    with np.errstate(invalid="ignore"):
        cand = valid & (height > margin) & (height < params.max_height_m)
        band = valid & (height > 0.25 * margin) & (height <= margin)
    for f in others:
        # walls: larger than any object and not parallel to the support (a plane parallel to the
        # table is RANSAC joining object tops of similar height, or a shelf above it)
        if f.extent_m > params.max_object_size_m and abs(f.plane[:3] @ plane[:3]) < np.cos(np.radians(30)):
            cand &= ~f.inliers
            band &= ~f.inliers
    if cand.sum() < params.min_points:
        return Segmentation(labels=np.zeros(shape, np.uint16), source="geometric",
                            message="nothing stands on the support plane", support_plane=plane)

    h, w = shape
    row = w + 2 * PAD
    P = padded_cloud(pts)
    cand_idx = np.flatnonzero(pad_flat(cand))
    pix = pixel_angle(pts)
    xyz = np.ascontiguousarray(P.T)
    # read at valid pixels only; fmax keeps cluster_gap_m where z is NaN
    gap = np.fmax(np.float32(params.cluster_gap_m), params.cluster_gap_px * pix * xyz[2])
    cos_cut = float(np.cos(np.radians(params.concave_cut_deg))) if params.concave_cut_deg > 0 else None
    comp = _components(cand_idx, xyz, gap, row, cos_cut)
    lab = np.zeros(len(P), np.int32)
    scene = pts[::4, ::4][valid[::4, ::4]]  # a sparse sample of the scene for the wall test
    lab[cand_idx] = _keep_components(comp, P[cand_idx], scene, params)
    if params.grow_feet and lab.any():
        # one ring per pass: enough passes to climb the margin on a side face at the median depth
        z_med = float(np.median(xyz[2][cand_idx]))
        _grow(lab, np.flatnonzero(pad_flat(band)), P, gap, row,
              max_iter=int(min(30, np.ceil(margin / (pix * z_med)) + 1)))
    labels = lab.reshape(h + 2 * PAD, w + 2 * PAD)[PAD:-PAD, PAD:-PAD]
    # ids 1..N by decreasing pixel count (counted on the contiguous padded image: the border
    # only adds to the background's count)
    counts = np.bincount(lab)
    order = np.argsort(-counts[1:], kind="stable") + 1
    keep = order[counts[order] >= params.min_points]
    lut = np.zeros(len(counts), np.uint16)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.uint16)
    out = lut[labels]
    n = len(keep)
    msg = "" if n else "nothing stands on the support plane"
    return Segmentation(labels=out, names={i: "object" for i in range(1, n + 1)},
                        scores={i: 1.0 for i in range(1, n + 1)}, source="geometric", message=msg,
                        support_plane=plane)


def _keep_components(comp: np.ndarray, p: np.ndarray, scene: np.ndarray, params: GeometricParams) -> np.ndarray:
    """Per candidate: its component number + 1, or 0 when the component is dropped.

    Dropped: fewer than ``min_points`` pixels; a bounding-box side over ``max_object_size_m``; or a
    scene boundary: a planar component with (almost) no scene behind its plane is a strip of wall
    seen above the table, not an object (behind a box face the table or the wall goes on).
    """
    n = int(comp.max()) + 1
    counts = np.bincount(comp, minlength=n)
    order = np.argsort(comp, kind="stable")
    cs, ps = comp[order], p[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    ids = cs[starts]
    size = np.zeros(n)
    size[ids] = (np.maximum.reduceat(ps, starts, axis=0) - np.minimum.reduceat(ps, starts, axis=0)).max(axis=1)
    ok = (counts >= params.min_points) & (size <= params.max_object_size_m)
    # per-component covariance from sums (no loop over points); the loop is over components
    mean = np.zeros((n, 3))
    mean[ids] = np.add.reduceat(ps, starts, axis=0) / counts[ids, None]
    outer = np.add.reduceat(ps[:, :, None] * ps[:, None, :], starts, axis=0)
    for k, c in enumerate(ids):
        if not ok[c]:
            continue
        cov = outer[k] / counts[c] - np.outer(mean[c], mean[c])
        vals, vecs = np.linalg.eigh(cov)
        if np.sqrt(max(vals[0], 0.0)) > 0.5 * params.plane_threshold_m:
            continue  # not planar
        normal = vecs[:, 0] if vecs[:, 0] @ mean[c] < 0 else -vecs[:, 0]  # towards the camera
        behind = int(((scene - mean[c]) @ normal < -params.plane_threshold_m).sum())
        if behind < max(3, 0.002 * len(scene)):
            ok[c] = False
    lut = np.where(ok, np.arange(1, n + 1), 0)
    return lut[comp]
