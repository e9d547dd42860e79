"""Cleaned masks → one :class:`Region` per instance, with all descriptors and a verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..grid import plane_basis
from .cleaning import CleanedMasks, clean_masks
from .geometry import Footprint, Moments, degeneracies, fit_box, grasp, moments
from .params import GripperParams, RegionParams, check_rgb
from .region import Region
from .segments import gather_rgb
from .verdict import Extent, degenerate, judge


def extract_regions(
    points: np.ndarray,
    labels: np.ndarray,
    gripper: GripperParams | None = None,
    params: RegionParams | None = None,
    rgb: np.ndarray | None = None,
    names: dict[int, str] | None = None,
    scores: dict[int, float] | None = None,
    support_plane: np.ndarray | None = None,
) -> list[Region]:
    """One :class:`Region` per non-zero id of ``labels``, in increasing id order.

    :param points: HxWx3 float32 organised cloud, metres, camera optical frame, NaN invalid.
    :param labels: HxW integer instance ids, 0 = background (ids up to 65535).
    :param gripper, params: verdict limits and cleaning / box settings (defaults when None).
    :param rgb: HxWx3 uint8 colours for the region clouds.
    :param names, scores: per id class name / segmentation score (default "" and 1.0).
    :param support_plane: (4,) (nx, ny, nz, d), n·p + d = 0 in the camera frame (e.g. the table);
        enables gravity-aligned boxes and removal of table points.
    Bad arguments raise :class:`RegionError`; bad *data* (no depth, one pixel, behind the camera,
    degenerate point sets) never raises: the region gets a verdict and a reason.
    """
    params = params or RegionParams()
    cleaned = clean_masks(points, labels, params, support_plane)
    return describe_regions(cleaned, gripper, params, rgb=rgb, names=names, scores=scores)


def describe_regions(
    cleaned: CleanedMasks,
    gripper: GripperParams | None = None,
    params: RegionParams | None = None,
    rgb: np.ndarray | None = None,
    names: dict[int, str] | None = None,
    scores: dict[int, float] | None = None,
    keep_dropped: bool = True,
) -> list[Region]:
    """The regions of masks cleaned by :func:`.cleaning.clean_masks` (with the same ``params``);
    without the masks the pass dropped when ``keep_dropped`` is False (as fusion does)."""
    gripper = gripper or GripperParams()
    params = params or RegionParams()
    colours = check_rgb(rgb, cleaned.shape)
    batch = _Batch.of(cleaned, colours, params)
    names, scores = names or {}, scores or {}
    regions = []
    for j, rid in enumerate(cleaned.ids):
        if keep_dropped or rid not in cleaned.dropped:
            regions.append(_region(cleaned, batch, j, str(names.get(rid, "")), float(scores.get(rid, 1.0)),
                                   gripper, params))
    return regions


@dataclass(frozen=True)
class _Batch:
    """What every region needs of the batch: full-resolution pixels, colours, moments, footprints."""

    pixel: np.ndarray  # (N,) full-resolution pixel index
    colours: np.ndarray | None  # (N, 3) uint8
    moments: list[Moments]
    footprints: list[Footprint] | None  # with a support plane

    @staticmethod
    def of(c: CleanedMasks, colours: np.ndarray | None, params: RegionParams) -> _Batch:
        pixel = c.full_pixel_index()
        mom = moments(c.sums.mean, c.sums.gram, c.segments.count, params)
        plane, heights = c.support_plane, c.sums.heights
        return _Batch(pixel=pixel, colours=None if colours is None else gather_rgb(colours, pixel), moments=mom,
                      footprints=None if plane is None or heights is None else
                      _footprints(c, plane, heights, mom, params))


def _footprints(c: CleanedMasks, plane: np.ndarray, heights: np.ndarray, mom: list[Moments],
                params: RegionParams) -> list[Footprint]:
    """Per instance: its row-run ends in the support plane's basis, its height range above the
    plane and the pads of its footprint rectangle (``RegionParams.edge_pad_px``)."""
    basis = plane_basis(plane[:3])
    uv = basis[:, :2].T.astype(np.float32) @ c.points.take(c.ends, axis=0).T
    seg_e = c.end_segments
    out = []
    for j, (a, n) in enumerate(zip(seg_e.start.tolist(), seg_e.count.tolist())):
        foot = float(mom[j].mean[2]) * c.pixel_angle
        eroded = 0 if c.uneroded[j] else params.erosion_px
        lo, hi = heights[j].tolist()
        out.append(Footprint(plane, uv[:, a:a + n], basis, (lo, hi),
                             (params.edge_pad_px * foot, (params.edge_pad_px + eroded) * foot)))
    return out


_NAN3 = (math.nan,) * 3


def _region(c: CleanedMasks, b: _Batch, j: int, label: str, score: float, gripper: GripperParams,
            params: RegionParams) -> Region:
    """Instance j's region from the batched measurements."""
    sl = c.segments.slice(j)
    m = b.moments[j]
    plane = c.support_plane
    head: dict[str, Any] = dict(
        id=int(c.ids[j]), label=label, score=score, roi=_roi(c, j), shape=c.shape, pixel_index=b.pixel[sl],
        points=c.points[sl], colors=None if b.colours is None else b.colours[sl],
        normal_vectors=c.normal_vectors[:, sl], support_plane=plane, stride=c.stride)
    counts = c.mask_counts(j)
    if not m.n:
        nan3 = np.array(_NAN3)
        verdict, reason = judge(0, nan3, math.nan, counts, plane is not None, gripper)
        return Region(**head, centroid=nan3, surface_centroid=nan3.copy(), box_center=nan3,
                      box_rotation=np.full((3, 3), np.nan), box_size=nan3.copy(), box_method="none",
                      approach=nan3.copy(), closing_axis=nan3.copy(), grasp_width=math.nan,
                      verdict=verdict, reason=reason, notes=[])
    notes = degeneracies(m, params)
    box = fit_box(c.points[sl].T, m, None if b.footprints is None else b.footprints[j], params, notes)
    g = grasp(box, c.sums.mean_normal[:, j], m.mean, notes)
    verdict, reason = judge(m.n, box.center, g.width, counts, plane is not None, gripper,
                            degenerate(_extent(c, j, m), g.width, params))
    if notes:
        reason += "; " + "; ".join(notes)
    return Region(**head, centroid=box.center, surface_centroid=m.mean, box_center=box.center,
                  box_rotation=box.rotation, box_size=box.size, box_method=box.method, approach=g.approach,
                  closing_axis=g.closing_axis, grasp_width=g.width, verdict=verdict, reason=reason, notes=notes)


