"""The training sample, the dataset interface every source implements, and depth decoding.

A :class:`DepthSample` is one image: ``rgb`` HxWx3 uint8, ``depth_m`` HxW float32 metres with NaN
where invalid (REP 117/118) or None for unlabelled images (distillation), ``K`` 3x3 float64
intrinsics in the image's pixels or None. A :class:`DepthDataset` is a sequence of them (``len``,
indexing, iteration); :func:`split` draws a seeded train / held-out pair of :class:`Subset`.
Stored depth is decoded by one rule: uint16 is millimetres with 0 invalid, float is metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..metric import depth_image_to_metres


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


def read_rgb(path: Path) -> np.ndarray:
    """An image file → HxWx3 uint8 RGB (the CLI's reader; its errors as :class:`DataError`)."""
    from ..files import InputError, read_image

    try:
        return read_image(path)
    except InputError as exc:
        raise DataError(str(exc)) from exc


__all__ = ["DataError", "DepthDataset", "DepthSample", "Subset", "depth_from_array", "read_depth",
           "read_rgb", "split"]
