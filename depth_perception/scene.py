"""Procedural tabletop scenes with exact metric depth, instance masks and a rectified stereo pair.

Ground truth for the depth and region stages: a camera looks down at a textured table (world z up,
table at z = 0, a wall behind it so every pixel sees a surface) with boxes, upright cylinders and
spheres standing on it. Images are rendered by analytic ray casting, so depth is exact (z in the
camera optical frame, REP 103) and masks have no label noise. Textures are solid (functions of the
3-D world point) and shading is Lambertian, so both stereo views see the same surface colours.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from .camera import CameraModel

KINDS = ("box", "cylinder", "sphere")
_EPS = 1e-6


@dataclass(frozen=True)
class SceneObject:
    """One solid standing on the table.

    size_m: box (sx, sy, sz), cylinder (radius, height), sphere (radius,), metres.
    centroid_camera: (3,) float64 centroid of the full solid (not just its visible surface), camera frame, m.
    extents_m: (3,) float64 full extents of the object's oriented box along its own x, y, z axes, m.
    R_camera_object: 3x3 float64 rotation from the object frame (z up, yawed about z) to the camera frame.
    """

    id: int
    kind: str
    size_m: tuple[float, ...]
    centroid_camera: np.ndarray
    extents_m: np.ndarray
    R_camera_object: np.ndarray
    centroid_world: np.ndarray
    yaw_rad: float


@dataclass(frozen=True)
class TabletopScene:
    """A rendered scene; all images are HxW, pixel (row v, column u) sees the ray through (u, v) of K.

    rgb, right_rgb: HxWx3 uint8 RGB; the right camera sits at +baseline_m along the left camera's x axis.
    depth_m, right_depth_m: HxW float32 z in each camera's optical frame, metres (NaN where nothing is hit).
    instance_mask: HxW uint16, 0 = table/wall, i = objects[i-1] (labels[i-1] is its kind).
    table_mask: HxW bool, pixels that see the table top.
    table_plane_camera: (4,) float64 (nx, ny, nz, d) with n . p + d = 0 for table points p in the camera
        frame, unit n pointing up (towards the camera), so d is the camera height above the table.
    light_dir_world: (3,) unit vector towards the light.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    instance_mask: np.ndarray
    labels: list[str]
    K: np.ndarray
    right_rgb: np.ndarray
    right_depth_m: np.ndarray
    baseline_m: float
    T_world_camera: np.ndarray
    table_plane_camera: np.ndarray
    table_mask: np.ndarray
    objects: list[SceneObject]
    light_dir_world: np.ndarray

    @property
    def camera(self) -> CameraModel:
        """The left camera (pinhole K, no distortion) at the images' size."""
        h, w = self.depth_m.shape
        K = self.K
        return CameraModel.from_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h)

    def points(self) -> np.ndarray:
        """HxWx3 float32 organised cloud of ``depth_m`` in the left camera's optical frame (NaN
        where nothing is hit)."""
        return self.camera.backproject(self.depth_m)


