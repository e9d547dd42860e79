"""Settings of region extraction and the checks of its inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..grid import check_cloud, orient_plane
from ..params import check_fields, param


#: values of RegionParams.implementation
REGION_IMPLEMENTATIONS = ("auto", "compiled", "numpy")


class RegionError(ValueError):
    """Input that region extraction cannot use; the message names the argument and the problem."""


@dataclass(frozen=True)
class GripperParams:
    """What the gripper can take. Range is the depth z of the region's centroid (camera frame)."""

    max_opening_m: float = param(0.08, "widest graspable width, metres", name="max_opening",
                                 minimum=0.001, maximum=2.0)
    min_points: int = param(30, "fewest points for a graspable region", minimum=1,
                            maximum=1_000_000, step=1)
    min_range_m: float = param(0.1, "nearest graspable centroid, metres", name="min_range",
                               minimum=0.0, maximum=100.0)
    max_range_m: float = param(2.0, "farthest graspable centroid, metres", name="max_range",
                               minimum=0.0, maximum=100.0)

    def __post_init__(self) -> None:
        check_fields(self, "gripper", RegionError)
        if not (np.isfinite(self.max_opening_m) and self.max_opening_m > 0):
            raise RegionError(f"gripper max_opening_m must be > 0, got {self.max_opening_m!r}")
        if int(self.min_points) < 1:
            raise RegionError(f"gripper min_points must be >= 1, got {self.min_points!r}")
        if not (0 <= self.min_range_m < self.max_range_m):
            raise RegionError(
                f"gripper range needs 0 <= min_range_m < max_range_m, got {self.min_range_m} and "
                f"{self.max_range_m}"
            )


