"""Instance masks ∩ metric depth → cleaned region clouds → graspable-region descriptors.

What a grasp planner consumes: per instance a cleaned cloud (camera optical frame, metres), an
oriented box, an approach direction, the width across the gripper and a verdict; plus the organised
scene cloud, an instance label image aligned with depth, and PLY files. Read top-down:

- :mod:`.params`: the settings (:class:`RegionParams`, :class:`GripperParams`) and input checks;
- :mod:`.cleaning`: the one cleaning pass, masks ∩ organised cloud → the points each mask really
  covers (erosion, validity, depth edges, outliers, dominant cluster). Mask fusion
  (:func:`.fusion.fuse_masks`: the masks of a frame as one cleaned label image) and region
  extraction share it;
  :mod:`.neighbours` holds its grid-neighbour steps, :mod:`.compiled` its C++ implementation;
- :mod:`.geometry`: per region, moments, box (plane / sphere / PCA), approach and width;
- :mod:`.verdict`: whether the gripper can take it, and why;
- :mod:`.extract`: :func:`extract_regions` (= clean, then :func:`describe_regions`);
- :mod:`.region`: the :class:`Region` result; :mod:`.cloud`: scene cloud, normals, label image, PLY;
- :mod:`.segments`: per-point arrays grouped by instance, the layout everything above works on.

Everything runs on the *organised* cloud (HxWx3, NaN invalid), so neighbourhoods come from the pixel
grid instead of a k-d tree, and the per-point work is done for all instances at once. ROS message
conversion lives in :mod:`depth_perception.ros.region_messages`.
"""

from __future__ import annotations

from ..grid import pixel_angle
from .cleaning import CleanedMasks, clean_masks
from .cloud import (
    SceneCloud,
    label_image,
    organized_normals,
    regions_cloud,
    scene_cloud,
    write_region_plys,
    write_scene_ply,
)
from .compiled import implementation_in_use, kernel_available
from .extract import describe_regions, extract_regions
from .params import REGION_IMPLEMENTATIONS, GripperParams, RegionError, RegionParams
from .region import Region
from .verdict import Verdict

__all__ = [
    "REGION_IMPLEMENTATIONS",
    "CleanedMasks",
    "GripperParams",
    "Region",
    "RegionError",
    "RegionParams",
    "SceneCloud",
    "Verdict",
    "clean_masks",
    "describe_regions",
    "extract_regions",
    "implementation_in_use",
    "kernel_available",
    "label_image",
    "organized_normals",
    "pixel_angle",
    "regions_cloud",
    "scene_cloud",
    "write_region_plys",
    "write_scene_ply",
]
