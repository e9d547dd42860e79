"""Shape profiles: the range of input shapes a TensorRT engine is built for and accepts.

:class:`ShapeProfile` describes an image input, N x C x H x W (batch, channels, height and width in
pixels), with a min <= opt <= max size per axis; TensorRT tunes its kernels for the opt size and
refuses sizes outside [min, max]. :class:`TensorProfile` does the same for an input of any rank
(e.g. SAM's prompt points, B x P x 2). Sizes are written ``HxW`` (``518x392``: 518 high, 392 wide).

Pure Python: no TensorRT, no numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence, Union

def parse_hw(text: str) -> tuple[int, int]:
    """``"518x392"`` -> ``(518, 392)`` (height, width in pixels); ``"518"`` means 518x518."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", text)
    if not match:
        raise ValueError(f"bad size {text!r}: expected HxW in pixels, e.g. 518x518 or 364x644")
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) is not None else h
    if h <= 0 or w <= 0:
        raise ValueError(f"bad size {text!r}: height and width must be > 0")
    return h, w


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


@dataclass(frozen=True)
class ShapeProfile:
    """The range of input sizes an engine accepts: N x C x H x W with min <= opt <= max per axis.

    TensorRT tunes kernels for ``opt_hw`` and refuses sizes outside ``[min_hw, max_hw]``.
    """

    min_hw: tuple[int, int]
    opt_hw: tuple[int, int]
    max_hw: tuple[int, int]
    batch: int = 1
    channels: int = 3

    def __post_init__(self) -> None:
        for label, hw in (("min", self.min_hw), ("opt", self.opt_hw), ("max", self.max_hw)):
            if len(hw) != 2 or any(int(v) != v or v <= 0 for v in hw):
                raise ValueError(f"shape profile {label} size {hw!r} must be two positive ints (H, W)")
        for axis, name in ((0, "height"), (1, "width")):
            lo, mid, hi = self.min_hw[axis], self.opt_hw[axis], self.max_hw[axis]
            if not lo <= mid <= hi:
                raise ValueError(f"shape profile {self.describe()}: {name} needs min <= opt <= max, "
                                 f"got {lo}, {mid}, {hi}")
        if self.batch <= 0 or self.channels <= 0:
            raise ValueError(f"shape profile batch ({self.batch}) and channels ({self.channels}) "
                             "must be > 0")

    @classmethod
    def fixed(cls, height: int, width: int, batch: int = 1, channels: int = 3) -> "ShapeProfile":
        return cls((height, width), (height, width), (height, width), batch, channels)

    @classmethod
    def from_text(cls, min_hw: str | None, opt_hw: str | None, max_hw: str | None,
                  default_hw: tuple[int, int] = (518, 518)) -> "ShapeProfile":
        """Profile from ``HxW`` strings: opt defaults to ``default_hw``, min and max to opt."""
        opt = parse_hw(opt_hw) if opt_hw else default_hw
        return cls(parse_hw(min_hw) if min_hw else opt, opt, parse_hw(max_hw) if max_hw else opt)

    @property
    def is_fixed(self) -> bool:
        return self.min_hw == self.max_hw

    def nchw(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, hw[0], hw[1])

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) N x C x H x W shapes, as TensorRT's optimization profile wants them."""
        return self.nchw(self.min_hw), self.nchw(self.opt_hw), self.nchw(self.max_hw)

    def contains(self, height: int, width: int) -> bool:
        return (self.min_hw[0] <= height <= self.max_hw[0]
                and self.min_hw[1] <= width <= self.max_hw[1])

    def describe(self) -> str:
        """``518x518`` when fixed, else ``min 266x266 / opt 518x518 / max 784x784``."""
        if self.is_fixed:
            return format_hw(self.opt_hw)
        return (f"min {format_hw(self.min_hw)} / opt {format_hw(self.opt_hw)} / "
                f"max {format_hw(self.max_hw)}")

    def token(self) -> str:
        """File-name-safe text: ``518x518`` or ``266x266-518x518-784x784`` (batch if not 1)."""
        text = format_hw(self.opt_hw) if self.is_fixed else "-".join(
            format_hw(hw) for hw in (self.min_hw, self.opt_hw, self.max_hw))
        return text if self.batch == 1 else f"b{self.batch}-{text}"

    def as_dict(self) -> dict[str, Any]:
        return {"min_hw": list(self.min_hw), "opt_hw": list(self.opt_hw),
                "max_hw": list(self.max_hw), "batch": self.batch, "channels": self.channels}


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


@dataclass(frozen=True)
class TensorProfile:
    """The range of shapes of an input of any rank (e.g. SAM's point_coords B x P x 2), for the
    further inputs of a graph that :class:`ShapeProfile` (N x C x H x W) does not describe.

    TensorRT tunes kernels for ``opt_shape`` and refuses shapes outside ``[min_shape, max_shape]``.
    """

    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shapes = (("min", self.min_shape), ("opt", self.opt_shape), ("max", self.max_shape))
        for label, shape in shapes:
            if not shape or any(isinstance(d, bool) or int(d) != d or d <= 0 for d in shape):
                raise ValueError(f"tensor profile {label} shape {shape!r} must be positive ints")
        if not len(self.min_shape) == len(self.opt_shape) == len(self.max_shape):
            raise ValueError(f"tensor profile {self.describe()}: min, opt and max need the same rank")
        for axis, (lo, mid, hi) in enumerate(zip(self.min_shape, self.opt_shape, self.max_shape)):
            if not lo <= mid <= hi:
                raise ValueError(f"tensor profile {self.describe()}: axis {axis} needs "
                                 f"min <= opt <= max, got {lo}, {mid}, {hi}")

    @classmethod
    def fixed(cls, shape: Sequence[int]) -> "TensorProfile":
        s = tuple(int(d) for d in shape)
        return cls(s, s, s)

    @property
    def is_fixed(self) -> bool:
        return self.min_shape == self.max_shape

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max), as TensorRT's optimization profile wants them."""
        return self.min_shape, self.opt_shape, self.max_shape

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min_shape) and all(
            lo <= int(s) <= hi for lo, s, hi in zip(self.min_shape, shape, self.max_shape))

    def describe(self) -> str:
        """``1x2x2`` when fixed, else ``min 1x1x2 / opt 4x2x2 / max 16x8x2``."""
        if self.min_shape == self.opt_shape == self.max_shape:
            return format_shape(self.opt_shape)
        return (f"min {format_shape(self.min_shape)} / opt {format_shape(self.opt_shape)} / "
                f"max {format_shape(self.max_shape)}")

    def as_dict(self) -> dict[str, Any]:
        return {"min_shape": list(self.min_shape), "opt_shape": list(self.opt_shape),
                "max_shape": list(self.max_shape)}


# Either kind of profile, for the further inputs of a multi-input graph.
InputProfile = Union[ShapeProfile, TensorProfile]


def prompt_depth_profile(max_side: int, opt_hw: tuple[int, int] = (192, 256)) -> ShapeProfile:
    """Prompt Depth Anything's ``prompt_depth`` input, N x 1 x h x w metres: any prompt from 2x2 up
    to ``max_side`` on both sides (the estimator pools larger ones down to it), tuned for
    ``opt_hw``, the 256x192 LiDAR depth the model was trained with (clipped to ``max_side``)."""
    opt = (min(opt_hw[0], max_side), min(opt_hw[1], max_side))
    return ShapeProfile((2, 2), opt, (max_side, max_side), channels=1)
