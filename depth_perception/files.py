"""Images, videos and point clouds on disk: reading inputs, writing depth and PLY files."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
DEPTH_FORMATS = ("png8", "png16", "npy", "color")

#: Largest input image (width x height) read by default: 40 MP, above any robot camera and an 8K
#: frame. Processing takes ~40x an image's pixel count in bytes, so the limit bounds memory; a
#: compressed file's own size says nothing about it (a 30 kB PNG can hold 15000x15000 pixels).
MAX_PIXELS = 40_000_000


class InputError(ValueError):
    """An input path that cannot be read; the message names the path and the problem."""


@dataclass
class InputImage:
    name: str  # stem used for output files; frame index appended for videos
    rgb: np.ndarray  # HxWx3 uint8


def header_pixels(source: str | Path | bytes) -> tuple[str, int] | None:
    """(size as text, pixel count) from the header of an image file or of encoded image bytes,
    without decoding a pixel; None when Pillow cannot read the header (the decoder then reports
    the image)."""
    import io
    import re

    from PIL import Image

    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(fp) as im:
            width, height = im.size
            return f"{width}x{height}", width * height
    except Image.DecompressionBombError as exc:  # over Pillow's own limit (~179 MP)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        n = int(found.group(1)) if found else 1 << 31
        return f"{n} pixels", n
    except Exception:  # noqa: BLE001 - not Pillow's format or a broken header
        return None


def check_pixels(size: str, pixels: int, max_pixels: int, what: str) -> None:
    """Raise InputError when an image of ``pixels`` pixels (``size``, e.g. "640x480") is over
    ``max_pixels``."""
    if pixels > max_pixels:
        raise InputError(f"{what}: {size} = {pixels / 1e6:.1f} MP is over the limit of "
                         f"{max_pixels / 1e6:.1f} MP (--max-pixels)")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file → HxWx3 uint8 RGB (gray is replicated; 16-bit is scaled to 8). A file whose
    header says more than ``max_pixels`` pixels is refused before any pixel is decoded."""
    import cv2

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an image file")
    header = header_pixels(p)
    if header is not None:
        check_pixels(*header, max_pixels, str(p))
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


def iter_images(spec: str, max_pixels: int = MAX_PIXELS) -> Iterator[InputImage]:
    """Yield every frame named by ``spec`` (image, folder, glob or video) as RGB; frames over
    ``max_pixels`` are refused (InputError) before they are decoded."""
    kind, paths = list_inputs(spec)
    if kind == "video":
        yield from iter_video(paths[0], max_pixels)
        return
    for path in paths:
        yield InputImage(path.stem, read_image(path, max_pixels))


def count_frames(spec: str) -> int | None:
    kind, paths = list_inputs(spec)
    if kind == "image":
        return len(paths)
    import cv2

    cap = cv2.VideoCapture(str(paths[0]))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n if n > 0 else None


def iter_video(path: Path, max_pixels: int = MAX_PIXELS) -> Iterator[InputImage]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: not a readable video")
    try:
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_pixels(f"{width}x{height}", width * height, max_pixels, str(path))
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


def depth_suffix(fmt: str) -> str:
    """The file suffix :func:`write_depth` gives ``fmt``."""
    return ".npy" if fmt == "npy" else ".png"


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


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, same suffix) to write a file or a folder to;
    it becomes ``path`` only when the block ends without an exception, and is removed otherwise, so
    a failed or killed run never leaves half an output. An existing ``path`` (other than an empty
    folder) is refused unless ``overwrite``, and is replaced only at that final rename."""
    final = Path(path)
    empty_dir = final.is_dir() and not any(final.iterdir())
    if final.exists() and not (overwrite or empty_dir):
        raise FileExistsError(f"{final}: already exists (--overwrite replaces it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.partial-", suffix=final.suffix,
                                dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # the caller creates a file or a folder under this unique name
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if not tmp.exists():
        return
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def ensure_dir(path: str | Path) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    if not os.access(p, os.W_OK):
        raise InputError(f"{p}: folder is not writable")
    return p
