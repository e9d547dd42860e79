"""A robot driving past textured boxes, seen by one distorted camera: exact images, true depth and
noisy odometry at known poses (imported as a plain module by the motion tests and bench/accuracy.py).

The world is a handful of textured rectangles (a floor, a back wall, two boxes) carrying real
photographs from scikit-image, ray-cast analytically from a raw camera with plumb_bob distortion
(each pixel's ray is its undistorted coordinate, so the image is what a real lens gives; 2x2
supersampled against aliasing). The world frame is the camera optical frame at t = 0 (x right,
y down, z forward); the robot's base frame is x forward, y left, z up, 0.4 m below and 0.1 m
behind the camera (:data:`T_BASE_CAMERA`). Odometry reports T_odom_base at its own rate and
clock offset, with a scale error of about 1.5 % per image interval and a fraction of a degree of
rotation noise, like wheel odometry.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from depth_perception.camera import CameraModel

SIZE = (320, 240)  # width, height
K = np.array([[260.0, 0.0, 161.0], [0.0, 261.0, 118.0], [0.0, 0.0, 1.0]])
D = np.array([-0.25, 0.08, 0.001, -0.001, 0.0])
CAMERA = CameraModel(width=SIZE[0], height=SIZE[1], K=K, D=D)
# camera optical frame in the base frame: optical z = base x (forward), optical x = -base y
T_BASE_CAMERA = np.eye(4)
T_BASE_CAMERA[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
T_BASE_CAMERA[:3, 3] = [0.1, 0.0, 0.4]
FRAME_NS = 100_000_000  # images at 10 Hz


@dataclass(frozen=True)
class Quad:
    """A textured rectangle: corner ``origin``, unit edges ``e1``, ``e2`` of lengths ``size``."""

    origin: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    size: tuple[float, float]
    texture: np.ndarray  # HxWx3 uint8, tiled
    px_per_m: float = 350.0


def _texture(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return np.ascontiguousarray(np.dstack([img] * 3) if img.ndim == 2 else img[..., :3])


def _box(centre, size: float, texture: np.ndarray) -> list[Quad]:
    """The five visible faces of an axis-aligned cube (not the bottom)."""
    c = np.asarray(centre, dtype=np.float64)
    h = size / 2
    x, y, z = np.eye(3)
    faces = [(c + [-h, -h, -h], x, y), (c + [-h, -h, -h], x, z),  # front (z-), top (y-)
             (c + [-h, -h, -h], z, y), (c + [h, -h, -h], z, y),  # left, right
             (c + [-h, -h, h], x, y)]  # back
    return [Quad(o, a, b, (size, size), texture) for o, a, b in faces]


def make_world() -> list[Quad]:
    x, y, z = np.eye(3)
    floor = Quad(np.array([-4.0, 0.4, 0.2]), x, z, (8.0, 4.0), _texture("brick"), 250.0)
    wall = Quad(np.array([-4.0, -2.5, 3.0]), x, y, (8.0, 2.9), _texture("astronaut"), 200.0)
    return ([floor, wall] + _box([0.15, 0.15, 1.4], 0.5, _texture("coffee"))
            + _box([-0.55, 0.2, 2.0], 0.4, _texture("chelsea")))


_RAYS: dict[tuple, np.ndarray] = {}


def _pixel_rays(camera: CameraModel, step: float) -> np.ndarray:
    """HxWx3 rays (z = 1) of the raw image's sample points, ``step`` pixels apart (cached)."""
    key = (camera.width, camera.height, camera.K.tobytes(), camera.D.tobytes(), step)
    if key not in _RAYS:
        _RAYS[key] = _undistorted_rays(camera, step)
    return _RAYS[key]


def _undistorted_rays(camera: CameraModel, step: float) -> np.ndarray:
    w, h = camera.width, camera.height
    u = np.arange(0, w, step) + (step - 1) / 2
    v = np.arange(0, h, step) + (step - 1) / 2
    uu, vv = np.meshgrid(u, v)
    pix = np.stack([uu, vv], -1).reshape(-1, 1, 2)
    xy = cv2.undistortPoints(pix, camera.K, camera.D,
                             criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12))
    rays = np.concatenate([xy.reshape(-1, 2), np.ones((xy.shape[0], 1))], 1)
    return rays.reshape(len(v), len(u), 3)


