"""The one cleaning pass: instance masks ∩ organised cloud → the points each mask really covers.

Masks come from colour (SAM, a detector, another node) or from geometry, and depth from a network
or a sensor; at object borders they disagree, and depth there is the worst (mixed "flying" pixels
between the object and what lies behind it). The pass runs once per frame, for all masks at once,
on the mask pixels only:

1. erosion: a pixel survives when its whole (2·erosion_px + 1)² window carries its own id (one cv2
   call for all masks); a mask that would keep fewer than ``min_pixels`` valid pixels is used whole;
2. validity: finite depth in front of the camera, not within ``plane_margin_m`` of the support
   plane (the table bleeding into a mask), not on a depth edge (a 4-neighbour, of any mask or none,
   whose depth differs by more than max(``edge_jump_m``, ``edge_jump_px`` footprints)), and not
   farther from the mask's median depth than max(``mad_k`` x 1.4826 x MAD, ``mad_floor_m``): what a
   mask bleeds onto can join the object without a depth edge (the table at its foot, with noisy
   depth above the plane margin);
3. statistical outliers: a point's mean distance to its 4 (or 8) grid neighbours of the same mask,
   in footprints, against ``mean + outlier_std_ratio · std`` of its mask (:mod:`.neighbours`);
4. the dominant cluster: connected components over grid edges shorter than the cluster gap
   (:func:`depth_perception.grid.grid_components`), the largest per mask, plus any other holding at
   least ``min_cluster_fraction`` of it that comes within the gap of it in 3-D (an object split by
   an occluder);
5. the kept points grouped by instance with their grid normals and per-instance sums; masks left
   with fewer than ``min_pixels`` points are marked dropped, with the reason.

Mask fusion turns the result into the frame's label image
(:func:`.fusion.fuse_masks`) and region extraction measures its points
(:func:`.extract.describe_regions`): neither cleans again.

Two implementations of steps 1-5 keep the same points: numpy (below, the reference) and the
compiled kernel ``depth_perception/_regions_kernel.cpp`` (:mod:`.compiled`), used where it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..grid import pixel_angle
from . import compiled
from .neighbours import Neighbours
from .params import RegionParams, check_labels, check_plane, check_points
from .region import paint
from .segments import InstanceSums, Segments, gather_points, interleave, norm3
from .verdict import MaskCounts


@dataclass
class CleanedMasks:
    """What the pass keeps: the input of fusion and of region extraction.

    Kept points are grouped by instance in id order, row-major inside; pixel indices are of the
    grid the pass ran on (every ``stride``-th pixel of the ``shape`` image).
    """

    shape: tuple[int, int]  # H, W of the input image
    stride: int
    grid_labels: np.ndarray  # the (strided) label image the pass ran on
    pixel_angle: float  # radians per pixel of the strided grid
    support_plane: np.ndarray | None  # (4,) oriented towards the camera
    ids: list[int]
    segments: Segments  # instance j's kept points: segments.slice(j)
    pixel: np.ndarray  # (N,) int64 grid index
    points: np.ndarray  # (N, 3) float32
    normal_vectors: np.ndarray  # (3, N) float32 t_u x t_v from kept short grid edges, not normalised
    ends: np.ndarray  # indices of the kept points that end a row run, grouped by instance
    end_segments: Segments
    sums: InstanceSums
    counts: np.ndarray  # (k, 4) int64 pixels of each input mask: all, valid, behind, on the plane
    uneroded: np.ndarray  # (k,) bool: too small to erode, used whole
    dropped: dict[int, str] = field(default_factory=dict)  # masks left with < min_pixels points: why

    @property
    def grid_width(self) -> int:
        return self.grid_labels.shape[1]

    def mask_counts(self, j: int) -> MaskCounts:
        return MaskCounts(*(int(c) for c in self.counts[j]))

    def mask_roi(self, j: int) -> tuple[int, int, int, int]:
        """x, y, width, height of instance j's input mask, grid pixels."""
        v, u = np.nonzero(self.grid_labels == self.ids[j])
        return int(u.min()), int(v.min()), int(u.max() - u.min()) + 1, int(v.max() - v.min()) + 1

    def full_pixel_index(self) -> np.ndarray:
        """(N,) int64 pixel of the input image of every kept point (v * W + u)."""
        if self.stride == 1:
            return self.pixel
        row, col = np.divmod(self.pixel, self.grid_width)
        return row * (self.stride * self.shape[1]) + col * self.stride

    def label_image(self, keep_dropped: bool = False) -> np.ndarray:
        """HxW uint16 of the kept pixels (stride x stride blocks), 0 elsewhere; without the
        dropped masks unless asked."""
        out = np.zeros(self.shape, np.uint16)
        values = np.repeat(np.asarray(self.ids, np.uint16), self.segments.count)
        pixel = self.full_pixel_index()
        if self.dropped and not keep_dropped:
            keep = ~np.isin(values, np.fromiter(self.dropped, np.uint16))
            pixel, values = pixel[keep], values[keep]
        paint(out, pixel, self.stride, values)
        return out


