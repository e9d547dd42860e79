"""Whether the gripper can take a region, and a reason a person can read."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .params import GripperParams


class Verdict(enum.IntEnum):
    """Matches the VERDICT_* constants of depth_perception_msgs/GraspableRegion."""

    GRASPABLE = 0
    TOO_WIDE = 1
    TOO_FEW_POINTS = 2
    OUT_OF_RANGE = 3


@dataclass(frozen=True)
class MaskCounts:
    """Pixels of one input mask: all, with valid depth, behind the camera, on the support plane.
    Only read to explain a region with too few points."""

    mask: int
    valid: int
    behind: int
    on_plane: int


def judge(n: int, centre, width: float, counts: MaskCounts, has_plane: bool,
          gripper: GripperParams) -> tuple[Verdict, str]:
    """The verdict of a region of ``n`` points, box centre ``centre`` (3,) and ``width`` across the
    closing axis; ``counts`` of its input mask explain a region with too few points."""
    if n < gripper.min_points:
        behind_only = counts.valid == 0 and counts.behind > 0
        return (Verdict.OUT_OF_RANGE if behind_only else Verdict.TOO_FEW_POINTS), _too_few(n, counts, has_plane, gripper)
    z = float(centre[2])
    if not (gripper.min_range_m <= z <= gripper.max_range_m):
        where = "behind the camera" if z <= 0 else f"at {z:.2f} m depth"
        return Verdict.OUT_OF_RANGE, (
            f"centroid {where}, outside the range {gripper.min_range_m:.2f}-{gripper.max_range_m:.2f} m"
        )
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