@dataclass(frozen=True)
class RegionParams:
    """Settings of the cleaning pass and of the box fit. ``*_px`` values are in pixel footprints
    (z · pixel angle): a threshold in them scales with depth like the sensor's own resolution."""

    #: work on every stride-th pixel in u and v (stride² fewer points; the label image and masks
    #: are filled back in stride x stride blocks).
    stride: int = param(1, "pixel decimation inside regions", minimum=1, maximum=8, step=1)
    #: pixels (of the strided grid) eroded off every mask boundary: colour masks bleed over object
    #: borders, and depth there mixes the object with what lies behind it. Masks that would keep
    #: fewer than ``min_pixels`` valid pixels are used uneroded.
    erosion_px: int = param(1, "mask border removed before measuring, px", minimum=0, maximum=50,
                            step=1)
    #: a pixel with a 4-neighbour (of any mask or none) whose depth differs by more than
    #: max(edge_jump_m, edge_jump_px footprints) lies on an occlusion edge or is a flying pixel.
    edge_jump_m: float = 0.01
    edge_jump_px: float = 8.0
    #: a pixel whose depth lies farther from its mask's median depth than max(mad_k x 1.4826 x MAD,
    #: mad_floor_m) is another surface (MAD: the mask's median absolute deviation of depth).
    mad_k: float = 3.5
    mad_floor_m: float = 0.01
    #: grid neighbourhood of the statistical outlier removal: 4 or 8.
    outlier_k: int = 4
    outlier_std_ratio: float = param(2.0, "statistical outlier removal threshold, std devs",
                                     minimum=0.1, maximum=100.0)
    #: never call a point an outlier when its mean neighbour distance is below this (a clean plane
    #: has a tiny spread, and mean + k·std would otherwise trim its ordinary points).
    outlier_min_px: float = 3.0
    #: grid neighbours closer than max(cluster_gap_m, cluster_gap_px · footprint) are connected.
    cluster_gap_m: float = param(0.01, "depth gap that splits a region's clusters, metres",
                                 minimum=0.0001, maximum=1.0)
    cluster_gap_px: float = 6.0
    #: other components at least this fraction of the largest join it when they come within the
    #: gap of it in 3-D (an object split by an occluder).
    min_cluster_fraction: float = 0.1
    #: points closer than this to the support plane (or below it) are the table, not the object.
    plane_margin_m: float = 0.005
    #: a mask left with fewer pixels than this after cleaning is dropped by fusion (and is too
    #: small to erode).
    min_pixels: int = 50
    #: a region whose lowest point is below this fraction of its top height stands on the plane,
    #: so its box reaches down to the plane.
    ground_gap_ratio: float = 0.5
    #: the footprint rectangle on the support plane is pushed out by edge_pad_px pixel footprints
    #: per side (sampled pixel centres lie half a pixel inside the true outline on average), and the
    #: sides facing away from the camera by erosion_px more: their outline is the top face's far
    #: edge, which erosion ate; near sides are outlined by the side faces, whose erosion is at the
    #: bottom, above the same footprint line.
    edge_pad_px: float = 0.5
    #: sphere completion when the RMS distance to the fitted sphere is below this fraction of its
    #: radius (0 disables it).
    sphere_fit_tol: float = 0.03
    #: a principal spread below this fraction of the largest marks a planar / linear point set.
    degenerate_ratio: float = 0.02
    #: a width across the closing axis below this many pixel footprints (at the region's depth)
    #: is not resolved by the depth pixels: the region is DEGENERATE (see verdict.degenerate).
    min_width_px: float = param(2.5, "narrowest width across the gripper's closing axis that is "
                                "trusted, in pixel footprints at the region's depth; narrower "
                                "regions are degenerate (never graspable)", minimum=0.0,
                                maximum=100.0)
    #: "auto": the compiled kernel (depth_perception/_regions_kernel.cpp) when it is built, else
    #: numpy; "compiled" or "numpy" to insist on one (same points).
    implementation: str = param("auto", "auto: the compiled kernel when it is built, else numpy; "
                                "compiled or numpy to insist on one (same results; see the "
                                "`regions implementation` diagnostic)",
                                choices=REGION_IMPLEMENTATIONS)

    def __post_init__(self) -> None:
        check_fields(self, "regions", RegionError)
        for name in ("stride", "min_pixels"):
            if int(getattr(self, name)) < 1:
                raise RegionError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.erosion_px) < 0:
            raise RegionError(f"erosion_px must be >= 0, got {self.erosion_px!r}")
        if self.outlier_k not in (4, 8):
            raise RegionError(f"outlier_k must be 4 or 8 (grid neighbourhood), got {self.outlier_k!r}")
        for name in ("edge_jump_m", "edge_jump_px", "mad_k", "mad_floor_m", "outlier_std_ratio", "outlier_min_px", "cluster_gap_m",
                     "cluster_gap_px", "plane_margin_m", "ground_gap_ratio", "edge_pad_px", "sphere_fit_tol",
                     "degenerate_ratio", "min_width_px", "min_cluster_fraction"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise RegionError(f"{name} must be a finite number >= 0, got {value!r}")


# -- input checks -----------------------------------------------------------------------------------


def check_points(points: np.ndarray) -> np.ndarray:
    """HxWx3 floating-point organised cloud → float32 (no copy when it is already)."""
    return check_cloud(points, RegionError)


def check_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """HxW integer instance ids → contiguous uint16."""
    lab = np.asarray(labels)
    if lab.shape != shape:
        raise RegionError(f"labels shape {lab.shape} does not match the points' HxW {shape}")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise RegionError(f"labels must be an integer instance-id image, got dtype {lab.dtype}")
    if lab.dtype != np.uint16:
        if lab.size and (int(lab.min()) < 0 or int(lab.max()) > 65535):
            raise RegionError(
                f"label ids must be in 0..65535 (uint16 label image), got {lab.min()}..{lab.max()}"
            )
        lab = lab.astype(np.uint16)
    return np.ascontiguousarray(lab)


def check_rgb(rgb: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if rgb is None:
        return None
    c = np.asarray(rgb)
    if c.shape != (*shape, 3) or c.dtype != np.uint8:
        raise RegionError(f"rgb must be HxWx3 uint8 matching {shape}, got {c.shape} {c.dtype}")
    return c


def check_plane(plane: np.ndarray | None) -> np.ndarray | None:
    """(4,) plane → unit normal pointing to the camera's side (d > 0 when the camera is above it)."""
    if plane is None:
        return None
    p = np.asarray(plane, dtype=np.float64).reshape(-1)
    if p.size != 4 or not np.isfinite(p).all() or np.linalg.norm(p[:3]) < 1e-9:
        raise RegionError(f"support_plane must be finite (nx, ny, nz, d) with a non-zero normal, got {plane!r}")
    return orient_plane(p)