def clean_masks(points: np.ndarray, labels: np.ndarray, params: RegionParams | None = None,
                support_plane: np.ndarray | None = None) -> CleanedMasks:
    """The cleaning pass over every mask of ``labels`` (steps in the module docstring).

    :param points: HxWx3 float32 organised cloud, metres, camera optical frame, NaN invalid.
    :param labels: HxW integer instance ids, 0 = background (ids up to 65535).
    :param params: the pass's settings (:class:`RegionParams`; defaults when None).
    :param support_plane: (4,) (nx, ny, nz, d), n·p + d = 0 in the camera frame (e.g. the table):
        its points are removed from the masks.
    Bad arguments raise :class:`RegionError`.
    """
    params = params or RegionParams()
    pts = check_points(points)
    shape = pts.shape[:2]
    lab = check_labels(labels, shape)
    plane = check_plane(support_plane)
    s = int(params.stride)
    if s > 1:
        pts, lab = np.ascontiguousarray(pts[::s, ::s]), np.ascontiguousarray(lab[::s, ::s])
    ang = pixel_angle(pts)
    kernel = compiled.load(params.implementation)
    clean = _clean_numpy if kernel is None else compiled.bind(kernel)
    cleaned = CleanedMasks(shape=shape, stride=s, grid_labels=lab, pixel_angle=ang, support_plane=plane,
                           **(clean(pts, lab, plane, ang, params) or _empty()))
    for j in np.flatnonzero(cleaned.segments.count < params.min_pixels).tolist():
        c = cleaned.mask_counts(j)
        cleaned.dropped[cleaned.ids[j]] = (
            f"only {c.valid} of {c.mask} pixels have valid depth" if c.valid < params.min_pixels
            else f"fewer than {params.min_pixels} pixels left after cleaning")
    return cleaned


def _clean_numpy(pts, lab, plane, ang: float, params: RegionParams) -> dict | None:
    """Steps 1-5 in numpy: the fields of :class:`CleanedMasks` after its head (None: no masks)."""
    masks = _mask_pixels(lab)
    if masks is None:
        return None
    pixel0, ids, seg0, rows = masks
    P0 = gather_points(pts, pixel0)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(P0[0] + P0[1] + P0[2])
        front = P0[2] > 0
    use, uneroded = _eroded(lab, masks, finite & front, params)
    on_plane = np.zeros_like(use)
    if plane is not None:
        plane32 = plane.astype(np.float32)
        height = plane32[:3] @ P0
        height += plane32[3]
        with np.errstate(invalid="ignore"):
            on_plane = use & (height < params.plane_margin_m)
        use &= ~on_plane
    sel = np.flatnonzero(use)
    use[sel[depth_edges_at(pts, pixel0.take(sel), P0[2].take(sel), ang, params)]] = False
    use &= ~depth_outliers(P0[2], use, seg0, params)
    counts = np.stack([seg0.count, seg0.count_true(finite & front), seg0.count_true(finite & ~front),
                       seg0.count_true(on_plane)], axis=1)

    sel = np.flatnonzero(use)
    mixed = params.erosion_px == 0 or bool(uneroded.any())
    near = Neighbours(pixel0.take(sel), P0.take(sel, axis=1), seg0.where(use), lab.shape[1], ang, params, mixed)
    keep = near.dominant_clusters(near.inliers(params), params)
    kept = np.flatnonzero(keep)
    return dict(ids=ids.tolist(), counts=counts, uneroded=uneroded,
                **_collect(near.pixel.take(kept), near.P.take(kept, axis=1), near.normals(keep).take(kept, axis=1),
                           near.seg.where(keep), lab.shape[1], plane))


