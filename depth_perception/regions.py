"""Instance masks ∩ metric depth → cleaned region clouds → graspable-region descriptors.

What a grasp planner consumes: per instance a cleaned cloud (camera optical frame, metres), an
oriented box, an approach direction, the width across the gripper and a verdict; plus the organised
scene cloud, an instance label image aligned with depth, and PLY files.

Everything runs on the *organised* cloud (HxWx3, NaN invalid), so neighbourhoods come from the pixel
grid instead of a k-d tree, and the per-point work is done for all instances at once:

1. erosion of every mask by its own boundary (mixed-depth edge pixels), one cv2 call for all labels;
2. points within ``plane_margin_m`` of the support plane (table bleeding into a mask) are dropped;
3. statistical outlier removal on grid neighbours: a point's mean distance to its 4 (or 8) grid
   neighbours of the same instance, in units of the local pixel footprint (z · pixel angle), is
   compared with ``mean + outlier_std_ratio · std`` of its instance;
4. the dominant cluster: connected components over grid edges shorter than the cluster gap
   (scipy.sparse.csgraph, one call for all instances), the largest per instance, plus any other
   large component that comes within the gap of it in 3-D (an object split by an occluder);
5. per instance (a short loop over instances, never over points): the oriented box, the approach,
   the width across the closing axis and the verdict.

The box. Only the visible surface is observed, so a box fitted to it is too small and its centre
sits too close to the camera. Two completions fix that where the geometry allows:

- with a known support plane (objects stand on tables) the box is gravity-aligned: one axis is the
  plane normal, the footprint is the minimum-area rectangle of the points projected on the plane, and
  the box reaches down to the plane when the region touches it. Exact for prisms whose top is seen
  (boxes, upright cylinders), because the top face outlines the whole footprint;
- a region whose points fit a sphere (relative RMS residual below ``sphere_fit_tol``) is completed
  as the sphere's cube: a ball's far half is never seen, so no footprint rectangle can find it.

Otherwise the box is the PCA box of the visible points (axes = principal axes, extents = spread).
``centroid`` is the box centre (the estimate of the solid's centroid); ``surface_centroid`` is the
mean of the visible points.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class RegionError(ValueError):
    """Input that region extraction cannot use; the message names the argument and the problem."""


class Verdict(enum.IntEnum):
    """Matches the VERDICT_* constants of depth_perception_msgs/GraspableRegion."""

    GRASPABLE = 0
    TOO_WIDE = 1
    TOO_FEW_POINTS = 2
    OUT_OF_RANGE = 3


@dataclass(frozen=True)
class GripperParams:
    """What the gripper can take. Range is the depth z of the region's centroid (camera frame)."""

    max_opening_m: float = 0.08
    min_points: int = 30
    min_range_m: float = 0.1
    max_range_m: float = 2.0

    def __post_init__(self) -> None:
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
    """Cleaning and box-fitting settings. ``*_px`` values are in pixel footprints (z · pixel angle)."""

    #: work on every stride-th pixel in u and v (stride² fewer points; the label image and masks
    #: are filled back in stride x stride blocks).
    stride: int = 1
    #: pixels (of the strided grid) eroded off every mask boundary (mixed-depth edge pixels); masks that would keep fewer
    #: than ``GripperParams.min_points`` pixels are used uneroded.
    erosion_px: int = 1
    #: grid neighbourhood of the statistical outlier removal: 4 or 8.
    outlier_k: int = 4
    outlier_std_ratio: float = 2.0
    #: never call a point an outlier when its mean neighbour distance is below this (a clean plane
    #: has a tiny spread, and mean + k·std would otherwise trim its ordinary points).
    outlier_min_px: float = 3.0
    #: grid neighbours closer than max(cluster_gap_m, cluster_gap_px · footprint) are connected.
    cluster_gap_m: float = 0.01
    cluster_gap_px: float = 6.0
    #: other components at least this fraction of the largest join it when they come within the gap.
    min_cluster_fraction: float = 0.1
    #: points closer than this to the support plane (or below it) are the table, not the object.
    plane_margin_m: float = 0.005
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

    def __post_init__(self) -> None:
        if int(self.stride) < 1:
            raise RegionError(f"stride must be >= 1, got {self.stride!r}")
        if int(self.erosion_px) < 0:
            raise RegionError(f"erosion_px must be >= 0, got {self.erosion_px!r}")
        if self.outlier_k not in (4, 8):
            raise RegionError(f"outlier_k must be 4 or 8 (grid neighbourhood), got {self.outlier_k!r}")
        for name in ("outlier_std_ratio", "outlier_min_px", "cluster_gap_m", "cluster_gap_px",
                     "plane_margin_m", "ground_gap_ratio", "edge_pad_px", "sphere_fit_tol", "degenerate_ratio",
                     "min_cluster_fraction"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise RegionError(f"{name} must be a finite number >= 0, got {value!r}")


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
    normals: np.ndarray  # (N, 3) float32 unit, facing the camera
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

    @property
    def mask(self) -> np.ndarray:
        """HxW bool: the pixels kept after cleaning."""
        m = np.zeros(self.shape, dtype=bool)
        for v, u in _blocks(self.pixel_index, self.shape, self.stride):
            m[v, u] = True
        return m


@dataclass(frozen=True)
class SceneCloud:
    """Organised (decimated) scene cloud: xyz HxWx3 float32 (NaN invalid), rgb HxWx3 uint8, label HxW uint16."""

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    label: np.ndarray | None = None


# -- input checks -----------------------------------------------------------------------------------


def _check_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 3 or pts.shape[2] != 3:
        raise RegionError(f"points must be an HxWx3 organised cloud, got shape {pts.shape}")
    if not np.issubdtype(pts.dtype, np.floating):
        raise RegionError(f"points must be floating point metres, got dtype {pts.dtype}")
    return pts.astype(np.float32, copy=False)


def _check_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
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


def _check_rgb(rgb: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if rgb is None:
        return None
    c = np.asarray(rgb)
    if c.shape != (*shape, 3) or c.dtype != np.uint8:
        raise RegionError(f"rgb must be HxWx3 uint8 matching {shape}, got {c.shape} {c.dtype}")
    return c


def _check_plane(plane: np.ndarray | None) -> np.ndarray | None:
    """(4,) plane → unit normal pointing to the camera's side (d > 0 when the camera is above it)."""
    if plane is None:
        return None
    p = np.asarray(plane, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(p[:3]) if p.size == 4 else 0.0
    if p.size != 4 or not np.isfinite(p).all() or norm < 1e-9:
        raise RegionError(f"support_plane must be finite (nx, ny, nz, d) with a non-zero normal, got {plane!r}")
    p = p / norm
    return -p if p[3] < 0 else p


def pixel_angle(points: np.ndarray) -> float:
    """Angle subtended by one pixel (radians ≈ 1/fx), read off an organised cloud's rays.

    x/z depends only on the pixel, not on the depth, so horizontal neighbours give it exactly.
    """
    pts = _check_points(points)
    h = pts.shape[0]
    rows = pts[:: max(1, h // 16)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ray = rows[..., 0] / rows[..., 2]
        step = np.abs(np.diff(ray, axis=1))
    step = step[np.isfinite(step) & (step > 0) & (rows[:, 1:, 2] > 0) & (rows[:, :-1, 2] > 0)]
    return float(np.median(step)) if step.size else 1.0 / 500.0


# -- scene cloud, label image, PLY ------------------------------------------------------------------


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
    pts = _check_points(points)
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
    c = _check_rgb(rgb, shape)
    lab = _check_labels(labels, shape) if labels is not None else None
    return SceneCloud(
        xyz=xyz,
        rgb=None if c is None else c[::s, ::s],
        label=None if lab is None else lab[::s, ::s],
    )


def _blocks(pixel_index: np.ndarray, shape: tuple[int, int], stride: int):
    """(rows, cols) index arrays covering the stride x stride block of every pixel (clipped)."""
    v, u = np.divmod(pixel_index, shape[1])
    for dv in range(stride):
        for du in range(stride):
            yield np.minimum(v + dv, shape[0] - 1), np.minimum(u + du, shape[1] - 1)


def label_image(regions: list[Region], shape: tuple[int, int]) -> np.ndarray:
    """HxW uint16 instance image aligned with depth: 0 = background, pixel value = region id."""
    shape = (int(shape[0]), int(shape[1]))
    out = np.zeros(shape, dtype=np.uint16)
    flat = out.reshape(-1)
    for r in regions:
        if tuple(r.shape) != shape:
            raise RegionError(f"region {r.id} comes from a {r.shape} image, not {shape}")
        if r.stride == 1:
            flat[r.pixel_index] = r.id
        else:
            for v, u in _blocks(r.pixel_index, shape, r.stride):
                out[v, u] = r.id
    return out


def regions_cloud(regions: list[Region]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """All regions in one unorganised cloud: (N,3) float32 xyz, (N,3) uint8 rgb or None, (N,) uint16 id."""
    xyz = np.concatenate([r.points for r in regions] or [np.zeros((0, 3), np.float32)])
    label = np.concatenate(
        [np.full(r.point_count, r.id, np.uint16) for r in regions] or [np.zeros(0, np.uint16)]
    )
    has_rgb = bool(regions) and all(r.colors is not None for r in regions)
    rgb = np.concatenate([r.colors for r in regions]) if has_rgb else None
    return xyz, rgb, label


def organized_normals(points: np.ndarray, gap_px: float = 6.0) -> np.ndarray:
    """HxWx3 float32 unit normals facing the camera from central differences on the pixel grid.

    Differences across a depth step (longer than ``gap_px`` pixel footprints) are not used; pixels
    with no usable neighbour pair get the viewing direction -p/|p|; invalid pixels get NaN.
    """
    pts = _check_points(points)
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
    from .files import write_ply

    cloud = scene_cloud(points, rgb, stride=stride)
    normals = organized_normals(np.ascontiguousarray(cloud.xyz))
    return write_ply(path, cloud.xyz, cloud.rgb, normals)


def write_region_plys(out_dir: str | Path, regions: list[Region], prefix: str = "region") -> list[Path]:
    """One binary PLY per region (xyz, normals, rgb when known): ``<prefix>_<id>[_<label>].ply``."""
    from .files import write_ply

    out = Path(out_dir)
    paths = []
    for r in regions:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in r.label)
        path = out / (f"{prefix}_{r.id:03d}" + (f"_{safe}" if safe else "") + ".ply")
        write_ply(path, r.points, r.colors, r.normals)
        paths.append(path)
    return paths


# -- extraction -------------------------------------------------------------------------------------


def _grid_neighbours(idx, u, pos, li, width: int, dv: int, du: int) -> np.ndarray:
    """Compact index of each point's (dv, du) grid neighbour of the same instance, -1 where none."""
    target = idx + (dv * width + du)
    ok = (u + du >= 0) & (u + du < width) & (target >= 0) & (target < pos.size)
    nb = np.where(ok, pos.take(target, mode="clip"), -1)
    nb[(nb >= 0) & (li.take(nb, mode="clip") != li)] = -1
    return nb


def _norm3(d: np.ndarray) -> np.ndarray:
    """Lengths of the columns of a (3, N) array (numpy's axis reductions over a length-3 axis are slow)."""
    return np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])


def _per_label_mean_std(values: np.ndarray, li: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    cnt = np.bincount(li, minlength=n_labels)
    s1 = np.bincount(li, weights=values, minlength=n_labels)
    s2 = np.bincount(li, weights=values * values, minlength=n_labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / cnt
        std = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
    return mean, std


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
    :param gripper, params: verdict limits and cleaning settings (defaults when None).
    :param rgb: HxWx3 uint8 colours for the region clouds.
    :param names, scores: per id class name / segmentation score (default "" and 1.0).
    :param support_plane: (4,) (nx, ny, nz, d), n·p + d = 0 in the camera frame (e.g. the table);
        enables gravity-aligned boxes and removal of table points.
    Bad arguments raise :class:`RegionError`; bad *data* (no depth, one pixel, behind the camera,
    degenerate point sets) never raises: the region gets a verdict and a reason.
    """
    import cv2
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    gripper = gripper or GripperParams()
    params = params or RegionParams()
    pts = _check_points(points)
    full_shape = pts.shape[:2]
    lab = _check_labels(labels, full_shape)
    colours = _check_rgb(rgb, full_shape)
    plane = _check_plane(support_plane)
    names, scores = names or {}, scores or {}
    stride = int(params.stride)
    if stride > 1:
        pts, lab = pts[::stride, ::stride], np.ascontiguousarray(lab[::stride, ::stride])
        colours = None if colours is None else colours[::stride, ::stride]
    H, W = pts.shape[:2]

    # Everything below works on the mask pixels only, never on the whole image. Per-point arrays
    # are (3, N): numpy reduces a length-3 trailing axis far slower than three contiguous rows.
    flat_lab = lab.reshape(-1)
    cand = np.flatnonzero(flat_lab != 0)
    if cand.size == 0:
        return []
    cand_lab = flat_lab[cand]
    mask_count = np.bincount(cand_lab)
    ids = np.flatnonzero(mask_count)
    n_labels = ids.size
    lut = np.zeros(mask_count.size, dtype=np.int64)  # id → compact index
    lut[ids] = np.arange(n_labels)

    # 1. erosion: a pixel survives when its whole window carries its own id (one call for all ids)
    uneroded = np.ones(mask_count.size, dtype=bool)
    keep_px = np.ones(cand.size, dtype=bool)
    if params.erosion_px > 0:
        k = np.ones((2 * params.erosion_px + 1,) * 2, np.uint8)
        inner = cv2.erode(lab, k).reshape(-1)[cand] == cand_lab
        inner &= cv2.dilate(lab, k).reshape(-1)[cand] == cand_lab
        uneroded = np.bincount(cand_lab[inner], minlength=mask_count.size) < gripper.min_points
        keep_px = inner | uneroded[cand_lab]

    P0 = pts.reshape(-1, 3).take(cand, axis=0).T
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(P0[0] + P0[1] + P0[2])
        behind = finite & (P0[2] <= 0)
    valid = finite & ~behind
    n_valid = np.bincount(cand_lab[valid], minlength=mask_count.size)
    n_behind = np.bincount(cand_lab[behind], minlength=mask_count.size)
    sel = np.flatnonzero(keep_px & valid)
    idx, PT, li = cand[sel], np.ascontiguousarray(P0[:, sel]), lut[cand_lab[sel]]

    # 2. table points: on (or under) the support plane
    n_on_plane = np.zeros(n_labels, dtype=np.int64)
    height = None
    if plane is not None:
        height = plane[:3].astype(np.float32) @ PT + np.float32(plane[3])
        off = height < params.plane_margin_m
        if off.any():
            n_on_plane = np.bincount(li[off], minlength=n_labels)
            on = np.flatnonzero(~off)
            idx, PT, li, height = idx[on], PT[:, on], li[on], height[on]
    N = idx.size
    Z = PT[2]

    # 3. grid edges between same-instance neighbours (+u, +v and, for k = 8, the diagonals)
    ang = pixel_angle(pts)
    pos = np.full(H * W, -1, dtype=np.int64)
    pos[idx] = np.arange(N)
    u = idx % W
    foot = Z * np.float32(ang)  # pixel footprint, metres
    gap = np.maximum(np.float32(params.cluster_gap_m), np.float32(params.cluster_gap_px) * foot)
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if params.outlier_k == 8 else [])
    nbs, lens = [], []
    for dv, du in offsets:
        nb = _grid_neighbours(idx, u, pos, li, W, dv, du)
        length = _norm3(PT.take(np.maximum(nb, 0), axis=1) - PT)
        length[nb < 0] = np.nan
        nbs.append(nb)
        lens.append(length)

    # 4. statistical outlier removal: mean neighbour distance in footprints vs. its instance
    ends, rels = [], []
    for nb, length in zip(nbs, lens):
        has = np.flatnonzero(nb >= 0)
        rel = length[has] / foot[has]
        ends += [has, nb[has]]  # an edge counts for both of its points
        rels += [rel, rel]
    ends_all = np.concatenate(ends)
    nb_sum = np.bincount(ends_all, weights=np.concatenate(rels), minlength=N)
    nb_cnt = np.bincount(ends_all, minlength=N)
    has_nb = nb_cnt > 0  # isolated pixels carry no surface evidence
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_dist = np.where(has_nb, nb_sum / nb_cnt, np.inf)
    m, s = _per_label_mean_std(mean_dist[has_nb], li[has_nb], n_labels)
    limit = np.maximum(m + params.outlier_std_ratio * s, params.outlier_min_px)
    inlier = has_nb & (mean_dist <= limit[li])

    # 5. dominant cluster: connected components of inliers over short edges, all instances at once
    shorts = []
    for nb, length in zip(nbs, lens):
        with np.errstate(invalid="ignore"):
            ok = (length < gap) & inlier
        ok[ok] = inlier[nb[ok]]
        shorts.append(ok)
    src = np.concatenate([np.flatnonzero(ok) for ok in shorts])
    dst = np.concatenate([nb[ok] for nb, ok in zip(nbs, shorts)])
    graph = coo_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(N, N))
    n_comp, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp[inlier], minlength=n_comp)
    comp_label = np.zeros(n_comp, dtype=np.int64)
    comp_label[comp] = li
    by_size = np.lexsort((comp_size, comp_label))  # within each label, largest last
    best = np.full(n_labels, -1, dtype=np.int64)
    if n_comp:
        last = np.r_[comp_label[by_size][1:] != comp_label[by_size][:-1], True]
        best[comp_label[by_size[last]]] = by_size[last]
    keep_comp = np.zeros(n_comp, dtype=bool)
    keep_comp[best[best >= 0]] = True
    best_size = np.r_[comp_size, 0][best]  # 0 for instances without any component (best = -1)
    large = (comp_size >= params.min_cluster_fraction * best_size[comp_label]) & (comp_size > 1) & ~keep_comp
    if large.any():
        keep_comp |= _merge_near_components(np.flatnonzero(large), best, comp, comp_label, PT, inlier, gap)
    keep = inlier & keep_comp[comp]

    # normals from kept, connected grid neighbours (central differences where both sides exist)
    tangents = []
    self_ = np.arange(N)
    for nb, ok in zip(nbs[:2], shorts[:2]):
        fwd = np.where(ok & keep, nb, -1)  # a short inlier edge never leaves its component
        linked = fwd >= 0
        bwd = np.full(N, -1, dtype=np.int64)
        bwd[fwd[linked]] = self_[linked]
        t = PT.take(np.where(linked, fwd, self_), axis=1) - PT.take(np.where(bwd >= 0, bwd, self_), axis=1)
        t[:, ~linked & (bwd < 0)] = np.nan
        tangents.append(t)
    (a0, a1, a2), (b0, b1, b2) = tangents
    normals = _orient_normals_soa(np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0]), PT)

    # 6. per-instance descriptors: a loop over instances, each a handful of vectorised calls
    order = np.flatnonzero(keep)[np.argsort(li[keep], kind="stable")]
    starts = np.r_[0, np.cumsum(np.bincount(li[keep], minlength=n_labels))]
    flat_rgb = None if colours is None else colours.reshape(-1, 3)
    regions = []
    for j, rid in enumerate(ids):
        rows = order[starts[j]:starts[j + 1]]
        pix = idx[rows]
        colors = None if flat_rgb is None else flat_rgb.take(pix, axis=0)
        x0, y0, w, h = _roi(pix if pix.size else cand[cand_lab == rid], W)
        roi = (x0 * stride, y0 * stride, min(w * stride, full_shape[1] - x0 * stride),
               min(h * stride, full_shape[0] - y0 * stride))
        if stride > 1:
            v, u = np.divmod(pix, W)
            pix = v * (stride * full_shape[1]) + u * stride
        regions.append(
            _describe(
                rid=int(rid), label=str(names.get(int(rid), "")), score=float(scores.get(int(rid), 1.0)),
                roi=roi, shape=full_shape, pixel_index=pix, stride=stride,
                pT=PT.take(rows, axis=1), colors=colors,
                nT=normals.take(rows, axis=1), height=None if height is None else height[rows],
                plane=plane,
                stats=dict(mask=int(mask_count[rid]), valid=int(n_valid[rid]), behind=int(n_behind[rid]),
                           on_plane=int(n_on_plane[j])),
                eroded_px=0 if uneroded[rid] else params.erosion_px,
                foot=float(foot[rows].mean()) if rows.size else 0.0,
                gripper=gripper, params=params,
            )
        )
    return regions


def _orient_normals_soa(n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(3, N) normals → unit, facing the camera at points p (3, N); -p/|p| where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        length = _norm3(n)
        bad = ~(length > 1e-12)  # NaN too
        if bad.any():
            n[:, bad] = p[:, bad]
            length[bad] = _norm3(n[:, bad])
        # one pass: scale to unit length, and by -1 where the normal points away from the camera
        facing = n[0] * p[0] + n[1] * p[1] + n[2] * p[2]
        n *= np.where(facing > 0, -1.0, 1.0).astype(np.float32) / length
    return n.astype(np.float32, copy=False)


def _merge_near_components(candidates, best, comp, comp_label, PT, inlier, gap) -> np.ndarray:
    """Components (besides the largest of their instance) within the gap of that largest one in 3-D."""
    from scipy.spatial import cKDTree

    merged = np.zeros(comp_label.size, dtype=bool)
    for c in candidates:  # rare: an object split in the image, e.g. by an occluder in front
        main = best[comp_label[c]]
        a = np.flatnonzero((comp == main) & inlier)
        b = np.flatnonzero((comp == c) & inlier)
        d, _ = cKDTree(PT[:, a].T).query(PT[:, b].T, k=1, distance_upper_bound=float(np.max(gap[b])))
        merged[c] = bool(np.isfinite(d).any())
    return merged


def _roi(pixel_index: np.ndarray, width: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) bounding box of flat pixel indices."""
    if pixel_index.size == 0:
        return (0, 0, 0, 0)
    v = pixel_index // width
    u = pixel_index - v * width
    x0, y0 = int(u.min()), int(v.min())
    return (x0, y0, int(u.max()) - x0 + 1, int(v.max()) - y0 + 1)


def _fit_sphere(q: np.ndarray, qqt: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Algebraic least-squares sphere through centred points q (3, N), qqt = q @ q.T.

    |q|² = 2 c·q + k is linear in (c, k); with centred points the normal equations split into
    qqt · c = ½ Σ q |q|² and k = mean |q|². Returns the centre (relative to the centring), the
    radius and the RMS distance of the points to the sphere.
    """
    s = q[0] * q[0] + q[1] * q[1] + q[2] * q[2]
    try:
        c = np.linalg.solve(qqt, 0.5 * (q @ s))
    except np.linalg.LinAlgError:
        return np.zeros(3), np.inf, np.inf
    r2 = s.mean() + c @ c
    if not (np.isfinite(r2) and r2 > 0):
        return c, np.inf, np.inf
    r = float(np.sqrt(r2))
    rms = float(np.sqrt(np.mean((_norm3(q - c[:, None]) - r) ** 2)))
    return c, r, rms


_DIRECTIONS = np.stack(
    [np.cos(np.arange(16) * np.pi / 16), np.sin(np.arange(16) * np.pi / 16)], axis=1
).astype(np.float32)  # (16, 2) unit directions over half a turn


def _cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~15 us of axis handling per call)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _plane_basis(normal: np.ndarray) -> np.ndarray:
    """3x3 right-handed basis, columns (e1, e2, normal)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _cross3(helper, normal)
    e1 /= np.linalg.norm(e1)
    return np.column_stack([e1, _cross3(normal, e1), normal])


def _plane_box(pT, height, plane, params, notes, pads):
    """Gravity-aligned box on the support plane: min-area footprint rectangle × [bottom, top].

    ``pT`` is (3, N); ``pads`` = (near, far): metres added to footprint sides facing / facing away
    from the camera.
    """
    import cv2

    basis = _plane_basis(plane[:3])
    uv = basis[:, :2].T.astype(np.float32) @ pT.astype(np.float32)  # (2, N) in-plane coordinates
    if uv.shape[1] > 64:
        # the rectangle only touches hull points: keep the extremes along 32 directions (exact for
        # polygons with corners more than ~11 degrees apart, within 0.5 % of the radius for a disc)
        ext = _DIRECTIONS @ uv
        uv = uv[:, np.unique(np.r_[ext.argmax(axis=1), ext.argmin(axis=1)])]
    corners = cv2.boxPoints(cv2.minAreaRect(np.ascontiguousarray(uv.T))).astype(np.float64)
    e_a, e_b = corners[1] - corners[0], corners[2] - corners[1]
    len_a, len_b = float(np.linalg.norm(e_a)), float(np.linalg.norm(e_b))
    if max(len_a, len_b) < 1e-9:
        dirs = np.eye(2)
    elif len_a >= len_b:
        dirs = np.array([e_a / len_a, np.array([-e_a[1], e_a[0]]) / len_a])
    else:
        dirs = np.array([e_b / len_b, np.array([-e_b[1], e_b[0]]) / len_b])
    centre_uv = corners.mean(axis=0)
    half = np.array([max(len_a, len_b), min(len_a, len_b)]) / 2
    # the camera sits at uv = (0, 0): a side is "far" when the camera is on the box's side of it
    cam = -centre_uv @ dirs.T  # camera in rectangle coordinates
    hi = half + np.where(cam < half, pads[1], pads[0])
    lo = -half - np.where(cam > -half, pads[1], pads[0])
    centre_uv = centre_uv + ((hi + lo) / 2) @ dirs
    a1 = basis[:, :2] @ dirs[0]
    a2 = _cross3(plane[:3], a1)
    top, bottom = float(height.max()), float(height.min())
    if bottom <= params.ground_gap_ratio * top:
        bottom = 0.0  # it stands on the plane; the hidden lower part is part of the object
    else:
        notes.append(f"not resting on the support plane (lowest point {bottom * 100:.1f} cm above it)")
    # in-plane coordinates → camera frame: the plane's point nearest the camera is -d·n
    centre = basis[:, :2] @ centre_uv + plane[:3] * ((top + bottom) / 2 - plane[3])
    R = np.column_stack([a1, a2, plane[:3]])
    size = np.array([hi[0] - lo[0], hi[1] - lo[1], top - bottom])
    return centre, R, size


def _pca_box(mu, q, qqt):
    """PCA box of centred points q (3, N) with mean mu: centre, right-handed axes (columns),
    extents along them, and the principal spreads (standard deviations)."""
    w, v = np.linalg.eigh(qqt / max(q.shape[1], 1))
    v = v[:, ::-1].copy()
    v[:, 2] = _cross3(v[:, 0], v[:, 1])  # right-handed
    proj = v.T @ q
    lo, hi = proj.min(axis=1), proj.max(axis=1)
    return mu + v @ ((lo + hi) / 2), v, hi - lo, np.sqrt(np.maximum(w[::-1], 0.0))


def _describe(*, rid, label, score, roi, shape, pixel_index, stride, pT, colors, nT, height, plane,
              stats, eroded_px, foot, gripper, params) -> Region:
    notes: list[str] = []
    n = pT.shape[1]
    nan3 = np.full(3, np.nan)
    p = pT.astype(np.float64)
    centre, R, size, method = nan3, np.full((3, 3), np.nan), nan3, "none"
    surface = p.mean(axis=1) if n else nan3
    approach, closing, width = nan3, nan3, float("nan")
    if n:
        q = p - surface[:, None]
        qqt = q @ q.T
        box_pca = _pca_box(surface, q, qqt)
        R_pca, size_pca, spread = box_pca[1:]
        if n < 3 or spread[0] == 0:
            notes.append(f"{n} point(s) without extent")
        elif spread[1] < params.degenerate_ratio * spread[0]:
            notes.append("linear point set: box width and normal are not observable")
        elif spread[2] < params.degenerate_ratio * spread[0]:
            notes.append("planar point set: box depth is not observable")
        sphere = None
        if params.sphere_fit_tol > 0 and n >= 20 and not notes:
            c, r, rms = _fit_sphere(q, qqt)
            # accept only a cap that spans at least a radius (a flat patch fits a huge sphere)
            if rms < params.sphere_fit_tol * r and size_pca[0] >= r:
                sphere = (surface + c, r)
        if sphere is not None:
            centre, r = sphere
            R = _plane_basis(plane[:3]) if plane is not None else R_pca
            size, method = np.full(3, 2 * r), "sphere"
        elif plane is not None and n >= 3:
            pads = (params.edge_pad_px * foot, (params.edge_pad_px + eroded_px) * foot)
            centre, R, size = _plane_box(p, height, plane, params, notes, pads)
            method = "plane"
        else:
            centre, R, size = box_pca[:3]
            method = "pca"
        # approach: the mean visible normal (normals face the camera), reversed into the object
        mean_n = nT.astype(np.float64).mean(axis=1)
        norm = float(np.linalg.norm(mean_n))
        dist = float(np.linalg.norm(surface))
        if norm > 0.1:
            approach = -mean_n / norm
        else:
            approach = surface / dist if dist > 0 else np.array([0.0, 0.0, 1.0])
            notes.append("no dominant surface normal: approach along the viewing ray")
        # the gripper closes across the approach: drop the box axis most aligned with it and
        # close along the narrower of the other two
        along = np.abs(R.T @ approach)
        others = np.argsort(along)[:2]
        k = others[np.argmin(size[others])]
        closing, width = R[:, k].copy(), float(size[k])

    verdict, reason = _verdict(n, centre, width, stats, plane is not None, gripper)
    if notes:
        reason += "; " + "; ".join(notes)
    return Region(
        id=rid, label=label, score=score, roi=roi, shape=shape, pixel_index=pixel_index,
        points=np.ascontiguousarray(pT.T), colors=colors, normals=np.ascontiguousarray(nT.T),
        centroid=centre, surface_centroid=surface, box_center=centre, box_rotation=R, box_size=size,
        box_method=method, approach=approach, closing_axis=closing, grasp_width=width,
        support_plane=plane, verdict=verdict, reason=reason, notes=notes, stride=stride,
    )


def _verdict(n, centre, width, stats, has_plane, gripper) -> tuple[Verdict, str]:
    if stats["valid"] == 0:
        if stats["behind"]:
            return Verdict.OUT_OF_RANGE, f"all {stats['behind']} points with depth lie behind the camera (z <= 0)"
        return Verdict.TOO_FEW_POINTS, f"no valid depth inside the mask ({stats['mask']} pixels, all NaN)"
    if n < gripper.min_points:
        why = f"{n} points after cleaning (mask {stats['mask']} px, {stats['valid']} with depth"
        if has_plane and stats["on_plane"]:
            why += f", {stats['on_plane']} on the support plane"
        return Verdict.TOO_FEW_POINTS, why + f"); need {gripper.min_points}"
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
