"""The network's view of a dataset: resize, crop, flip, colour-jitter and normalise samples into
fixed-size torch tensors.

A :class:`TrainingView` item is ``pixel_values`` 3 x h x w float32 (RGB / 255, then normalised with
the model's mean/std), ``target`` h x w float32 (depth in metres, or given targets such as inverse
depth pseudo-labels; NaN invalid), ``K`` 3 x 3 float32 in the crop's pixels (zeros when unknown),
``has_K`` and any extra h x w maps under their names. (h, w) is the crop size. Maps are resized
nearest-neighbour so that depth is never blended across edges; K follows every resize, crop and flip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .dataset import DataError, DepthDataset


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


@dataclass
class _Crop:
    """One item on its way through the view: RGB, its maps (target first) and K, all in the same
    pixels."""

    rgb: np.ndarray  # h x w x 3 uint8, then float32 in [0, 1] after :meth:`TrainingView._colour`
    maps: list[np.ndarray]  # h x w float32: the target, then the extras in order
    K: np.ndarray | None  # 3x3 in these pixels


class TrainingView:
    """A torch-style dataset over a :class:`DepthDataset` that yields fixed-size network inputs
    (see the module docstring for the items).

    ``extras`` (name → one HxW map per image, e.g. sparse depth samples) are cropped and flipped
    exactly like the target and returned under their names.
    Training crops a random window after a random scale; evaluation resizes so the image covers
    ``crop_hw`` and takes the centre. The randomness of item i is seeded by (seed, epoch, i).
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
        rng = np.random.default_rng((self.seed, self.epoch, i))
        item = self._crop(self._load(i), rng)
        x = self._colour(item, rng)
        return self._tensors(x, item)

    def _load(self, i: int) -> _Crop:
        """Sample i with its target and extras as float32 maps of the image's size."""
        sample = self.dataset[i]
        target = self.targets[i] if self.targets is not None else sample.depth_m
        if target is None:
            raise DataError(f"{sample.name}: no depth to train on")
        maps = [np.asarray(target, np.float32)] + [np.asarray(m[i], np.float32) for m in self.extras.values()]
        h, w = sample.rgb.shape[:2]
        for m in maps:
            if m.shape != (h, w):
                raise DataError(f"{sample.name}: a {m.shape[1]}x{m.shape[0]} target for a {w}x{h} image")
        return _Crop(sample.rgb, maps, sample.K)

    def _crop(self, item: _Crop, rng: np.random.Generator) -> _Crop:
        """Scale so the image covers ``crop_hw`` (times a random factor when augmenting), then take a
        random (training) or the centre (evaluation) window."""
        h, w = item.rgb.shape[:2]
        ch, cw = self.crop_hw
        cover = max(ch / h, cw / w)
        aug = self.augment
        s = cover * (rng.uniform(*aug.scale) if aug else 1.0)
        nh, nw = max(ch, int(round(h * s))), max(cw, int(round(w * s)))
        rgb, _, K = resize_sample(item.rgb, None, item.K, (nh, nw))
        maps = [resize_map(m, (nh, nw)) for m in item.maps]
        if aug:
            top, left = int(rng.integers(0, nh - ch + 1)), int(rng.integers(0, nw - cw + 1))
        else:
            top, left = (nh - ch) // 2, (nw - cw) // 2
        if K is not None:
            K = K.copy()
            K[0, 2] -= left
            K[1, 2] -= top
        return _Crop(rgb[top:top + ch, left:left + cw], [m[top:top + ch, left:left + cw] for m in maps], K)

    def _colour(self, item: _Crop, rng: np.random.Generator) -> np.ndarray:
        """h x w x 3 float32 in [0, 1]; when augmenting, flips ``item`` (maps and K in place) and
        jitters saturation, contrast and brightness."""
        x = item.rgb.astype(np.float32) / 255.0
        aug = self.augment
        if aug:
            if aug.flip and rng.random() < 0.5:
                x, item.maps = x[:, ::-1], [m[:, ::-1] for m in item.maps]
                if item.K is not None:
                    item.K[0, 2] = self.crop_hw[1] - 1 - item.K[0, 2]
            gray = x.mean(axis=2, keepdims=True)
            x = gray + (x - gray) * (1 + rng.uniform(-aug.saturation, aug.saturation))
            x = x.mean() + (x - x.mean()) * (1 + rng.uniform(-aug.contrast, aug.contrast))
            x = np.clip(x * (1 + rng.uniform(-aug.brightness, aug.brightness)), 0.0, 1.0)
        return x

    def _tensors(self, x: np.ndarray, item: _Crop) -> dict[str, Any]:
        import torch

        x = (x - self.mean) / self.std
        K = item.K
        out = {
            "pixel_values": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(item.maps[0], np.float32)),
            "K": torch.from_numpy((K if K is not None else np.zeros((3, 3))).astype(np.float32)),
            "has_K": torch.tensor(K is not None),
        }
        for name, m in zip(self.extras, item.maps[1:]):
            out[name] = torch.from_numpy(np.ascontiguousarray(m, np.float32))
        return out


__all__ = ["Augment", "TrainingView", "resize_map", "resize_sample"]
