"""Whether the gripper can take a region, and a reason a person can read."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .params import GripperParams, RegionParams


class Verdict(enum.IntEnum):
    """Matches the VERDICT_* constants of depth_perception_msgs/GraspableRegion."""

    GRASPABLE = 0
    TOO_WIDE = 1
    TOO_FEW_POINTS = 2
    OUT_OF_RANGE = 3
    #: the points do not span a solid the grasp geometry can be measured on (:func:`degenerate`)
    DEGENERATE = 4


@dataclass(frozen=True)
class MaskCounts:
    """Pixels of one input mask: all, with valid depth, behind the camera, on the support plane.
    Only read to explain a region with too few points."""

    mask: int
    valid: int
    behind: int
    on_plane: int


@dataclass(frozen=True)
class Extent:
    """How far one region's kept points reach, as the regions code measures it anyway.

    ``rows`` and ``cols``: pixel rows and columns spanned (of the grid the cleaning ran on: every
    ``stride``-th pixel); ``spread_m``: standard deviations along the principal axes, largest first,
    metres; ``depth_m``: depth z of the points' mean; ``pixel_angle``: radians per grid pixel.
    """

    rows: int
    cols: int
    spread_m: tuple[float, float, float]
    depth_m: float
    pixel_angle: float

    @property
    def footprint_m(self) -> float:
        """Width of one grid pixel at the region's depth, metres: the lateral resolution there."""
        return abs(self.depth_m) * self.pixel_angle


def degenerate(extent: Extent, width_m: float, params: RegionParams) -> str:
    """Why a region's points are too degenerate to trust a grasp on them, or "" when they are not.

    Checked in this order, each from geometry the region's description computes anyway:

    1. the kept points span one pixel row or one pixel column (of the cleaning grid): a line in
       the image, so the surface is seen edge-on or the mask is a scratch, and nothing across it
       was observed;
    2. the points lie on a line in 3-D: the second principal spread is below
       ``params.degenerate_ratio`` of the largest (the box width and the surface normal are not
       observable, see :func:`.geometry.degeneracies`);
    3. the width across the gripper's closing axis is below ``params.min_width_px`` pixel
       footprints at the region's depth (or not finite): the depth pixels cannot resolve it, so the
       "fits the opening" judgement would rest on sampling noise. Planar points (third spread below
       ``degenerate_ratio`` of the largest) make this a planar sliver.

    A planar patch seen face-on (the top of a box seen from above) is not degenerate by itself:
    the gripper approaches along its normal and closes across the patch, whose width is observed.
    """
    s0, s1, s2 = extent.spread_m
    if extent.rows <= 1 or extent.cols <= 1:
        if extent.rows <= 1 and extent.cols <= 1:
            return "points span a single pixel"
        if extent.rows <= 1:
            return f"points span one pixel row ({extent.cols} px long): nothing across it is observed"
        return f"points span one pixel column ({extent.rows} px long): nothing across it is observed"
    if not s0 > 0 or s1 < params.degenerate_ratio * s0:
        return f"points lie on a line in 3-D ({s1 * 100:.2f} cm spread across it, {s0 * 100:.1f} cm along it)"
    floor = params.min_width_px * extent.footprint_m
    if not (math.isfinite(width_m) and width_m >= floor):
        kind = "a planar sliver" if s2 < params.degenerate_ratio * s0 else "a sliver"
        shown = f"{width_m * 100:.1f} cm" if math.isfinite(width_m) else "no width"
        return (f"{shown} across the closing axis, under {params.min_width_px:g} pixel footprints "
                f"({floor * 100:.1f} cm at {extent.depth_m:.2f} m): {kind}")
    return ""


def judge(n: int, centre, width: float, counts: MaskCounts, has_plane: bool,
          gripper: GripperParams, degenerate_reason: str = "") -> tuple[Verdict, str]:
    """The verdict of a region of ``n`` points, box centre ``centre`` (3,) and ``width`` across the
    closing axis; ``counts`` of its input mask explain a region with too few points;
    ``degenerate_reason`` (from :func:`degenerate`; "" when the points span a solid) makes an
    in-range region DEGENERATE before its width is compared with the gripper: a degenerate width
    means nothing."""
    if n < gripper.min_points:
        behind_only = counts.valid == 0 and counts.behind > 0
        return (Verdict.OUT_OF_RANGE if behind_only else Verdict.TOO_FEW_POINTS), _too_few(n, counts, has_plane, gripper)
    z = float(centre[2])
    if not (gripper.min_range_m <= z <= gripper.max_range_m):
        where = "behind the camera" if z <= 0 else f"at {z:.2f} m depth"
        return Verdict.OUT_OF_RANGE, (
            f"centroid {where}, outside the range {gripper.min_range_m:.2f}-{gripper.max_range_m:.2f} m"
        )
    if degenerate_reason:
        return Verdict.DEGENERATE, degenerate_reason
    if width > gripper.max_opening_m:
        return Verdict.TOO_WIDE, (
            f"{width * 100:.1f} cm across the closing axis, gripper opens {gripper.max_opening_m * 100:.1f} cm"
        )
    return Verdict.GRASPABLE, (
        f"{width * 100:.1f} cm across the closing axis fits the {gripper.max_opening_m * 100:.1f} cm opening"
    )


def _too_few(n: int, counts: MaskCounts, has_plane: bool, gripper: GripperParams) -> str:
    if counts.valid == 0:
        if counts.behind:
            return f"all {counts.behind} points with depth lie behind the camera (z <= 0)"
        return f"no valid depth inside the mask ({counts.mask} pixels, all NaN)"
    why = f"{n} points after cleaning (mask {counts.mask} px, {counts.valid} with depth"
    if has_plane and counts.on_plane:
        why += f", {counts.on_plane} on the support plane"
    return why + f"); need {gripper.min_points}"