def _grid_box(c: CleanedMasks, j: int) -> tuple[int, int, int, int]:
    """x, y, width, height on the cleaning grid: of the kept points, or of the input mask without any."""
    a, n = int(c.segments.start[j]), int(c.segments.count[j])
    if not n:
        return c.mask_roi(j)
    W = c.grid_width  # rows come sorted within an instance
    (x0, x1), y0 = c.sums.cols[j].tolist(), int(c.pixel[a]) // W
    return x0, y0, x1 - x0 + 1, int(c.pixel[a + n - 1]) // W - y0 + 1


def _extent(c: CleanedMasks, j: int, m: Moments) -> Extent:
    """Instance j's pixel span and principal spreads, for :func:`.verdict.degenerate`."""
    _, _, w, h = _grid_box(c, j)
    s0, s1, s2 = (math.sqrt(max(v, 0.0)) for v in m.eigval[::-1].tolist())
    return Extent(rows=h, cols=w, spread_m=(s0, s1, s2), depth_m=float(m.mean[2]), pixel_angle=c.pixel_angle)


def _roi(c: CleanedMasks, j: int) -> tuple[int, int, int, int]:
    """x, y, width, height in input pixels: of the kept points, or of the input mask without any."""
    x0, y0, w, h = _grid_box(c, j)
    s, (H_full, W_full) = c.stride, c.shape
    return x0 * s, y0 * s, min(w * s, W_full - x0 * s), min(h * s, H_full - y0 * s)