def _empty() -> dict:
    none = Segments(np.zeros(0))
    return dict(ids=[], segments=none, pixel=np.zeros(0, np.int64), points=np.zeros((0, 3), np.float32),
                normal_vectors=np.zeros((3, 0), np.float32), ends=np.zeros(0, np.int64), end_segments=none,
                sums=InstanceSums(np.zeros((3, 0)), np.zeros((0, 4, 4)), np.zeros((3, 0)), None,
                                  np.zeros((0, 2), np.int64)),
                counts=np.zeros((0, 4), np.int64), uneroded=np.zeros(0, bool))


def _mask_pixels(lab: np.ndarray):
    """(grid index of every labelled pixel, ids, their grouping, first and last row holding any),
    instance-major and row-major inside (a stable radix sort keeps rows in order); None without
    labels. Only the rows that hold labels are scanned."""
    W = lab.shape[1]
    in_mask = lab != 0
    rows = np.flatnonzero(in_mask.any(axis=1))
    if rows.size == 0:
        return None
    cand = np.flatnonzero(in_mask[rows[0]:rows[-1] + 1]) + int(rows[0]) * W
    cand_lab = lab.reshape(-1).take(cand)
    key = cand_lab.astype(np.uint8) if int(cand_lab.max()) < 256 else cand_lab
    order = np.argsort(key, kind="stable")
    pixel = cand.take(order)
    ids_sorted = cand_lab.take(order)
    heads = np.flatnonzero(ids_sorted[1:] != ids_sorted[:-1]) + 1
    ids = ids_sorted.take(np.r_[0, heads]).astype(np.int64)
    return pixel, ids, Segments(np.diff(np.r_[0, heads, pixel.size])), (int(rows[0]), int(rows[-1]))


def erode_labels(lab: np.ndarray, radius_px: int, rows: tuple[int, int] | None = None) -> np.ndarray:
    """HxW bool: pixels whose whole (2r+1)² window carries their own (non-zero) id, all ids in one
    pass (erode <= id <= dilate, so erode == dilate means both equal the id). ``rows``: the first
    and last row holding labels, to work on that band only."""
    import cv2

    lab = np.ascontiguousarray(lab, dtype=np.uint16)
    if radius_px <= 0:
        return lab > 0
    H = lab.shape[0]
    r0, r1 = (0, H) if rows is None else (max(rows[0] - radius_px, 0), min(rows[1] + radius_px + 1, H))
    k = np.ones((2 * radius_px + 1,) * 2, np.uint8)
    block = lab[r0:r1]
    out = np.zeros(lab.shape, bool)
    out[r0:r1] = (cv2.compare(cv2.erode(block, k), cv2.dilate(block, k), cv2.CMP_EQ) != 0) & (block > 0)
    return out