def _cast(world: list[Quad], rays_world: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 float32 colour, HxW ray parameter t of the nearest hit; inf = none)."""
    best = np.full(rays_world.shape[:2], np.inf)
    colour = np.zeros(rays_world.shape, np.float32)
    for q in world:
        n = np.cross(q.e1, q.e2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = ((q.origin - origin) @ n) / (rays_world @ n)
            X = origin + t[..., None] * rays_world
        a = (X - q.origin) @ q.e1
        b = (X - q.origin) @ q.e2
        hit = (t > 1e-6) & (a >= 0) & (a <= q.size[0]) & (b >= 0) & (b <= q.size[1]) & (t < best)
        if not hit.any():
            continue
        th, tw = q.texture.shape[:2]
        tu = np.where(hit, a * q.px_per_m % tw, 0).astype(np.float32)
        tv = np.where(hit, b * q.px_per_m % th, 0).astype(np.float32)
        sampled = cv2.remap(q.texture, tu, tv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        colour[hit] = sampled[hit]
        best[hit] = t[hit]
    return colour, best


def render(world: list[Quad], T_world_camera: np.ndarray, camera: CameraModel = CAMERA
           ) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 uint8 raw image, HxW float32 true z in metres) from the camera pose T_world_camera."""
    R, c = T_world_camera[:3, :3], T_world_camera[:3, 3]
    fine = _pixel_rays(camera, 0.5)
    colour, _ = _cast(world, fine @ R.T, c)
    image = cv2.resize(colour, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    rays = _pixel_rays(camera, 1.0)
    _, t = _cast(world, rays @ R.T, c)  # rays have z = 1 in the camera frame: t is the depth
    depth = np.where(np.isfinite(t), t, np.nan).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), depth


def camera_pose(t_s: float, kind: str = "drive") -> np.ndarray:
    """T_world_camera at time ``t_s``: ``drive`` = sideways and slightly forward at 0.5 m/s with
    a gentle yaw; ``rotate`` = turning on the spot at 30 deg/s; ``stand`` = not moving."""
    T = np.eye(4)
    if kind == "drive":
        T[:3, :3] = Rotation.from_euler("y", 3.0 * np.sin(1.5 * t_s), degrees=True).as_matrix()
        T[:3, 3] = [0.5 * t_s - 0.35, 0.0, 0.1 * t_s]
    elif kind == "rotate":
        T[:3, :3] = Rotation.from_euler("y", 30.0 * t_s, degrees=True).as_matrix()
    elif kind != "stand":
        raise ValueError(kind)
    return T


@dataclass
class Sequence:
    images: list[np.ndarray]
    depths: list[np.ndarray]
    stamps_ns: list[int]
    T_world_camera: list[np.ndarray]
    odometry: list[tuple[int, np.ndarray]]  # (stamp_ns, noisy T_odom_base)


def odometry(kind: str, duration_s: float, rate_hz: float = 50.0, offset_ns: int = 7_000_000,
             scale_noise: float = 0.015, angle_noise_deg: float = 0.2, seed: int = 0
             ) -> list[tuple[int, np.ndarray]]:
    """Noisy T_odom_base at ``rate_hz`` from ``offset_ns`` (a clock unlike the camera's): the true
    translation increments scaled by 1 + N(0, scale_noise) per image interval, each pose's rotation
    off by N(0, angle_noise_deg) about a random axis."""
    rng = np.random.default_rng(seed)
    inv_base = np.linalg.inv(T_BASE_CAMERA)
    period = int(1e9 / rate_hz)
    stamps = np.arange(offset_ns - 2 * period, int(duration_s * 1e9) + FRAME_NS, period)
    scales = 1.0 + scale_noise * rng.normal(size=len(stamps) // 5 + 2)
    out, pos, prev = [], None, None
    for i, s in enumerate(stamps):
        true = camera_pose(s / 1e9, kind) @ inv_base
        pos = true[:3, 3].copy() if pos is None else pos + scales[int(s // FRAME_NS)] * (true[:3, 3] - prev)
        prev = true[:3, 3]
        noisy = true.copy()
        noisy[:3, 3] = pos
        axis = rng.normal(size=3)
        noisy[:3, :3] = Rotation.from_rotvec(np.radians(angle_noise_deg * rng.normal())
                                             * axis / np.linalg.norm(axis)).as_matrix() @ true[:3, :3]
        out.append((int(s), noisy))
    return out


def sequence(n_frames: int, kind: str = "drive", seed: int = 0, world: list[Quad] | None = None,
             **noise) -> Sequence:
    """``n_frames`` images at 10 Hz with true depth and poses, and the odometry around them
    (``noise``: :func:`odometry`'s ``scale_noise`` and ``angle_noise_deg``)."""
    world = make_world() if world is None else world
    stamps = [k * FRAME_NS for k in range(n_frames)]
    poses = [camera_pose(s / 1e9, kind) for s in stamps]
    rendered = [render(world, T) for T in poses]
    odo = odometry(kind, (n_frames - 1) * FRAME_NS / 1e9, seed=seed, **noise)
    return Sequence([r[0] for r in rendered], [r[1] for r in rendered], stamps, poses, odo)
