"""The pixel grid of an organised cloud, shared by segmentation and regions.

An organised cloud is HxWx3 float32 metres in the camera optical frame, NaN where invalid, so a
point's neighbours are its pixel's neighbours and no k-d tree is needed. This module holds what
both mask sources and region extraction need from that grid: which points are valid, the angle
one pixel subtends (a pixel's footprint at depth z is z times it), connected components over grid
edges, and the support-plane conventions (orientation, in-plane basis).
"""

from __future__ import annotations

import numpy as np


def check_cloud(points: np.ndarray, error: type[Exception] = ValueError,
                what: str = "points") -> np.ndarray:
    """An organised cloud HxWx3 (floating-point metres) as float32, no copy when it is already;
    ``error`` names ``what`` and the problem otherwise."""
    pts = np.asarray(points)
    if pts.ndim != 3 or pts.shape[2] != 3:
        raise error(f"{what} must be an organised HxWx3 cloud, got shape {pts.shape}")
    if not np.issubdtype(pts.dtype, np.floating):
        raise error(f"{what} must be floating point metres, got dtype {pts.dtype}")
    return pts.astype(np.float32, copy=False)


def valid_xyz(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Finite points in front of the camera, from coordinate arrays of any (equal) shape: a NaN
    coordinate makes the sum NaN, so three adds replace three isfinite calls."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(x + y + z) & (z > 0)


def valid_points(pts: np.ndarray) -> np.ndarray:
    """HxW bool: finite point in front of the camera."""
    return valid_xyz(pts[..., 0], pts[..., 1], pts[..., 2])


def pixel_angle(points: np.ndarray) -> float:
    """Angle subtended by one pixel (radians ≈ 1/fx), read off an organised cloud's rays.

    x/z depends only on the pixel, not on the depth, so horizontal neighbours give it exactly.
    """
    pts = np.asarray(points)
    if pts.ndim != 3 or pts.shape[2] != 3:
        raise ValueError(f"points must be an HxWx3 organised cloud, got shape {pts.shape}")
    h = pts.shape[0]
    # two rows usually give a thousand (identical) steps; sixteen when those rows lack depth
    for rows in (pts[h // 4:: max(1, h // 2)], pts[:: max(1, h // 16)]):
        with np.errstate(divide="ignore", invalid="ignore"):
            ray = rows[..., 0] / rows[..., 2]
            step = np.abs(np.diff(ray, axis=1))
        step = step[np.isfinite(step) & (step > 0) & (rows[:, 1:, 2] > 0) & (rows[:, :-1, 2] > 0)]
        if step.size >= 256:
            break
    if not step.size:
        return 1.0 / 500.0
    # the median; a full sort, because np.median's selection crawls on the many equal steps
    step.sort()
    mid = step.size // 2
    return float(step[mid]) if step.size % 2 else float((step[mid - 1] + step[mid]) / 2)


# -- connected components ---------------------------------------------------------------------------


def union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of an undirected graph on n nodes with edges a[i]–b[i]: the smallest
    node id of each node's component. Min-hooking of roots plus pointer jumping, all vectorised."""
    parent = np.arange(n, dtype=np.int32)
    while a.size:
        pa, pb = parent.take(a), parent.take(b)
        split = pa != pb
        if not split.any():
            break
        a, b, pa, pb = a[split], b[split], pa[split], pb[split]
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:  # every node to its root (parents always have smaller ids: no cycles)
            grand = parent.take(parent)
            if not (grand != parent).any():
                break
            parent = grand
    return parent


def grid_components(n: int, right: np.ndarray, edges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected components of n grid points listed in row-major order.

    ``right`` (n - 1 flags) links point i to point i + 1, the next pixel of its row; each of
    ``edges`` is a pair of index arrays (a, b) of further links (down, diagonal, ...), listed in
    increasing a. Right-linked points form runs, so the union-find works on one node per run; a
    link repeating the run pair of the one before it (consecutive points of one run reaching
    consecutive points of another) is skipped. Returns each point's component id: the index of
    the component's first run (ids are not contiguous).
    """
    if n == 0:
        return np.zeros(0, np.int32)
    start = np.ones(n, dtype=bool)
    start[1:] = ~right
    run = np.cumsum(start, dtype=np.int32)
    run -= 1
    ends_a, ends_b = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
    for a, b in edges:
        ra, rb = run.take(a), run.take(b)
        if ra.size > 1:
            new = np.ones(ra.size, dtype=bool)
            new[1:] = (ra[1:] != ra[:-1]) | (rb[1:] != rb[:-1])
            ra, rb = ra[new], rb[new]
        ends_a.append(ra)
        ends_b.append(rb)
    root = union_find(int(run[-1]) + 1, np.concatenate(ends_a), np.concatenate(ends_b))
    return root.take(run)


# -- planes -----------------------------------------------------------------------------------------


def fit_plane_ransac(points: np.ndarray, rng: np.random.Generator, *, iterations: int = 256,
                     threshold_m: float = 0.0, threshold_rel: float = 0.0,
                     score_points: int | None = None, prior: np.ndarray | None = None,
                     max_angle_deg: float = 90.0, refine: int = 2) -> np.ndarray | None:
    """The dominant plane of Nx3 float64 points, or None when no hypothesis is left.

    RANSAC over ``iterations`` random point triples, each hypothesis scored by its MSAC cost over
    ``score_points`` random points (all when None): a point's residual |n·p + d| is divided by the
    threshold at its depth, ``threshold_m + threshold_rel · z`` (metres, or relative units with
    ``threshold_rel`` alone), squared and truncated at 1. With ``prior`` (a unit normal), only
    hypotheses within ``max_angle_deg`` of it compete. The best is refitted by least squares on its
    inliers ``refine`` times. Returns (4,) n·p + d = 0 with a unit normal towards the camera.
    """
    n_pts = len(points)
    if n_pts < 3:
        return None
    tri = points[rng.integers(0, n_pts, size=(int(iterations), 3))]  # (hypotheses, 3 points, xyz)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1)
    ok = length > 1e-12
    normals = normals[ok] / length[ok, None]
    d = -(normals * tri[ok, 0]).sum(axis=1)
    flip = d < 0  # towards the camera: the origin on the positive side
    normals[flip] *= -1
    d = np.abs(d)
    if prior is not None:
        keep = normals @ prior >= np.cos(np.radians(max_angle_deg))
        normals, d = normals[keep], d[keep]
    if len(normals) == 0:
        return None
    sample = points if score_points is None or score_points >= n_pts else \
        points[rng.integers(0, n_pts, size=int(score_points))]
    cost = _msac_costs(sample, normals, d, threshold_m, threshold_rel)
    best = int(np.argmin(cost))
    plane = np.append(normals[best], d[best])
    for _ in range(refine):  # least squares on the inliers, the smallest principal axis as normal
        inl = np.abs(points @ plane[:3] + plane[3]) < threshold_m + threshold_rel * points[:, 2]
        if inl.sum() < 3:
            break
        c = points[inl].mean(axis=0)
        q = points[inl] - c
        normal = np.linalg.eigh(q.T @ q)[1][:, 0]
        plane = orient_plane(np.append(normal, -normal @ c))
    return plane


def _msac_costs(sample: np.ndarray, normals: np.ndarray, d: np.ndarray, threshold_m: float,
                threshold_rel: float) -> np.ndarray:
    """(K,) MSAC cost of K planes n·p + d = 0 (``normals`` Kx3, ``d`` K) over the Nx3 ``sample``:
    the sum over points of min((residual / threshold)^2, 1), threshold = threshold_m +
    threshold_rel · z.

    All hypotheses are scored in one float32 matrix product, (N, 4) homogeneous points times
    (4, K) planes, with a depth-independent threshold folded into the planes, then squared,
    truncated and summed (a product with ones) in place: every NxK pass costs about as much as
    the product, so there are as few as possible, in float32 (half the memory traffic; a
    residual's error stays ~1e-5 of the threshold, far below what separates two hypotheses)."""
    planes = np.empty((4, len(normals)), np.float32)
    planes[:3] = normals.T
    planes[3] = d
    pts = np.empty((len(sample), 4), np.float32)
    pts[:, :3] = sample
    pts[:, 3] = 1.0
    if threshold_rel == 0:
        planes *= np.float32(1.0 / threshold_m)
        r = pts @ planes
    else:
        r = pts @ planes
        r /= (threshold_m + threshold_rel * sample[:, 2:3]).astype(np.float32)
    np.square(r, out=r)
    # against a row of ones: numpy's minimum with a scalar takes a slower loop
    np.minimum(r, np.ones((1, r.shape[1]), np.float32), out=r)
    return (np.ones(len(r), np.float32) @ r).astype(np.float64)


def orient_plane(plane: np.ndarray) -> np.ndarray:
    """(4,) plane n·p + d = 0 scaled to a unit normal pointing to the camera's side (d > 0 when the
    camera is above it)."""
    p = np.asarray(plane, dtype=np.float64) / np.linalg.norm(plane[:3])
    return -p if p[3] < 0 else p


def _cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~15 us of axis handling per call)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def plane_basis(normal: np.ndarray) -> np.ndarray:
    """3x3 right-handed basis, columns (e1, e2, normal): e1 and e2 span the plane."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _cross3(helper, normal)
    e1 /= np.linalg.norm(e1)
    return np.column_stack([e1, _cross3(normal, e1), normal])
