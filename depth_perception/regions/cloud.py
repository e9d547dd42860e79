"""The scene as a cloud: decimated organised cloud, grid normals, label image, PLY files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..grid import pixel_angle
from .params import RegionError, check_labels, check_points, check_rgb
from .region import Region, paint


@dataclass(frozen=True)
class SceneCloud:
    """Organised (decimated) scene cloud: xyz HxWx3 float32 (NaN invalid), rgb HxWx3 uint8, label HxW uint16."""

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    label: np.ndarray | None = None


def scene_cloud(
    points: np.ndarray,
    rgb: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    stride: int = 1,
    max_range_m: float | None = None,
    min_range_m: float | None = None,
) -> SceneCloud:
    """Organised scene cloud, decimated by ``stride`` and cropped to depth z in [min, max] (NaN outside).

    Arrays are views of the inputs where no crop is needed; ``messages.points_to_cloud`` turns them
    into a height-major PointCloud2 (xyz, packed rgb, uint16 label).
    """
    pts = check_points(points)
    shape = pts.shape[:2]
    if int(stride) < 1:
        raise RegionError(f"stride must be an integer >= 1, got {stride!r}")
    s = int(stride)
    xyz = pts[::s, ::s]
    if max_range_m is not None or min_range_m is not None:
        z = xyz[..., 2]
        out = np.zeros(z.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            if max_range_m is not None:
                out |= z > max_range_m
            if min_range_m is not None:
                out |= z < min_range_m
        if out.any():
            xyz = xyz.copy()
            xyz[out] = np.nan
    c = check_rgb(rgb, shape)
    lab = check_labels(labels, shape) if labels is not None else None
    return SceneCloud(
        xyz=xyz,
        rgb=None if c is None else c[::s, ::s],
        label=None if lab is None else lab[::s, ::s],
    )


def label_image(regions: list[Region], shape: tuple[int, int]) -> np.ndarray:
    """HxW uint16 instance image aligned with depth: 0 = background, pixel value = region id."""
    shape = (int(shape[0]), int(shape[1]))
    out = np.zeros(shape, dtype=np.uint16)
    for r in regions:
        if tuple(r.shape) != shape:
            raise RegionError(f"region {r.id} comes from a {r.shape} image, not {shape}")
        paint(out, r.pixel_index, r.stride, r.id)
    return out


def regions_cloud(regions: list[Region], labels: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """All regions in one unorganised cloud: (N,3) float32 xyz, (N,3) uint8 rgb or None (unless
    every region has colours), (N,) uint16 id (None when ``labels`` is False)."""
    xyz = np.concatenate([r.points for r in regions] or [np.zeros((0, 3), np.float32)])
    label = None
    if labels:
        label = np.repeat(np.array([r.id for r in regions], np.uint16),
                          [r.point_count for r in regions]) if regions else np.zeros(0, np.uint16)
    has_rgb = bool(regions) and all(r.colors is not None for r in regions)
    rgb = np.concatenate([r.colors for r in regions]) if has_rgb else None
    return xyz, rgb, label


def organized_normals(points: np.ndarray, gap_px: float = 6.0) -> np.ndarray:
    """HxWx3 float32 unit normals facing the camera from central differences on the pixel grid.

    Differences across a depth step (longer than ``gap_px`` pixel footprints) are not used; pixels
    with no usable neighbour pair get the viewing direction -p/|p|; invalid pixels get NaN.
    """
    pts = check_points(points)
    ang = pixel_angle(pts)
    pad = np.pad(pts, ((1, 1), (1, 1), (0, 0)), constant_values=np.nan)
    c = pad[1:-1, 1:-1]
    limit = (gap_px * ang * c[..., 2])[..., None]

    def tangent(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # central where both sides connect, else one-sided, else NaN
        fa, fb = a - c, c - b
        with np.errstate(invalid="ignore"):
            oka = np.linalg.norm(fa, axis=-1, keepdims=True) < limit
            okb = np.linalg.norm(fb, axis=-1, keepdims=True) < limit
        return np.where(oka & okb, (fa + fb), np.where(oka, fa, np.where(okb, fb, np.nan)))

    tu = tangent(pad[1:-1, 2:], pad[1:-1, :-2])
    tv = tangent(pad[2:, 1:-1], pad[:-2, 1:-1])
    return _orient_normals(np.cross(tu, tv), c)


def _orient_normals(n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Normalise ...x3 normals, flip them towards the camera, fall back to -p/|p| where undefined."""
    n = n.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = np.einsum("...i,...i->...", n, n)
        bad = ~(sq > 1e-24)  # NaN too
        n = n / np.sqrt(sq)[..., None]
        if bad.any():
            q = p[bad]
            n[bad] = -q / np.linalg.norm(q, axis=-1, keepdims=True)
        n[np.einsum("...i,...i->...", n, p) > 0] *= -1
    return n


def write_scene_ply(
    path: str | Path, points: np.ndarray, rgb: np.ndarray | None = None, stride: int = 1
) -> int:
    """Binary PLY of the scene (finite points, normals, colours); returns the number of points."""
    from ..files import write_ply

    cloud = scene_cloud(points, rgb, stride=stride)
    normals = organized_normals(np.ascontiguousarray(cloud.xyz))
    return write_ply(path, cloud.xyz, cloud.rgb, normals)


def write_region_plys(out_dir: str | Path, regions: list[Region], prefix: str = "region") -> list[Path]:
    """One binary PLY per region (xyz, normals, rgb when known): ``<prefix>_<id>[_<label>].ply``."""
    from ..files import write_ply

    out = Path(out_dir)
    paths = []
    for r in regions:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in r.label)
        path = out / (f"{prefix}_{r.id:03d}" + (f"_{safe}" if safe else "") + ".ply")
        write_ply(path, r.points, r.colors, r.normals)
        paths.append(path)
    return paths