def _eroded(lab, masks, valid: np.ndarray, params: RegionParams) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: (valid mask pixels that survive the erosion, per instance whether it was too small
    to erode and is used whole)."""
    pixel, ids, seg, rows = masks
    if params.erosion_px <= 0:
        return valid.copy(), np.zeros(ids.size, bool)
    use = valid & erode_labels(lab, int(params.erosion_px), rows).reshape(-1).take(pixel)
    uneroded = seg.count_true(use) < params.min_pixels
    for j in np.flatnonzero(uneroded).tolist():
        sl = seg.slice(j)
        use[sl] = valid[sl]
    return use, uneroded


def depth_edges_at(pts: np.ndarray, pixel: np.ndarray, z: np.ndarray, ang: float, params: RegionParams) -> np.ndarray:
    """(n,) bool: which of the grid pixels ``pixel`` (depth ``z``, valid) have a 4-neighbour whose
    depth differs by more than the smaller of the two pixels' max(edge_jump_m, edge_jump_px · z ·
    ang). Neighbours without depth do not count (NaN compares False)."""
    H, W = pts.shape[:2]
    flat = pts.reshape(-1)
    jump_px = np.float32(params.edge_jump_px * ang)
    jump_m = np.float32(params.edge_jump_m)
    thr = np.maximum(z * jump_px, jump_m)
    col = pixel % W
    edge = np.zeros(pixel.size, bool)
    for step, inside in ((1, col < W - 1), (-1, col > 0), (W, pixel < (H - 1) * W), (-W, pixel >= W)):
        nb_z = flat.take(3 * np.where(inside, pixel + step, pixel) + 2)
        with np.errstate(invalid="ignore"):
            edge |= np.abs(nb_z - z) > np.minimum(thr, np.maximum(nb_z * jump_px, jump_m))
    return edge


def depth_outliers(z: np.ndarray, use: np.ndarray, seg: Segments, params: RegionParams) -> np.ndarray:
    """(M,) bool: used points whose depth lies farther from their mask's median depth than
    max(mad_k x 1.4826 x MAD, mad_floor_m), MAD the median absolute deviation (float64): what
    bleeds onto a surface behind or before the object yet joins it without a depth edge."""
    out = np.zeros(use.shape, bool)
    for j in range(seg.count.size):
        sl = seg.slice(j)
        at = np.flatnonzero(use[sl])
        if at.size:
            zj = z[sl].take(at).astype(np.float64)
            dev = np.abs(zj - np.median(zj))
            out[sl.start + at] = dev > max(params.mad_k * 1.4826 * float(np.median(dev)), params.mad_floor_m)
    return out


def _collect(pixel: np.ndarray, P: np.ndarray, normal_vectors: np.ndarray, seg: Segments, width: int,
             plane: np.ndarray | None) -> dict:
    """Step 5: the kept points' fields of :class:`CleanedMasks` and their per-instance sums."""
    k = seg.count.size
    cnt = np.maximum(seg.count, 1)
    mean = seg.sum(P) / cnt  # (3, k)
    # centred in float64, as the kernel does: float32 sums of near-degenerate spreads move PCA
    # axes by ~1e-4
    q = np.empty((4, P.shape[1]), dtype=np.float64)
    np.subtract(P, seg.repeat(mean), out=q[:3])
    np.multiply(q[0], q[0], out=q[3])
    q[3] += q[1] * q[1]
    q[3] += q[2] * q[2]
    gram = np.zeros((k, 4, 4), dtype=np.float64)
    for j, a, b in zip(range(k), seg.start.tolist(), (seg.start + seg.count).tolist()):
        if b > a:
            np.matmul(q[:, a:b], q[:, a:b].T, out=gram[j])
    # the mean camera-facing unit normal: its length is the normals' coherence (1: one plane,
    # ~0: no dominant normal)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_len = np.float32(-1.0) / norm3(normal_vectors)
    inv_len[~np.isfinite(inv_len)] = 0.0
    heights = None
    if plane is not None:
        plane32 = plane.astype(np.float32)
        h = plane32[:3] @ P
        h += plane32[3]
        heights = np.stack([seg.reduce(np.minimum, h, np.nan), seg.reduce(np.maximum, h, np.nan)], axis=1)
    # the two ends of every row run: a run's inner points lie between its ends on the pixel grid,
    # so the ends hold each instance's leftmost and rightmost columns and (on a smooth surface) its
    # footprint hull on the support plane
    adjacent = (pixel[1:] - pixel[:-1] == 1) & (pixel[1:] % width != 0)
    adjacent[seg.start[(seg.start > 0) & (seg.start < pixel.size)] - 1] = False
    end = np.ones(pixel.size, dtype=bool)
    end[1:-1] = ~(adjacent[:-1] & adjacent[1:])
    seg_e = seg.where(end)
    ends = np.flatnonzero(end)
    col_e = pixel.take(ends) % width
    cols = np.stack([seg_e.reduce(np.minimum, col_e, 0), seg_e.reduce(np.maximum, col_e, 0)], axis=1)
    sums = InstanceSums(mean, gram / cnt[:, None, None], seg.sum(normal_vectors * inv_len) / cnt, heights, cols)
    return dict(segments=seg, pixel=pixel, points=interleave(P), normal_vectors=normal_vectors, ends=ends,
                end_segments=seg_e, sums=sums)
