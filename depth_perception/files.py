"""Images, videos and point clouds on disk: reading inputs, writing depth and PLY files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
DEPTH_FORMATS = ("png8", "png16", "npy", "color")


class InputError(ValueError):
    """An input path that cannot be read; the message names the path and the problem."""


@dataclass
class InputImage:
    name: str  # stem used for output files; frame index appended for videos
    rgb: np.ndarray  # HxWx3 uint8


def read_image(path: str | Path) -> np.ndarray:
    """An image file → HxWx3 uint8 RGB (gray is replicated; 16-bit is scaled to 8)."""
    import cv2

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an image file")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{p}: not a readable image (corrupt, or an unsupported format)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{p}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """HxWx3 RGB or HxW gray (uint8 or uint16) → image file; raises OSError on failure."""
    import cv2

    img = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(img)):
        raise OSError(f"{path}: could not write image")


def list_inputs(spec: str) -> tuple[str, list[Path]]:
    """Resolve an input spec to ("image" | "video", sorted paths): a file, a folder or a glob."""
    p = Path(spec)
    if any(c in spec for c in "*?["):
        paths = sorted(
            Path(x) for x in glob.glob(spec)
            if Path(x).suffix.lower() in IMAGE_SUFFIXES and Path(x).is_file()
        )
        if not paths:
            raise InputError(f"{spec}: the pattern matches no image files")
        return "image", paths
    if p.is_dir():
        paths = sorted(x for x in p.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES and x.is_file())
        if not paths:
            raise InputError(f"{p}: the folder holds no image files")
        return "image", paths
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return "video", [p]
    return "image", [p]


def iter_images(spec: str) -> Iterator[InputImage]:
    """Yield every frame named by ``spec`` (image, folder, glob or video) as RGB."""
    kind, paths = list_inputs(spec)
    if kind == "video":
        yield from iter_video(paths[0])
        return
    for path in paths:
        yield InputImage(path.stem, read_image(path))


def count_frames(spec: str) -> int | None:
    kind, paths = list_inputs(spec)
    if kind == "image":
        return len(paths)
    import cv2

    cap = cv2.VideoCapture(str(paths[0]))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n if n > 0 else None


def iter_video(path: Path) -> Iterator[InputImage]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: not a readable video")
    try:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield InputImage(f"{path.stem}_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        if index == 0:
            raise InputError(f"{path}: the video has no readable frames")
    finally:
        cap.release()


def write_depth(path: str | Path, depth_m: np.ndarray, fmt: str = "png8") -> Path:
    """Write HxW metric depth as ``fmt``; returns the path written (suffix set from the format).

    - ``png8``: 8-bit gray, 255 = near, 0 = far/invalid (inverse-depth scaled per image);
    - ``png16``: 16-bit millimetres, 0 = invalid (REP 118 16UC1);
    - ``npy``: float32 metres, NaN invalid;
    - ``color``: colourised PNG (turbo on inverse depth).
    """
    from .visualize import colorize_depth, depth_to_gray8

    p = Path(path)
    if fmt == "npy":
        p = p.with_suffix(".npy")
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, depth_m.astype(np.float32))
        return p
    p = p.with_suffix(".png")
    if fmt == "png8":
        write_image(p, depth_to_gray8(depth_m))
    elif fmt == "png16":
        mm = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000.0), 0)
        write_image(p, np.where(mm > 65535, 0, mm).astype(np.uint16))
    elif fmt == "color":
        write_image(p, colorize_depth(depth_m))
    else:
        raise ValueError(f"unknown depth format {fmt!r} (choose from {', '.join(DEPTH_FORMATS)})")
    return p


def write_ply(
    path: str | Path,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    normals: np.ndarray | None = None,
) -> int:
    """Binary little-endian PLY of the finite points (...x3 metres), with optional ...x3 uint8
    colours and ...x3 normals. Returns the number of points written."""
    pts = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(pts).all(axis=1)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    n = int(keep.sum())
    rec = np.empty(n, dtype=fields)
    rec["x"], rec["y"], rec["z"] = pts[keep].T
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float32).reshape(-1, 3)[keep]
        rec["nx"], rec["ny"], rec["nz"] = nrm.T
    if rgb is not None:
        col = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)[keep]
        rec["red"], rec["green"], rec["blue"] = col.T
    ply_types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property {ply_types[t]} {name}" for name, t in fields]
    header += ["end_header"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rec.tobytes())
    return n


def read_ply(path: str | Path) -> np.ndarray:
    """Read back a binary little-endian PLY written by :func:`write_ply` → structured array."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    if lines[0] != "ply" or "binary_little_endian" not in lines[1]:
        raise InputError(f"{path}: not a binary little-endian PLY")
    n = 0
    fields = []
    to_np = {"float": "<f4", "uchar": "u1", "double": "<f8", "int": "<i4", "ushort": "<u2"}
    for line in lines:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            n = int(parts[2])
        elif parts[0] == "property":
            fields.append((parts[2], to_np[parts[1]]))
    return np.frombuffer(data[end:], dtype=fields, count=n)


def ensure_dir(path: str | Path) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    if not os.access(p, os.W_OK):
        raise InputError(f"{p}: folder is not writable")
    return p
