"""Mask–depth fusion: clean every instance mask against the metric depth of the same frame.

Masks come from colour (SAM, a VLM, another node) and depth comes from a network or a sensor; at
object borders they disagree, and depth there is the worst (mixed "flying" pixels between the object
and what lies behind it). Per mask, all masks at once:

1. erode the border by ``erosion_px`` (pixels whose neighbourhood holds another id or background);
   a mask that erosion would shrink below ``min_pixels`` is kept uneroded (small objects);
2. drop depth-discontinuity pixels: a 4-neighbour whose depth differs by more than
   max(``edge_jump_m``, ``edge_jump_px`` pixel footprints) marks a pixel on an occlusion edge;
3. reject per-mask depth outliers: |z - median| > max(``mad_k`` x 1.4826 x MAD, ``mad_floor_m``);
4. keep the dominant 3-D cluster: connected components of the remaining pixels over grid edges
   shorter than the cluster gap (one sparse-graph call for all masks); the largest per mask, plus
   any other holding at least ``secondary_fraction`` of it (an object split by an occluder);
5. drop masks left with fewer than ``min_pixels`` pixels.

The output label image stays aligned with the depth image (0 = background, value = the input id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Segmentation, SegmentationError, check_points, join_messages
from ..regions import pixel_angle
from .geometric import PAD, grid_components, pad_flat, padded_cloud, valid_points


@dataclass(frozen=True)
class FusionParams:
    """Settings of :func:`fuse_masks` (ROS parameters ``segmentation.fusion.*``)."""

    erosion_px: int = 2
    edge_jump_m: float = 0.01
    edge_jump_px: float = 8.0
    mad_k: float = 3.5
    mad_floor_m: float = 0.01
    cluster_gap_m: float = 0.008
    cluster_gap_px: float = 4.0
    secondary_fraction: float = 0.5
    min_pixels: int = 50

    def __post_init__(self) -> None:
        if int(self.erosion_px) < 0 or int(self.min_pixels) < 1:
            raise SegmentationError(
                f"fusion needs erosion_px >= 0 and min_pixels >= 1, got {self.erosion_px!r}, {self.min_pixels!r}")
        for name in ("edge_jump_m", "edge_jump_px", "mad_k", "mad_floor_m", "cluster_gap_m",
                     "cluster_gap_px", "secondary_fraction"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise SegmentationError(f"fusion {name} must be a finite number >= 0, got {v!r}")


@dataclass
class FusionResult:
    """The cleaned segmentation, and per input id the pixels before/after and why a mask went."""

    segmentation: Segmentation
    pixels_in: dict[int, int] = field(default_factory=dict)
    pixels_out: dict[int, int] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)


def erode_labels(labels: np.ndarray, radius_px: int) -> np.ndarray:
    """HxW bool: pixels whose whole (2r+1)-disc carries their own id (all ids in one pass: the
    grey-level erosion and dilation agree exactly there)."""
    import cv2

    if radius_px <= 0:
        return labels > 0
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
    lab = labels.astype(np.uint16, copy=False)
    return (lab > 0) & (cv2.erode(lab, k) == lab) & (cv2.dilate(lab, k) == lab)


def depth_edges(z: np.ndarray, jump_m: float, jump_px: float, pix: float) -> np.ndarray:
    """HxW bool: pixels with a 4-neighbour whose depth differs by more than max(jump_m, jump_px ·
    z · pix) (an occlusion edge or a flying pixel). Invalid neighbours do not count."""
    thr = np.maximum(jump_m, jump_px * pix * np.nan_to_num(z))
    edge = np.zeros(z.shape, bool)
    with np.errstate(invalid="ignore"):
        dx = np.abs(np.diff(z, axis=1)) > np.minimum(thr[:, 1:], thr[:, :-1])
        dy = np.abs(np.diff(z, axis=0)) > np.minimum(thr[1:], thr[:-1])
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    return edge


def _per_label_median(values: np.ndarray, lab: np.ndarray, n: int) -> np.ndarray:
    """(n,) median of ``values`` per label (NaN for absent labels); one lexsort, no loop."""
    order = np.lexsort((values, lab))
    ls, vs = lab[order], values[order]
    counts = np.bincount(ls, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    med = np.full(n, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    med[has] = 0.5 * (vs[lo] + vs[hi])
    return med


def fuse_masks(segmentation: Segmentation, points: np.ndarray, params: FusionParams | None = None) -> FusionResult:
    """Clean every mask of ``segmentation`` against the organised cloud of the same frame.

    :param segmentation: masks aligned with the depth image (HxW).
    :param points: HxWx3 float32 metres, camera optical frame, NaN invalid (depth = ``points[..., 2]``).
    :returns: :class:`FusionResult`; its segmentation keeps the input ids, names and scores of the
        masks that survive, and its message lists the masks dropped and why.
    """
    params = params or FusionParams()
    pts = check_points(points)
    labels = segmentation.labels
    if labels.shape != pts.shape[:2]:
        raise SegmentationError(
            f"masks are {labels.shape[1]}x{labels.shape[0]} but the cloud is {pts.shape[1]}x{pts.shape[0]}")
    h, w = labels.shape
    counts_in = np.bincount(labels.ravel())
    ids = [int(i) for i in np.flatnonzero(counts_in) if i != 0]
    pixels_in = {i: int(counts_in[i]) for i in ids}
    if not ids:
        return FusionResult(segmentation.with_labels(labels), pixels_in)
    n = len(counts_in)
    z = pts[..., 2]
    valid = valid_points(pts)
    keep = (labels > 0) & valid

    # 1. erosion, per mask: masks that would vanish stay uneroded
    eroded = erode_labels(labels, int(params.erosion_px)) & valid
    left = np.bincount(labels[eroded], minlength=n)
    small = left < params.min_pixels
    keep &= eroded | small[labels]

    # 2. depth discontinuities
    pix = pixel_angle(pts)
    keep &= ~depth_edges(z, params.edge_jump_m, params.edge_jump_px, pix)

    # 3. per-mask depth outliers (median / MAD)
    lab_k = labels[keep].astype(np.int64)
    z_k = z[keep].astype(np.float64)
    if lab_k.size:
        med = _per_label_median(z_k, lab_k, n)
        dev = np.abs(z_k - med[lab_k])
        mad = _per_label_median(dev, lab_k, n)
        ok = dev <= np.maximum(params.mad_k * 1.4826 * mad[lab_k], params.mad_floor_m)
        keep[keep] = ok

    # 4. dominant 3-D cluster per mask
    if keep.any():
        row = w + 2 * PAD
        P = padded_cloud(pts)
        lab_pad = pad_flat(labels)
        idx = np.flatnonzero(pad_flat(keep))
        gap = np.maximum(params.cluster_gap_m, params.cluster_gap_px * pix * np.nan_to_num(P[:, 2]))
        comp = grid_components(idx, P, gap.astype(np.float32), row, labels=lab_pad)
        comp_size = np.bincount(comp)
        comp_label = np.zeros(len(comp_size), np.int64)
        comp_label[comp] = lab_pad[idx]
        largest = np.zeros(n, np.int64)
        np.maximum.at(largest, comp_label, comp_size)
        good = comp_size >= params.secondary_fraction * largest[comp_label]
        good |= comp_size == largest[comp_label]
        flat_keep = np.zeros(len(P), bool)
        flat_keep[idx] = good[comp]
        keep = flat_keep.reshape(h + 2 * PAD, w + 2 * PAD)[PAD:-PAD, PAD:-PAD]

    # 5. minimum size
    out = np.where(keep, labels, 0).astype(np.uint16)
    counts_out = np.bincount(out.ravel(), minlength=n)
    too_few = (counts_out > 0) & (counts_out < params.min_pixels)
    too_few[0] = False
    if too_few.any():
        out[too_few[out]] = 0
        counts_out[too_few] = 0
    n_valid = np.bincount(labels[valid], minlength=n)
    dropped = {}
    for i in ids:
        if counts_out[i] == 0:
            dropped[i] = (f"only {int(n_valid[i])} of {pixels_in[i]} pixels have valid depth"
                          if n_valid[i] < params.min_pixels
                          else f"fewer than {params.min_pixels} pixels left after cleaning")
    notes = [f"mask {segmentation.names.get(i, f'id {i}')!r} dropped: {why}" for i, why in dropped.items()]
    seg = segmentation.with_labels(out, message=join_messages(segmentation.message, *notes))
    return FusionResult(seg, pixels_in, {i: int(counts_out[i]) for i in ids}, dropped)