@dataclass(frozen=True)
class _Solid:
    kind: str
    centre: np.ndarray  # (3,) world centroid of the solid
    size: tuple[float, ...]
    yaw: float

    @property
    def Rz(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    @property
    def extents(self) -> np.ndarray:
        if self.kind == "box":
            return np.array(self.size)
        if self.kind == "cylinder":
            return np.array([2 * self.size[0], 2 * self.size[0], self.size[1]])
        return np.full(3, 2 * self.size[0])

    @property
    def footprint_radius(self) -> float:
        return float(np.hypot(*self.extents[:2]) / 2 if self.kind == "box" else self.size[0])


@dataclass(frozen=True)
class _Material:
    rgb: np.ndarray  # (3,) linear albedo
    waves: np.ndarray  # (K, 3) angular frequency vectors, rad/m
    phases: np.ndarray  # (K,)
    amps: np.ndarray  # (K,) summing to 1 so the texture stays in [-1, 1]
    contrast: float
    grain: np.ndarray | None = None  # (3,) wood grain: across-grain direction / period (1/m)


def _hit_solid(s: _Solid, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter t of the first hit of rays o + t d ((3,) or (N,3) each, broadcast); inf on a miss."""
    oc = o - s.centre
    with np.errstate(divide="ignore", invalid="ignore"):
        if s.kind == "box":
            half = s.extents / 2
            o_l, d_l = oc @ s.Rz, d @ s.Rz
            t1, t2 = (-half - o_l) / d_l, (half - o_l) / d_l
            t_near = np.minimum(t1, t2).max(axis=-1)
            t_far = np.maximum(t1, t2).min(axis=-1)
            return np.where((t_near <= t_far) & (t_near > _EPS), t_near, np.inf)
        r = s.size[0]
        if s.kind == "sphere":
            a, b = (d * d).sum(-1), (d * oc).sum(-1)
            disc = b * b - a * ((oc * oc).sum(-1) - r * r)
            t = (-b - np.sqrt(disc)) / a
            return np.where((disc >= 0) & (t > _EPS), t, np.inf)
        h = s.size[1]
        oc = oc + np.array([0.0, 0.0, h / 2])  # relative to the base centre
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
        ox, oy, oz = oc[..., 0], oc[..., 1], oc[..., 2]
        a, b = dx * dx + dy * dy, dx * ox + dy * oy
        disc = b * b - a * (ox * ox + oy * oy - r * r)
        t_side = (-b - np.sqrt(disc)) / a
        z = oz + t_side * dz
        t_side = np.where((disc >= 0) & (t_side > _EPS) & (z >= 0) & (z <= h), t_side, np.inf)
        t_top = (h - oz) / dz
        on_cap = (ox + t_top * dx) ** 2 + (oy + t_top * dy) ** 2 <= r * r
        return np.minimum(t_side, np.where(on_cap & (t_top > _EPS), t_top, np.inf))


def _normal_solid(s: _Solid, p: np.ndarray) -> np.ndarray:
    """Outward unit normals (N,3) at surface points p (N,3), world frame."""
    q = p - s.centre
    if s.kind == "sphere":
        return q / s.size[0]
    if s.kind == "cylinder":
        r, h = s.size
        radial = np.hypot(q[:, 0], q[:, 1])
        side = np.abs(radial - r) < np.abs(q[:, 2] - h / 2)
        n = np.zeros_like(q)
        n[:, 2] = 1.0
        n[side] = np.column_stack([q[side, :2] / radial[side, None], np.zeros(side.sum())])
        return n
    q_l = q @ s.Rz
    axis = np.argmax(np.abs(q_l) / (s.extents / 2), axis=1)
    n_l = np.zeros_like(q_l)
    rows = np.arange(len(q_l))
    n_l[rows, axis] = np.sign(q_l[rows, axis])
    return n_l @ s.Rz.T


def _corners(s: _Solid) -> np.ndarray:
    """(8,3) world corners of the solid's oriented bounding box."""
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    return s.centre + (signs * s.extents / 2) @ s.Rz.T


def _cast(o: np.ndarray, d: np.ndarray, solids: list[_Solid], planes: list[tuple[np.ndarray, float]],
          K: np.ndarray, R: np.ndarray, shape: tuple[int, int]):
    """Nearest hit of the pixel rays d (H*W, 3) from o: (t (N,), surface index (N,) int32: solids first,
    then planes, -1 = miss). Solids are only tested on pixels inside their projected bounding box,
    which is what keeps rendering fast; all solids lie in front of the camera (checked at layout)."""
    height, width = shape
    t_best = np.full(len(d), np.inf)
    surf = np.full(len(d), -1, dtype=np.int32)
    for j, (n, c) in enumerate(planes):
        with np.errstate(divide="ignore"):
            t = -(n @ o + c) / (d @ n)
        closer = (t > _EPS) & (t < t_best)
        t_best[closer], surf[closer] = t[closer], len(solids) + j
    for k, s in enumerate(solids):
        uv, _ = _project(K, R, o, _corners(s))
        u0, v0 = np.clip(np.floor(uv.min(axis=0)).astype(int) - 1, 0, None)
        u1, v1 = np.ceil(uv.max(axis=0)).astype(int) + 2
        idx = (np.arange(v0, min(v1, height))[:, None] * width + np.arange(u0, min(u1, width))).ravel()
        t = _hit_solid(s, o, d[idx])
        closer = t < t_best[idx]
        t_best[idx[closer]], surf[idx[closer]] = t[closer], k
    return t_best, surf


def _albedo(m: _Material, p: np.ndarray, sigma_m: np.ndarray) -> np.ndarray:
    """Solid texture (N,3) at world points p; each sinusoid is Gaussian-blurred by the pixel footprint
    sigma_m so that point sampling does not alias (aliasing would differ between the two views)."""
    # float32 halves the cost of the (N, K) sines; texture precision is irrelevant at 8 bits
    w32 = m.waves.astype(np.float32)
    atten = np.exp(-0.5 * (sigma_m[:, None].astype(np.float32) * np.linalg.norm(w32, axis=1)) ** 2)
    tex = (np.sin(p.astype(np.float32) @ w32.T + m.phases.astype(np.float32)) * atten) @ m.amps.astype(np.float32)
    if m.grain is not None:
        w = np.linalg.norm(m.grain)
        stripes = np.sin(p @ m.grain + 3.0 * tex) * np.exp(-0.5 * (sigma_m * w) ** 2)
        tex = 0.4 * tex + 0.6 * stripes
    return m.rgb * (1.0 + m.contrast * tex)[:, None]


def _material(rng: np.random.Generator, rgb, contrast: float, min_wave_m: float, grain_period_m=None):
    k = 12
    wavelength = np.exp(rng.uniform(np.log(min_wave_m), np.log(10 * min_wave_m), k))
    dirs = rng.normal(size=(k, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = np.sqrt(wavelength)
    grain = None
    if grain_period_m is not None:
        a = rng.uniform(0, np.pi)
        grain = np.array([np.cos(a), np.sin(a), 0.0]) * 2 * np.pi / grain_period_m
    return _Material(np.asarray(rgb, float), dirs * (2 * np.pi / wavelength)[:, None],
                     rng.uniform(0, 2 * np.pi, k), amps / amps.sum(), contrast, grain)


def _sample_solid(rng: np.random.Generator, kind: str, xy: np.ndarray, yaw: float) -> _Solid:
    if kind == "box":
        size = (rng.uniform(0.04, 0.12), rng.uniform(0.03, 0.10), rng.uniform(0.03, 0.15))
        z = size[2] / 2
    elif kind == "cylinder":
        size = (rng.uniform(0.02, 0.045), rng.uniform(0.05, 0.15))
        z = size[1] / 2
    else:
        size = (rng.uniform(0.02, 0.05),)
        z = size[0]
    return _Solid(kind, np.array([xy[0], xy[1], z]), tuple(float(v) for v in size), float(yaw))


def _touching_offset(a: _Solid, b: _Solid) -> np.ndarray:
    """World xy offset from a's centre at which b touches a (b placed along a's local x axis)."""
    reach_a = a.extents[0] / 2 if a.kind == "box" else a.size[0]
    reach_b = b.extents[0] / 2 if b.kind == "box" else b.size[0]
    return (a.Rz @ np.array([reach_a + reach_b, 0.0, 0.0]))[:2]


def _project(K: np.ndarray, R: np.ndarray, cam: np.ndarray, p_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p_c = (p_w - cam) @ R
    return (p_c @ K.T)[:, :2] / p_c[:, 2:3], p_c[:, 2]


def _sample_layout(rng, K, R, cam, width, height, n, separated):
    """Objects on the table, inside the image, with footprints >= 2 cm apart (or touching pairs)."""
    K_inv = np.linalg.inv(K)
    solids: list[_Solid] = []
    for i in range(n):
        for _ in range(60):
            kind = KINDS[rng.integers(len(KINDS))]
            yaw = rng.uniform(0, np.pi)
            partner = None
            if not separated and solids and (i == 1 or rng.random() < 0.6):
                partner = solids[rng.integers(len(solids))]
                yaw = partner.yaw  # boxes sharing a yaw touch face to face
                s = _sample_solid(rng, kind, partner.centre[:2], yaw)
                s = _Solid(kind, s.centre + np.append(_touching_offset(partner, s), 0.0), s.size, yaw)
            else:
                uv = np.array([rng.uniform(0.15, 0.85) * width, rng.uniform(0.3, 0.9) * height, 1.0])
                ray = R @ (K_inv @ uv)
                if ray[2] >= 0:
                    continue
                s = _sample_solid(rng, kind, cam[:2] - cam[2] / ray[2] * ray[:2], yaw)
            gap = 0.02 if separated else 0.0
            if any(o is not partner and np.hypot(*(s.centre[:2] - o.centre[:2]))
                   < s.footprint_radius + o.footprint_radius + gap for o in solids):
                continue
            uv, z = _project(K, R, cam, _corners(s))
            if (z > 0.1).all() and (uv >= 2).all() and (uv <= np.array([width, height]) - 3).all():
                solids.append(s)
                break
        else:
            return None
    return solids


def _sample_camera(rng: np.random.Generator, width: int, height: int):
    """K (HFOV 55-65 deg, principal point within 2% of the centre) and a pose looking at the world
    origin on the table from 0.45-0.9 m, 30-60 deg below the horizon, with a few degrees of roll.
    Returns K, R_world_camera, camera position (3,), horizontal viewing direction (3,)."""
    fx = width / 2 / np.tan(np.radians(rng.uniform(55, 65)) / 2)
    K = np.array([[fx, 0, width / 2 + rng.uniform(-0.02, 0.02) * width],
                  [0, fx, height / 2 + rng.uniform(-0.02, 0.02) * height], [0, 0, 1]])
    dist, elev, azim = rng.uniform(0.45, 0.9), np.radians(rng.uniform(30, 60)), rng.uniform(0, 2 * np.pi)
    roll = np.radians(rng.uniform(-5, 5))
    ahead = np.array([np.cos(azim), np.sin(azim), 0.0])
    cam = -dist * np.cos(elev) * ahead + np.array([0, 0, dist * np.sin(elev)])
    z_c = -cam / dist
    x_c = np.cross(z_c, [0.0, 0.0, 1.0])
    x_c /= np.linalg.norm(x_c)
    y_c = np.cross(z_c, x_c)  # REP 103: x right, y down, z forward
    x_c, y_c = np.cos(roll) * x_c + np.sin(roll) * y_c, -np.sin(roll) * x_c + np.cos(roll) * y_c
    return K, np.column_stack([x_c, y_c, z_c]), cam, ahead


@dataclass(frozen=True)
class _Layout:
    """An accepted camera and object layout, and the rays of its pixels."""

    K: np.ndarray  # 3x3 intrinsics, pixels
    R: np.ndarray  # 3x3 R_world_camera (columns: camera x, y, z in the world)
    cam: np.ndarray  # (3,) left camera position, world, m
    solids: list[_Solid]
    planes: list[tuple[np.ndarray, float]]  # table, then wall: (unit normal n, c) with n . p + c = 0
    dirs: np.ndarray  # (H*W, 3) world ray directions, camera z component 1 (so ray t is depth)
    shape: tuple[int, int]  # (height, width)

    def cast(self, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t, surface index) of every pixel's ray from ``origin`` (see :func:`_cast`)."""
        return _cast(origin, self.dirs, self.solids, self.planes, self.K, self.R, self.shape)


@dataclass(frozen=True)
class _Look:
    """Light, materials and sensor noise of a scene."""

    light: np.ndarray  # (3,) unit vector towards the light, world
    materials: list[_Material]  # one per object, then the table, then the wall
    noise_std: float  # Gaussian pixel noise per view, 0-255 scale


def _check_arguments(width: int, height: int, n_objects: int | None, baseline_m: float,
                     noise_std: float) -> None:
    if not all(isinstance(v, (int, np.integer)) and v >= 32 for v in (width, height)):
        raise ValueError(f"width and height must be integers >= 32, got {width!r} x {height!r}")
    if n_objects is not None and not 1 <= n_objects <= 8:
        raise ValueError(f"n_objects must be in 1..8 or None, got {n_objects!r}")
    if not (np.isfinite(baseline_m) and baseline_m > 0):
        raise ValueError(f"baseline_m must be a positive finite number of metres, got {baseline_m!r}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")


def _lay_out(rng: np.random.Generator, width: int, height: int, n: int, separated: bool,
             seed: int) -> tuple[_Layout, tuple[np.ndarray, np.ndarray]]:
    """Camera, objects and wall, redrawn until every object shows at least ~0.02 % of the pixels
    to the left camera; the layout and the left camera's hits (t, surface index)."""
    vs, us = np.mgrid[0:height, 0:width].astype(np.float64)
    min_visible_px = max(4, round(2e-4 * width * height))
    for _ in range(100):
        K, R, cam, ahead = _sample_camera(rng, width, height)
        solids = _sample_layout(rng, K, R, cam, width, height, n, separated)
        if solids is None:
            continue
        reach = max(ahead[:2] @ s.centre[:2] + s.footprint_radius for s in solids)
        planes = [(np.array([0.0, 0.0, 1.0]), 0.0), (-ahead, reach + rng.uniform(0.15, 0.5))]
        dirs = np.column_stack([(us.ravel() - K[0, 2]) / K[0, 0], (vs.ravel() - K[1, 2]) / K[1, 1],
                                np.ones(us.size)]) @ R.T  # camera z component 1, so t is depth
        layout = _Layout(K, R, cam, solids, planes, dirs, (height, width))
        t_left, surf_left = layout.cast(cam)
        if (np.bincount(surf_left[surf_left >= 0], minlength=n)[:n] >= min_visible_px).all():
            return layout, (t_left, surf_left)
    raise RuntimeError(f"could not lay out {n} visible objects for seed {seed}")


def _sample_look(rng: np.random.Generator, n: int, noise_std: float) -> _Look:
    """A light 35-75 deg above the table; objects in hues spread round the colour wheel, a wood
    table and a pale wall."""
    el, az = np.radians(rng.uniform(35, 75)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    h0 = rng.random()
    mats = [_material(rng, colorsys.hsv_to_rgb((h0 + i / n + rng.uniform(-0.05, 0.05)) % 1,
                                               rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.9)),
                      0.45, rng.uniform(0.004, 0.008)) for i in range(n)]
    mats.append(_material(rng, np.array([0.55, 0.36, 0.2]) * rng.uniform(0.8, 1.2), 0.5, 0.006,
                          grain_period_m=rng.uniform(0.006, 0.015)))
    mats.append(_material(rng, np.array([0.78, 0.76, 0.72]) * rng.uniform(0.85, 1.1), 0.35, 0.008))
    return _Look(light, mats, noise_std)


def _shadowed(solids: list[_Solid], origins: np.ndarray, light: np.ndarray) -> np.ndarray:
    """(N,) bool: the ray from each origin (N,3) towards the light hits an object (only objects
    occlude the light)."""
    blocked = np.zeros(len(origins), dtype=bool)
    for s in solids:
        q = s.centre - origins
        along = q @ light
        radius = np.linalg.norm(s.extents) / 2
        near = np.flatnonzero((along > -radius) & ((q * q).sum(1) - along**2 < radius**2))
        blocked[near] |= np.isfinite(_hit_solid(s, origins[near], light))
    return blocked


def _shade(layout: _Layout, look: _Look, rng: np.random.Generator, origin: np.ndarray,
           hits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """HxWx3 uint8 image of the hits (t, surface index) of the rays from ``origin``: solid-textured
    Lambertian surfaces with an ambient term, cast shadows, sRGB-like encoding and pixel noise."""
    t, surf = hits
    dirs, n = layout.dirs, len(layout.solids)
    p = origin + t[:, None] * dirs
    normals = np.zeros_like(p)
    albedo = np.zeros_like(p)
    sigma = 0.5 * t / layout.K[0, 0]  # half a pixel footprint, metres
    for k in range(n + 2):
        sel = surf == k
        normals[sel] = _normal_solid(layout.solids[k], p[sel]) if k < n else layout.planes[k - n][0]
        cos_view = np.abs((normals[sel] * dirs[sel]).sum(1)) / np.linalg.norm(dirs[sel], axis=1)
        albedo[sel] = _albedo(look.materials[k], p[sel], sigma[sel] / np.maximum(cos_view, 0.2))
    lambert = np.clip(normals @ look.light, 0.0, None)
    lit = lambert > 0
    blocked = _shadowed(layout.solids, p[lit] + 1e-5 * normals[lit], look.light)
    lambert[np.flatnonzero(lit)[blocked]] = 0.0
    radiance = albedo * (0.35 + 0.75 * lambert)[:, None]
    img = 255.0 * np.clip(radiance, 0, 1) ** (1 / 2.2)  # sRGB-like encoding
    if look.noise_std > 0:
        img += rng.normal(0, look.noise_std, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(*layout.shape, 3)


def _scene_objects(layout: _Layout) -> list[SceneObject]:
    """The solids as :class:`SceneObject` (ids from 1), poses in the left camera frame."""
    cam, R = layout.cam, layout.R
    return [SceneObject(i + 1, s.kind, s.size, (s.centre - cam) @ R, s.extents, R.T @ s.Rz,
                        s.centre.copy(), s.yaw) for i, s in enumerate(layout.solids)]


def generate_tabletop(seed: int = 0, width: int = 640, height: int = 480, n_objects: int | None = None,
                      baseline_m: float = 0.06, separated: bool = True, noise_std: float = 0.0) -> TabletopScene:
    """Render a random tabletop scene, deterministic per seed.

    :param seed: seed of np.random.default_rng; same arguments give identical scenes.
    :param width, height: image size in pixels (HFOV is 55-65 degrees whatever the size).
    :param n_objects: number of objects (1-8); None draws 3-6.
    :param baseline_m: stereo baseline; the right camera is at +baseline_m along the camera x axis,
        so true disparity is fx * baseline_m / depth_m.
    :param separated: True keeps object footprints >= 2 cm apart; False places some objects touching.
    :param noise_std: standard deviation of independent Gaussian pixel noise per view (0-255 scale).
    """
    _check_arguments(width, height, n_objects, baseline_m, noise_std)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7)) if n_objects is None else int(n_objects)
    layout, (t_left, surf_left) = _lay_out(rng, width, height, n, separated, seed)
    look = _sample_look(rng, n, noise_std)
    K, R, cam = layout.K, layout.R, layout.cam
    cam_right = cam + baseline_m * R[:, 0]
    t_right, surf_right = layout.cast(cam_right)
    rgb = _shade(layout, look, rng, cam, (t_left, surf_left))
    right_rgb = _shade(layout, look, rng, cam_right, (t_right, surf_right))

    def as_depth(t: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(t), t, np.nan).astype(np.float32).reshape(height, width)

    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, cam
    instance = np.where((surf_left >= 0) & (surf_left < n), surf_left + 1, 0).astype(np.uint16)
    return TabletopScene(
        rgb=rgb, depth_m=as_depth(t_left), instance_mask=instance.reshape(height, width),
        labels=[s.kind for s in layout.solids], K=K, right_rgb=right_rgb, right_depth_m=as_depth(t_right),
        baseline_m=float(baseline_m), T_world_camera=T,
        table_plane_camera=np.append(R.T @ np.array([0.0, 0.0, 1.0]), cam[2]),
        table_mask=(surf_left == n).reshape(height, width), objects=_scene_objects(layout),
        light_dir_world=look.light)
