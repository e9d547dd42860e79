"""What a grasp planner gets per instance: :class:`Region`."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from .segments import interleave, orient_normals_soa
from .verdict import Verdict


@dataclass
class Region:
    """One graspable-region candidate. Points are camera optical frame (REP 103), metres.

    ``box_rotation`` columns are the box axes (right-handed); ``box_size`` the full extents along
    them. ``approach`` is a unit vector from the camera side into the object. Descriptors are NaN
    when there are no points to compute them from.
    """

    id: int  # pixel value in the label image
    label: str
    score: float
    roi: tuple[int, int, int, int]  # x, y, width, height of the input mask, pixels
    shape: tuple[int, int]  # H, W of the image the region came from
    pixel_index: np.ndarray  # (N,) int64 row-major full-resolution pixel of each point (v * W + u)
    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray | None  # (N, 3) uint8 RGB
    #: (3, N) float32 grid normals t_u x t_v (central differences along the pixel grid), not
    #: normalised; :attr:`normals` turns them into unit, camera-facing vectors on first use
    normal_vectors: np.ndarray
    centroid: np.ndarray  # (3,) estimate of the solid's centroid (= box_center)
    surface_centroid: np.ndarray  # (3,) mean of the visible points
    box_center: np.ndarray  # (3,)
    box_rotation: np.ndarray  # (3, 3)
    box_size: np.ndarray  # (3,)
    #: how the box was made: "plane" (gravity-aligned on the support plane), "sphere", "pca", "none"
    box_method: str
    approach: np.ndarray  # (3,)
    closing_axis: np.ndarray  # (3,) unit box axis the gripper closes along
    grasp_width: float  # metres across the closing axis
    support_plane: np.ndarray | None  # (4,) n·p + d = 0, n towards the camera
    verdict: Verdict
    reason: str
    notes: list[str] = field(default_factory=list)  # degeneracies found on the way
    stride: int = 1  # each point stands for a stride x stride pixel block from its pixel on

    @property
    def point_count(self) -> int:
        return int(len(self.points))

    @property
    def graspable(self) -> bool:
        return self.verdict == Verdict.GRASPABLE

    @functools.cached_property
    def normals(self) -> np.ndarray:
        """(N, 3) float32 unit normals facing the camera (the viewing ray where undefined).

        Made on first use: only PLY export and analysis need them per point; the approach comes from
        the per-instance sum of :attr:`normal_vectors`.
        """
        return interleave(orient_normals_soa(self.normal_vectors.copy(), self.points.T))

    @property
    def mask(self) -> np.ndarray:
        """HxW bool: the pixels kept after cleaning."""
        m = np.zeros(self.shape, dtype=bool)
        paint(m, self.pixel_index, self.stride, True)
        return m


def pixel_blocks(pixel_index: np.ndarray, shape: tuple[int, int], stride: int):
    """(rows, cols) index arrays covering the stride x stride block of every pixel (clipped)."""
    v, u = np.divmod(pixel_index, shape[1])
    for dv in range(stride):
        for du in range(stride):
            yield np.minimum(v + dv, shape[0] - 1), np.minimum(u + du, shape[1] - 1)


def paint(image: np.ndarray, pixel_index: np.ndarray, stride: int, value) -> None:
    """Set the stride x stride block of every pixel of ``pixel_index`` in ``image`` (HxW) to ``value``
    (an array of one value per pixel, or a scalar)."""
    if stride == 1:
        image.reshape(-1)[pixel_index] = value
        return
    for v, u in pixel_blocks(pixel_index, image.shape, stride):
        image[v, u] = value
