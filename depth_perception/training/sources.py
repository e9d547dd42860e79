"""Training data sources: RGB + depth from folders, rosbags or the tabletop generator, opened from
the ``--data`` / ``--images`` spec strings.

Every source is a :class:`~depth_perception.training.dataset.DepthDataset` of samples with HxWx3
uint8 RGB, HxW float32 depth in metres (NaN invalid, REP 117/118; None for unlabelled images) and
3x3 float64 intrinsics in the image's pixels where known.

Spec strings (options after a colon, comma-separated):

* ``tabletop[:n=2000,size=192x144,seed=0,cache=DIR,workers=1]`` - generator scenes, rendered once
  and cached as .npz chunks (so epochs are cheap and runs reproducible);
* ``folder:PATH`` or a plain folder path - ``PATH/rgb/<stem>.png|jpg`` with ``PATH/depth/<stem>.png``
  (16-bit millimetres, 0 = invalid) or ``.npy`` (float metres), or flat ``<stem>.png`` +
  ``<stem>_depth.png|npy``; a folder of images alone is an unlabelled set. Intrinsics, if any, from
  ``PATH/K.txt`` (3x3) or ``PATH/camera.json`` (fx, fy, cx, cy);
* ``bag:PATH[,image=/camera/image,depth=/camera/depth,camera_info=/camera/camera_info,slop=0.02,
  stride=1,max=N]`` or a plain rosbag2 path - colour images paired by header stamp with registered
  depth images (REP 118 16UC1 / 32FC1) and the camera info.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import DataError, DepthDataset, DepthSample, read_depth, read_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


# ------------------------------------------------------------------------------------ folders


def _read_intrinsics(root: Path) -> np.ndarray | None:
    k_txt, cam_json = root / "K.txt", root / "camera.json"
    if k_txt.is_file():
        try:
            K = np.loadtxt(k_txt, dtype=np.float64).reshape(3, 3)
        except ValueError as exc:
            raise DataError(f"{k_txt}: expected 9 numbers (a 3x3 matrix): {exc}") from exc
        return K
    if cam_json.is_file():
        try:
            c = json.loads(cam_json.read_text())
            return np.array([[c["fx"], 0, c["cx"]], [0, c["fy"], c["cy"]], [0, 0, 1]], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{cam_json}: expected {{\"fx\", \"fy\", \"cx\", \"cy\"}}: {exc}") from exc
    return None


class FolderDataset(DepthDataset):
    """RGB images with depth files beside them (see the module docstring for the layouts)."""

    def __init__(self, root: str | os.PathLike, require_depth: bool = True) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder")
        self.root = root
        rgb_dir = root / "rgb" if (root / "rgb").is_dir() else root
        depth_dir = root / "depth" if (root / "depth").is_dir() else root
        images = sorted(p for p in rgb_dir.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_depth"))
        if not images:
            raise DataError(f"{rgb_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        pairs: list[tuple[Path, Path | None]] = []
        for img in images:
            depth = None
            stems = (img.stem,) if depth_dir != rgb_dir else (f"{img.stem}_depth",)
            for stem in stems:
                for suffix in (".png", ".npy", ".tif", ".tiff"):
                    cand = depth_dir / f"{stem}{suffix}"
                    if cand.is_file():
                        depth = cand
                        break
            pairs.append((img, depth))
        labelled = sum(d is not None for _, d in pairs)
        if require_depth:
            if labelled == 0:
                raise DataError(f"{root}: found {len(images)} image(s) but no depth files (expected "
                                f"depth/<stem>.png|npy or <stem>_depth.png|npy)")
            pairs = [(i, d) for i, d in pairs if d is not None]
        elif 0 < labelled < len(pairs):
            pairs = [(i, d) for i, d in pairs if d is not None]  # never mix labelled and unlabelled
        self.pairs = pairs
        self.has_depth = labelled > 0
        self.K = _read_intrinsics(root)
        self.description = f"folder {root} ({len(pairs)} images{'' if self.has_depth else ', no depth'})"

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> DepthSample:
        img, depth_path = self.pairs[i]
        rgb = read_rgb(img)
        depth = read_depth(depth_path) if depth_path is not None else None
        if depth is not None and depth.shape != rgb.shape[:2]:
            raise DataError(f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]} but {img.name} is "
                            f"{rgb.shape[1]}x{rgb.shape[0]}: depth must be registered to the image")
        return DepthSample(rgb, depth, None if self.K is None else self.K.copy(), img.stem)


# --------------------------------------------------------------------------------------- bags


@dataclass(frozen=True)
class BagTopics:
    """The topics a :class:`BagDataset` reads; None leaves depth or camera info out."""

    image: str = "/camera/image"
    depth: str | None = "/camera/depth"
    camera_info: str | None = "/camera/camera_info"

    def names(self) -> list[str]:
        return [t for t in (self.image, self.depth, self.camera_info) if t]


@dataclass
class _BagFrames:
    """A bag's messages as read: colour frames in bag order, depth frames by stamp, the first K."""

    images: list[tuple[int, Any]]  # (header stamp in ns, colour message)
    depths: dict[int, Any]  # header stamp in ns → depth message
    K: np.ndarray | None  # 3x3 from the first calibrated camera info


