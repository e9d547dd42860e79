"""Pictures for people: colourised depth, grayscale depth, a rendered cloud view, panels."""

from __future__ import annotations

import numpy as np


def depth_range(depth_m: np.ndarray) -> tuple[float, float]:
    """Robust (near, far) in metres from the valid pixels (2nd/98th percentile)."""
    # every other pixel of every other row: a range for colouring needs no exact percentile, and
    # a VGA frame's sort was most of the cost of the colourised-depth topic
    z = depth_m[::2, ::2] if depth_m.ndim == 2 and depth_m.size > 65536 else depth_m
    with np.errstate(invalid="ignore"):
        d = z[np.isfinite(z) & (z > 0)]
    if d.size == 0:
        return 0.1, 1.0
    near, far = np.percentile(d, [2.0, 98.0])
    return float(near), float(max(far, near * 1.001))


def depth_to_gray8(depth_m: np.ndarray, near_m: float | None = None, far_m: float | None = None):
    """HxW metres → HxW uint8, 255 = near, 1 = far, 0 = invalid (the usual depth-PNG convention).

    Scaled linearly in inverse depth, which is how monocular networks see the world.
    """
    if near_m is None or far_m is None:
        near_m, far_m = depth_range(depth_m)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    inv = np.zeros(depth_m.shape, dtype=np.float32)
    np.divide(1.0, depth_m, out=inv, where=valid)
    lo, hi = 1.0 / far_m, 1.0 / near_m
    t = np.clip((inv - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    gray = (1.0 + t * 254.0).round().astype(np.uint8)
    gray[~valid] = 0
    return gray


def colorize_depth(depth_m: np.ndarray, near_m: float | None = None, far_m: float | None = None):
    """HxW metres → HxWx3 uint8 RGB (turbo colour map on inverse depth, black = invalid)."""
    import cv2

    gray = depth_to_gray8(depth_m, near_m, far_m)
    bgr = cv2.applyColorMap(gray, cv2.COLORMAP_TURBO)
    bgr[gray == 0] = 0
    return np.ascontiguousarray(bgr[..., ::-1])


def render_cloud_view(
    points: np.ndarray,
    rgb: np.ndarray,
    K: np.ndarray,
    size: tuple[int, int],
    yaw_deg: float = 25.0,
    pitch_deg: float = -15.0,
) -> np.ndarray:
    """Render a coloured cloud (...x3 metres, camera frame) from a virtual camera that orbits the
    cloud's median point, with a z-buffer. Returns HxWx3 uint8 (``size`` = (width, height)).
    """
    w, h = size
    pts = points.reshape(-1, 3)
    col = rgb.reshape(-1, 3)
    ok = np.isfinite(pts).all(axis=1)
    pts, col = pts[ok].astype(np.float64), col[ok]
    out = np.full((h, w, 3), 32, dtype=np.uint8)
    if pts.shape[0] == 0:
        return out
    centre = np.median(pts, axis=0)
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    q = (pts - centre) @ (Rx @ Ry).T + centre
    z = q[:, 2]
    front = z > 1e-3
    q, col, z = q[front], col[front], z[front]
    u = np.round(K[0, 0] * q[:, 0] / z + K[0, 2]).astype(np.int64)
    v = np.round(K[1, 1] * q[:, 1] / z + K[1, 2]).astype(np.int64)
    inside = (u >= 0) & (u < w - 1) & (v >= 0) & (v < h - 1)
    u, v, z, col = u[inside], v[inside], z[inside], col[inside]
    order = np.argsort(-z)  # far first, so nearer points overwrite them
    u, v, col = u[order], v[order], col[order]
    for du in (0, 1):  # 2x2 splats close the gaps a rotated view opens
        for dv in (0, 1):
            out[v + dv, u + du] = col
    return out


def make_panel(images: list[np.ndarray], titles: list[str], height: int = 360) -> np.ndarray:
    """Side-by-side panel of HxWx3 uint8 RGB images resized to one height, each with a title."""
    import cv2

    tiles = []
    for img, title in zip(images, titles):
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        scale = height / img.shape[0]
        tile = cv2.resize(img, (max(1, round(img.shape[1] * scale)), height),
                          interpolation=cv2.INTER_AREA)
        tile = np.ascontiguousarray(tile)
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 26), (0, 0, 0), thickness=-1)
        cv2.putText(tile, title, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def label_overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a distinct colour per instance id (0 = background untouched) over an RGB image."""
    import cv2

    ids = np.asarray(labels)
    rng = np.random.default_rng(7)
    palette = rng.integers(40, 256, size=(int(ids.max()) + 1, 3)).astype(np.uint8)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    blended = cv2.addWeighted(rgb, 1.0 - alpha, palette[ids], alpha, 0.0)
    return np.where((ids > 0)[..., None], blended, rgb)
