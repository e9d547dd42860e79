"""Training data: RGB + depth from folders, rosbags or the tabletop generator, and the torch view
that crops, flips and normalises samples for a network.

Every source is a sequence of :class:`DepthSample` (``len``, indexing). Depth is HxW float32 metres
with NaN where invalid (REP 117/118); ``depth_m`` is None for unlabelled images (distillation).

Sources and their ``--data`` / ``--images`` spec strings (options after a colon, comma-separated):

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
from typing import Any, Iterator, Sequence

import numpy as np

from ..metric import depth_image_to_metres

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class DataError(ValueError):
    """A data source that cannot be used; the message names the path/spec and the problem."""


@dataclass
class DepthSample:
    """One training image."""

    rgb: np.ndarray  # HxWx3 uint8
    depth_m: np.ndarray | None  # HxW float32 metres, NaN invalid; None: unlabelled
    K: np.ndarray | None  # 3x3 float64 intrinsics in this image's pixels; None: unknown
    name: str


class DepthDataset:
    """Base of the sources: random access to :class:`DepthSample`."""

    has_depth: bool = True
    description: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> DepthSample:
        raise NotImplementedError

    def __iter__(self) -> Iterator[DepthSample]:
        return (self[i] for i in range(len(self)))


class Subset(DepthDataset):
    """The samples of ``base`` at ``indices`` (train / held-out splits)."""

    def __init__(self, base: DepthDataset, indices: Sequence[int]) -> None:
        self.base, self.indices = base, [int(i) for i in indices]
        self.has_depth = base.has_depth
        self.description = f"{len(self.indices)} of {base.description}"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> DepthSample:
        return self.base[self.indices[i]]


def split(dataset: DepthDataset, holdout: int | float, seed: int = 0) -> tuple[Subset, Subset]:
    """(train, held-out): ``holdout`` samples (an int) or a fraction of them, drawn with ``seed``."""
    n = len(dataset)
    k = int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    if not 0 <= k < n:
        raise DataError(f"cannot hold out {holdout} of {n} samples: need at least one to train on")
    order = np.random.default_rng(seed).permutation(n)
    return Subset(dataset, sorted(order[k:])), Subset(dataset, sorted(order[:k]))


# ------------------------------------------------------------------------------- depth decoding


def depth_from_array(depth: np.ndarray, name: str = "depth") -> np.ndarray:
    """Depth as stored → HxW float32 metres, NaN invalid: uint16 is millimetres (0 invalid),
    float is metres (NaN / <= 0 / inf invalid). 8-bit depth is refused (its units are unknown)."""
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise DataError(f"{name}: depth must be a single-channel HxW image, got shape {d.shape}")
    if d.dtype != np.uint16 and d.dtype.kind != "f":
        raise DataError(f"{name}: depth of type {d.dtype} is ambiguous; store 16-bit PNG millimetres "
                        "or float .npy metres")
    return depth_image_to_metres(d)  # the node's rule: millimetres, 0 / NaN / <= 0 invalid


def read_depth(path: str | Path) -> np.ndarray:
    """A depth file (16-bit PNG in mm, or .npy in metres) → HxW float32 metres, NaN invalid."""
    p = Path(path)
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{p}: not a readable .npy depth file: {exc}") from exc
        return depth_from_array(arr, str(p))
    import cv2

    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{p}: not a readable depth image")
    return depth_from_array(img, str(p))


def _read_rgb(path: Path) -> np.ndarray:
    from ..files import InputError, read_image

    try:
        return read_image(path)
    except InputError as exc:
        raise DataError(str(exc)) from exc


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
        rgb = _read_rgb(img)
        depth = read_depth(depth_path) if depth_path is not None else None
        if depth is not None and depth.shape != rgb.shape[:2]:
            raise DataError(f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]} but {img.name} is "
                            f"{rgb.shape[1]}x{rgb.shape[0]}: depth must be registered to the image")
        return DepthSample(rgb, depth, None if self.K is None else self.K.copy(), img.stem)


# --------------------------------------------------------------------------------------- bags


class BagDataset(DepthDataset):
    """Colour frames of a rosbag2 paired with registered depth frames by header stamp (nearest
    within ``slop_s``), decoded once into memory (``stride``/``max_frames`` bound the size)."""

    def __init__(self, path: str | os.PathLike, image_topic: str = "/camera/image",
                 depth_topic: str | None = "/camera/depth", camera_info_topic: str | None = "/camera/camera_info",
                 slop_s: float = 0.02, stride: int = 1, max_frames: int | None = None) -> None:
        from ..ros.bag import read_bag
        from ..ros.messages import (
            MessageError,
            camera_info_to_model,
            compressed_to_rgb,
            image_to_depth,
            image_to_rgb,
            stamp_to_ns,
        )

        if stride < 1:
            raise DataError(f"bag stride must be >= 1, got {stride}")
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: no such bag")
        self.path = p
        self._check_topics(p, [t for t in (image_topic, depth_topic, camera_info_topic) if t])
        images: list[tuple[int, Any]] = []
        depths: dict[int, Any] = {}
        K = None
        topics = [t for t in (image_topic, depth_topic, camera_info_topic) if t]
        for topic, msgtype, _log_ns, msg in read_bag(p, topics):
            if topic == camera_info_topic:
                if K is None:
                    try:
                        K = camera_info_to_model(msg).K.copy()
                    except MessageError:
                        pass  # an uncalibrated camera: train without K
                continue
            stamp = stamp_to_ns(msg.header.stamp)
            if topic == image_topic:
                images.append((stamp, msg))
            elif topic == depth_topic:
                depths[stamp] = msg
        images = images[::stride]
        if max_frames is not None:
            images = images[:max_frames]
        if not images:
            raise DataError(f"{p}: no messages on image topic {image_topic}")
        depth_stamps = np.array(sorted(depths), dtype=np.int64)
        slop_ns = int(slop_s * 1e9)
        self.samples: list[DepthSample] = []
        self.skipped = 0
        for stamp, msg in images:
            try:
                rgb = compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)
                depth = None
                if depth_topic:
                    if depth_stamps.size == 0:
                        raise DataError(f"{p}: no messages on depth topic {depth_topic}")
                    j = int(np.argmin(np.abs(depth_stamps - stamp)))
                    if abs(int(depth_stamps[j]) - stamp) > slop_ns:
                        self.skipped += 1
                        continue
                    depth = image_to_depth(depths[int(depth_stamps[j])])
                    if depth.shape != rgb.shape[:2]:
                        raise DataError(f"{p}: depth ({depth_topic}) is {depth.shape[1]}x{depth.shape[0]}"
                                        f" but the image is {rgb.shape[1]}x{rgb.shape[0]}: it must be "
                                        "registered to the colour camera")
            except MessageError:
                self.skipped += 1
                continue
            self.samples.append(DepthSample(rgb, depth, None if K is None else K.copy(), f"{stamp}"))
        if not self.samples:
            raise DataError(f"{p}: no image on {image_topic} has a depth frame on {depth_topic} within "
                            f"{slop_s * 1e3:g} ms")
        self.has_depth = depth_topic is not None
        self.description = f"bag {p} ({len(self.samples)} frames from {image_topic})"

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


def open_dataset(spec: str, require_depth: bool = True, progress: bool = False) -> DepthDataset:
    """A dataset from a spec string (see the module docstring)."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind == "tabletop":
        o = _options(rest)
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


