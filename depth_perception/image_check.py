"""Whether a colour frame shows anything depth can be measured from, checked before depth.

A depth network answers every input with a confident-looking depth map, and a metric fit, a cloud
and graspable regions follow from it: a lens cap, a camera blinded by a lamp, a frame of sensor
noise or a blank grey test pattern would all come out as a scene. :func:`check_image_content`
refuses such frames with a reason a person can read; the pipeline then publishes no depth for them
(all NaN) and keeps its metric scale filter untouched.

Four kinds, checked in this order on the brightness (Rec. 601 luma, 0-255) of the image:

- **black**: the 99th percentile of brightness is below ``black_level`` (almost no light);
- **saturated**: more than ``max_clipped_fraction`` of the pixels are at brightness >= 250
  (clipped, allowing for compression ringing just under 255);
- **flat**: the brightness standard deviation is below ``min_contrast`` (a constant frame);
- **noise**: the correlation of horizontally or vertically neighbouring pixels (the larger of the
  two) is below ``min_correlation``. Optics blur every real image, so neighbours agree: natural
  images measure 0.6-1.0, and still > 0.35 darkened ten-fold with sensor noise (sigma 2 levels)
  added; independent pixel noise measures ~0 (within about 1/sqrt(pixels)). A frame whose
  structure is weaker than its noise is refused as noise, which it mostly is (a low-contrast
  rendered tabletop darkened ten-fold, contrast 0.7 levels, with that sensor noise added: 0.13).

The defaults refuse none of scikit-image's real photographs as shot, darkened x0.1 (with and
without added noise) or brightened x2, nor the generator's rendered tabletops as rendered,
darkened x0.1 or brightened x1.5 (test/test_image_check.py). The tabletops are bright scenes:
brightened x2, up to 98 % of their pixels clip, and that is refused as saturated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import check_fields, param

#: brightness (0-255) at or above which a pixel counts as clipped
CLIP_LEVEL = 250
#: frames are measured at most this many pixels on their long side (area-averaged): the checks
#: need statistics, not resolution, and averaging independent noise keeps it independent
MAX_SIDE = 640


class ImageCheckError(ValueError):
    """Settings or input the content check cannot use; the message names the problem."""


@dataclass(frozen=True)
class ImageCheckParams:
    """Thresholds of :func:`check_image_content` (module docstring)."""

    enabled: bool = param(True, "refuse black, saturated, flat and pure-noise colour images "
                          "before depth: no depth (all NaN) and no regions for them, with the "
                          "reason; the metric scale is not updated from them")
    black_level: float = param(10.0, "a frame whose 99th-percentile brightness (0-255) is below "
                               "this is black", minimum=0.0, maximum=255.0)
    max_clipped_fraction: float = param(0.95, "a frame with more than this fraction of pixels "
                                        "clipped (brightness >= 250 of 255) is saturated",
                                        minimum=0.0, maximum=1.0)
    min_contrast: float = param(0.5, "a frame whose brightness standard deviation (0-255) is "
                                "below this is flat", minimum=0.0, maximum=255.0)
    min_correlation: float = param(0.2, "a frame whose neighbouring pixels' brightness "
                                   "correlation is below this is noise (real images: > 0.35)",
                                   minimum=0.0, maximum=1.0)

    def __post_init__(self) -> None:
        check_fields(self, "image_check", ImageCheckError)


@dataclass(frozen=True)
class ImageCheck:
    """The verdict on one frame and what it was based on (brightness in 0-255 levels)."""

    ok: bool
    reason: str  # "" when ok, else "black frame: ..." / "saturated frame: ..." / ...
    brightness_p99: float  # 99th percentile of brightness
    clipped_fraction: float  # share of pixels at brightness >= CLIP_LEVEL
    contrast: float  # standard deviation of brightness
    correlation: float  # neighbouring-pixel correlation, the larger of horizontal and vertical (NaN when flat)


def check_image_content(rgb: np.ndarray, params: ImageCheckParams | None = None) -> ImageCheck:
    """Black, saturated, flat or pure-noise ``rgb`` (HxWx3 uint8 RGB) → not ok, with the reason.

    Pure: no state; a few milliseconds at any resolution (the image is measured at most
    :data:`MAX_SIDE` pixels wide).
    """
    import cv2

    p = params or ImageCheckParams()
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageCheckError(f"image must be HxWx3 uint8 RGB, got {getattr(rgb, 'shape', type(rgb).__name__)} "
                              f"{getattr(rgb, 'dtype', '')}".rstrip())
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageCheckError(f"image must be at least 2x2 pixels, got {rgb.shape[1]}x{rgb.shape[0]}")
    luma = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = luma.shape
    scale = MAX_SIDE / max(h, w)
    if scale < 1:
        luma = cv2.resize(luma, (max(2, round(w * scale)), max(2, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    hist = np.bincount(luma.ravel(), minlength=256).astype(np.float64)
    n = hist.sum()
    levels = np.arange(256.0)
    p99 = float(np.searchsorted(np.cumsum(hist), 0.99 * n))
    clipped = float(hist[CLIP_LEVEL:].sum() / n)
    mean = float(hist @ levels / n)
    contrast = float(np.sqrt(max(hist @ (levels - mean) ** 2 / n, 0.0)))
    y = luma.astype(np.float32)
    found = [c for c in (_correlation(y[:, :-1], y[:, 1:]), _correlation(y[:-1], y[1:])) if c == c]
    correlation = max(found, default=float("nan"))
    measured = dict(brightness_p99=p99, clipped_fraction=clipped, contrast=contrast, correlation=correlation)

    reason = ""
    if p99 < p.black_level:
        reason = (f"black frame: 99 % of pixels are at brightness {p99:.0f} of 255 or darker, "
                  f"below black_level {p.black_level:g}")
    elif clipped > p.max_clipped_fraction:
        reason = (f"saturated frame: {clipped * 100:.1f} % of pixels are clipped (brightness >= "
                  f"{CLIP_LEVEL}), more than max_clipped_fraction {p.max_clipped_fraction:g}")
    elif contrast < p.min_contrast:
        reason = (f"flat frame: brightness varies by {contrast:.2f} of 255 (standard deviation), "
                  f"below min_contrast {p.min_contrast:g}")
    elif correlation < p.min_correlation:  # NaN (a constant frame) is flat, not noise
        reason = (f"noise frame: neighbouring pixels are uncorrelated (correlation {correlation:.2f}, "
                  f"below min_correlation {p.min_correlation:g}): no spatial structure")
    return ImageCheck(ok=not reason, reason=reason, **measured)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays; NaN when either is constant."""
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt(float((a * a).sum()) * float((b * b).sum())))
    return float((a * b).sum()) / denom if denom > 0 else float("nan")