class BagDataset(DepthDataset):
    """Colour frames of a rosbag2 paired with registered depth frames by header stamp (nearest
    within ``slop_s``), decoded once into memory (``stride``/``max_frames`` bound the size)."""

    def __init__(self, path: str | os.PathLike, image_topic: str = "/camera/image",
                 depth_topic: str | None = "/camera/depth", camera_info_topic: str | None = "/camera/camera_info",
                 slop_s: float = 0.02, stride: int = 1, max_frames: int | None = None) -> None:
        if stride < 1:
            raise DataError(f"bag stride must be >= 1, got {stride}")
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: no such bag")
        self.path = p
        topics = BagTopics(image_topic, depth_topic, camera_info_topic)
        self._check_topics(p, topics.names())
        frames = self._read(topics)
        frames.images = frames.images[::stride]
        if max_frames is not None:
            frames.images = frames.images[:max_frames]
        if not frames.images:
            raise DataError(f"{p}: no messages on image topic {image_topic}")
        self._pair(frames, topics, slop_s)
        if not self.samples:
            raise DataError(f"{p}: no image on {image_topic} has a depth frame on {depth_topic} within "
                            f"{slop_s * 1e3:g} ms")
        self.has_depth = depth_topic is not None
        self.description = f"bag {p} ({len(self.samples)} frames from {image_topic})"

    def _read(self, topics: BagTopics) -> _BagFrames:
        """Every message on the topics; K from the first camera info that has a calibration."""
        from ..ros.bag import read_bag
        from ..ros.messages import MessageError, camera_info_to_model, stamp_to_ns

        frames = _BagFrames([], {}, None)
        for topic, _msgtype, _log_ns, msg in read_bag(self.path, topics.names()):
            if topic == topics.camera_info:
                if frames.K is None:
                    try:
                        frames.K = camera_info_to_model(msg).K.copy()
                    except MessageError:
                        pass  # an uncalibrated camera: train without K
                continue
            stamp = stamp_to_ns(msg.header.stamp)
            if topic == topics.image:
                frames.images.append((stamp, msg))
            elif topic == topics.depth:
                frames.depths[stamp] = msg
        return frames

    def _pair(self, frames: _BagFrames, topics: BagTopics, slop_s: float) -> None:
        """Decode each colour frame with the depth frame nearest its stamp into ``self.samples``;
        frames without depth within ``slop_s``, or undecodable, are counted in ``self.skipped``."""
        from ..ros.messages import MessageError, compressed_to_rgb, image_to_depth, image_to_rgb

        p, K = self.path, frames.K
        depth_stamps = np.array(sorted(frames.depths), dtype=np.int64)
        slop_ns = int(slop_s * 1e9)
        self.samples: list[DepthSample] = []
        self.skipped = 0
        for stamp, msg in frames.images:
            try:
                rgb = compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)
                depth = None
                if topics.depth:
                    if depth_stamps.size == 0:
                        raise DataError(f"{p}: no messages on depth topic {topics.depth}")
                    j = int(np.argmin(np.abs(depth_stamps - stamp)))
                    if abs(int(depth_stamps[j]) - stamp) > slop_ns:
                        self.skipped += 1
                        continue
                    depth = image_to_depth(frames.depths[int(depth_stamps[j])])
                    if depth.shape != rgb.shape[:2]:
                        raise DataError(f"{p}: depth ({topics.depth}) is {depth.shape[1]}x{depth.shape[0]}"
                                        f" but the image is {rgb.shape[1]}x{rgb.shape[0]}: it must be "
                                        "registered to the colour camera")
            except MessageError:
                self.skipped += 1
                continue
            self.samples.append(DepthSample(rgb, depth, None if K is None else K.copy(), f"{stamp}"))

    @staticmethod
    def _check_topics(path: Path, wanted: list[str]) -> None:
        from rosbags.highlevel import AnyReader

        from ..ros.messages import rosbags_types

        with AnyReader([path], default_typestore=rosbags_types().typestore) as reader:
            present = {c.topic for c in reader.connections}
        missing = [t for t in wanted if t not in present]
        if missing:
            raise DataError(f"{path}: topic(s) {', '.join(missing)} not in the bag (it has: "
                            f"{', '.join(sorted(present)) or 'none'})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> DepthSample:
        return self.samples[i]


# ---------------------------------------------------------------------------------- generator


def _render_chunk(args: tuple[int, int, int, int, int | None]) -> dict[str, np.ndarray]:
    from ..scene import generate_tabletop

    first, count, width, height, n_objects = args
    rgb = np.empty((count, height, width, 3), np.uint8)
    depth = np.empty((count, height, width), np.float16)
    K = np.empty((count, 3, 3), np.float64)
    for j in range(count):
        s = generate_tabletop(seed=first + j, width=width, height=height, n_objects=n_objects)
        rgb[j], depth[j], K[j] = s.rgb, s.depth_m.astype(np.float16), s.K
    return {"rgb": rgb, "depth": depth, "K": K}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "depth_perception" / "tabletop"


class TabletopDataset(DepthDataset):
    """``n`` generator scenes with seeds ``seed .. seed+n-1`` at ``width`` x ``height``, rendered
    once into ``cache_dir`` (.npz chunks of ``chunk`` scenes; depth stored as float16, ~0.05 %
    relative precision) and held in memory. ``workers`` > 1 renders chunks in parallel processes."""

    def __init__(self, n: int = 2000, width: int = 192, height: int = 144, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, chunk: int = 50, workers: int = 1,
                 n_objects: int | None = None, progress: bool = False) -> None:
        if n < 1:
            raise DataError(f"tabletop needs n >= 1 scenes, got {n}")
        if width < 32 or height < 32:
            raise DataError(f"tabletop scenes must be at least 32x32, got {width}x{height}")
        self.n, self.width, self.height, self.seed = int(n), int(width), int(height), int(seed)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        obj = "" if n_objects is None else f"_obj{n_objects}"
        self.cache_dir = cache / f"{width}x{height}{obj}"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        jobs = []
        for first in range(seed, seed + n, chunk):
            count = min(chunk, seed + n - first)
            jobs.append((first, count, width, height, n_objects))
        todo = [j for j in jobs if not self._chunk_path(j).is_file()]
        if todo:
            self._render(todo, workers, progress)
        parts = [np.load(self._chunk_path(j)) for j in jobs]
        self.rgb = np.concatenate([p["rgb"] for p in parts])
        self.depth = np.concatenate([p["depth"] for p in parts])
        self.K = np.concatenate([p["K"] for p in parts])
        self.description = f"tabletop generator ({n} scenes {width}x{height}, seeds {seed}..{seed + n - 1})"

    def _chunk_path(self, job: tuple[int, int, int, int, int | None]) -> Path:
        return self.cache_dir / f"seeds_{job[0]:07d}_{job[1]:04d}.npz"

    def _render(self, todo: list, workers: int, progress: bool) -> None:
        from tqdm import tqdm

        bar = tqdm(total=sum(j[1] for j in todo), unit="scene", desc="rendering tabletop scenes",
                   disable=not progress or None)

        def save(job: tuple, arrays: dict[str, np.ndarray]) -> None:
            path = self._chunk_path(job)
            tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, rgb=arrays["rgb"], depth=arrays["depth"], K=arrays["K"])
            os.replace(tmp, path)  # atomic: a killed run never leaves a half chunk behind
            bar.update(job[1])

        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                for job, arrays in zip(todo, pool.map(_render_chunk, todo)):
                    save(job, arrays)
        else:
            for job in todo:
                save(job, _render_chunk(job))
        bar.close()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> DepthSample:
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return DepthSample(self.rgb[i], self.depth[i].astype(np.float32), self.K[i].copy(),
                           f"tabletop_{self.seed + (i % self.n):07d}")