# ----------------------------------------------------------------------------- the torch view


@dataclass(frozen=True)
class Augment:
    """Random training augmentation: scale jitter (then crop), horizontal flip, colour jitter."""

    scale: tuple[float, float] = (1.0, 1.25)
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def resize_map(values: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an HxW map (depth, labels, sparse samples): never blends a
    foreground and a background value into one that exists nowhere in the scene."""
    import cv2

    if values.shape == tuple(size_hw):
        return values
    return cv2.resize(values, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST)


def resize_sample(rgb: np.ndarray, target: np.ndarray | None, K: np.ndarray | None,
                  size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Resize RGB (area/linear), target (nearest, see :func:`resize_map`) and K to ``size_hw``."""
    import cv2

    h, w = rgb.shape[:2]
    nh, nw = size_hw
    if (nh, nw) == (h, w):
        return rgb, target, None if K is None else K.copy()
    interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
    if target is not None:
        target = resize_map(target, (nh, nw))
    if K is not None:
        K = K.copy()
        sx, sy = nw / w, nh / h
        K[0, :] *= sx
        K[1, :] *= sy
        # pixel centres: u' + 0.5 = s (u + 0.5)
        K[0, 2] += 0.5 * sx - 0.5
        K[1, 2] += 0.5 * sy - 0.5
    return rgb, target, K


class TrainingView:
    """A torch-style dataset over a :class:`DepthDataset` that yields fixed-size network inputs.

    Each item is a dict: ``pixel_values`` (3 x h x w float32, normalised with ``mean``/``std``),
    ``target`` (h x w float32: depth in metres, or the given ``targets`` e.g. pseudo-labels; NaN
    invalid), ``K`` (3 x 3 float32 in the crop's pixels; zeros when unknown) and ``has_K``.
    ``extras`` (name → one HxW map per image, e.g. sparse depth samples) are cropped and flipped
    exactly like the target and returned under their names.
    Training crops a random window after a random scale; evaluation resizes so the image covers
    ``crop_hw`` and takes the centre.
    """

    def __init__(self, dataset: DepthDataset, crop_hw: tuple[int, int], mean: Sequence[float],
                 std: Sequence[float], augment: Augment | None = None, seed: int = 0,
                 targets: Sequence[np.ndarray] | None = None,
                 extras: dict[str, Sequence[np.ndarray]] | None = None) -> None:
        if targets is None and not dataset.has_depth:
            raise DataError(f"{dataset.description}: has no depth to train on (give pseudo-labels)")
        for what, maps in ([("targets", targets)] if targets is not None else []) + list((extras or {}).items()):
            if len(maps) != len(dataset):
                raise DataError(f"{len(maps)} {what} maps for {len(dataset)} images")
        self.dataset, self.crop_hw, self.augment, self.seed = dataset, tuple(crop_hw), augment, seed
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)
        self.targets = targets
        self.extras = dict(extras or {})
        self.epoch = 0  # set by the trainer: the augmentation of item i differs per epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        sample = self.dataset[i]
        target = self.targets[i] if self.targets is not None else sample.depth_m
        if target is None:
            raise DataError(f"{sample.name}: no depth to train on")
        maps = [np.asarray(target, np.float32)] + [np.asarray(m[i], np.float32) for m in self.extras.values()]
        rgb, K = sample.rgb, sample.K
        h, w = rgb.shape[:2]
        for m in maps:
            if m.shape != (h, w):
                raise DataError(f"{sample.name}: a {m.shape[1]}x{m.shape[0]} target for a {w}x{h} image")
        ch, cw = self.crop_hw
        rng = np.random.default_rng((self.seed, self.epoch, i))
        cover = max(ch / h, cw / w)
        aug = self.augment
        s = cover * (rng.uniform(*aug.scale) if aug else 1.0)
        nh, nw = max(ch, int(round(h * s))), max(cw, int(round(w * s)))
        rgb, _, K = resize_sample(rgb, None, K, (nh, nw))
        maps = [resize_map(m, (nh, nw)) for m in maps]
        if aug:
            top, left = int(rng.integers(0, nh - ch + 1)), int(rng.integers(0, nw - cw + 1))
        else:
            top, left = (nh - ch) // 2, (nw - cw) // 2
        rgb = rgb[top:top + ch, left:left + cw]
        maps = [m[top:top + ch, left:left + cw] for m in maps]
        if K is not None:
            K = K.copy()
            K[0, 2] -= left
            K[1, 2] -= top
        x = rgb.astype(np.float32) / 255.0
        if aug:
            if aug.flip and rng.random() < 0.5:
                x, maps = x[:, ::-1], [m[:, ::-1] for m in maps]
                if K is not None:
                    K[0, 2] = cw - 1 - K[0, 2]
            gray = x.mean(axis=2, keepdims=True)
            x = gray + (x - gray) * (1 + rng.uniform(-aug.saturation, aug.saturation))
            x = x.mean() + (x - x.mean()) * (1 + rng.uniform(-aug.contrast, aug.contrast))
            x = np.clip(x * (1 + rng.uniform(-aug.brightness, aug.brightness)), 0.0, 1.0)
        x = (x - self.mean) / self.std
        item = {
            "pixel_values": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(maps[0], np.float32)),
            "K": torch.from_numpy((K if K is not None else np.zeros((3, 3))).astype(np.float32)),
            "has_K": torch.tensor(K is not None),
        }
        for name, m in zip(self.extras, maps[1:]):
            item[name] = torch.from_numpy(np.ascontiguousarray(m, np.float32))
        return item


__all__ = [
    "Augment", "BagDataset", "DataError", "DepthDataset", "DepthSample", "FolderDataset", "Subset",
    "TabletopDataset", "TrainingView", "default_cache_dir", "depth_from_array", "open_dataset",
    "read_depth", "resize_map", "resize_sample", "split",
]