# ---------------------------------------------------------------------------------------- specs


def _options(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise DataError(f"data option {item!r} is not NAME=VALUE")
        k, v = item.split("=", 1)
        opts[k.strip()] = v.strip()
    return opts


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise DataError(f"size must be WIDTHxHEIGHT, got {text!r}") from exc
    return w, h


def _is_bag(path: Path) -> bool:
    return path.suffix in (".mcap", ".db3") or (path.is_dir() and (path / "metadata.yaml").is_file())


def _open_tabletop(spec: str, opt_text: str, progress: bool) -> TabletopDataset:
    o = _options(opt_text)
    unknown = set(o) - {"n", "size", "seed", "cache", "workers", "objects"}
    if unknown:
        raise DataError(f"unknown tabletop option(s) {', '.join(sorted(unknown))} (n, size, seed, "
                        "cache, workers, objects)")
    w, h = _size(o.get("size", "192x144"))
    try:
        return TabletopDataset(n=int(o.get("n", 2000)), width=w, height=h, seed=int(o.get("seed", 0)),
                               cache_dir=o.get("cache"), workers=int(o.get("workers", 1)),
                               n_objects=int(o["objects"]) if "objects" in o else None,
                               progress=progress)
    except ValueError as exc:
        raise DataError(f"tabletop spec {spec!r}: {exc}") from exc


def _open_bag(path: Path, o: dict[str, str], require_depth: bool) -> BagDataset:
    unknown = set(o) - {"image", "depth", "camera_info", "slop", "stride", "max"}
    if unknown:
        raise DataError(f"unknown bag option(s) {', '.join(sorted(unknown))} "
                        "(image, depth, camera_info, slop, stride, max)")
    depth_topic: str | None = o.get("depth", "/camera/depth")
    if depth_topic in ("", "none") or (not require_depth and "depth" not in o):
        depth_topic = None
    info = o.get("camera_info", "/camera/camera_info")
    return BagDataset(path, image_topic=o.get("image", "/camera/image"), depth_topic=depth_topic,
                      camera_info_topic=None if info in ("", "none") else info,
                      slop_s=float(o.get("slop", 0.02)), stride=int(o.get("stride", 1)),
                      max_frames=int(o["max"]) if "max" in o else None)


def open_dataset(spec: str, require_depth: bool = True, progress: bool = False) -> DepthDataset:
    """A dataset from a spec string (see the module docstring)."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind == "tabletop":
        return _open_tabletop(spec, rest, progress)
    if kind in ("bag", "folder"):
        path_text, _, opt_text = rest.partition(",")
        path = Path(os.path.expanduser(path_text))
    else:
        kind, path, opt_text = "", Path(os.path.expanduser(spec)), ""
        if not path.exists():
            raise DataError(f"data {spec!r}: no such path (or use tabletop:..., folder:PATH, bag:PATH)")
        kind = "bag" if _is_bag(path) else "folder"
    o = _options(opt_text)
    if kind == "folder":
        if o:
            raise DataError(f"folder data takes no options, got {', '.join(o)}")
        return FolderDataset(path, require_depth=require_depth)
    return _open_bag(path, o, require_depth)


__all__ = ["BagDataset", "BagTopics", "FolderDataset", "IMAGE_SUFFIXES", "TabletopDataset",
           "default_cache_dir", "open_dataset"]
