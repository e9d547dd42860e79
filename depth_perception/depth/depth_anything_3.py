"""Depth Anything 3, monocular (DA3MONO-LARGE) and metric (DA3METRIC-LARGE) models.

The reference code (ByteDance-Seed/Depth-Anything-3: ``configs/da3mono-large.yaml``,
``configs/da3metric-large.yaml``, ``model/dinov2/``, ``model/dpt.py``) builds both as a plain DINOv2
ViT-L/14 (no camera token, RoPE, QK-norm or cross-view attention: ``alt_start``, ``rope_start``,
``qknorm_start`` are -1) whose blocks 4, 11, 17 and 23 go, layer-normed and without the class token,
into a DPT head (features 256, projections 256/512/1024/1024). That is the network of transformers'
``DepthAnythingForDepthEstimation`` at Depth Anything V2 Large's configuration, except:

* the depth head ends in ``exp`` (``DPT(activation="exp")``), not ReLU: the output is positive
  depth (far = large), not disparity;
* the backbone's last LayerNorm is torch's default (eps 1e-5; the blocks' are 1e-6);
* a second one-channel sky head sits beside the depth head; depth does not use it, so its weights
  are dropped on load (the reference uses it to push sky pixels to the 99th percentile of the
  other depths; here sky keeps whatever depth the head predicts);
* there is no mask token and no first residual unit in the coarsest fusion block; transformers
  holds both but never uses them at inference: loading fills them with zeros.

One difference remains: the reference interpolates DINOv2's position embeddings with a scale
factor (plus DINOv2's 0.1 offset), transformers to the target size. Run with the same weights the
two agree exactly at the 518x518 pre-training size and within about 1e-3 of the output's range at
other input sizes (checked against the reference modules, not a dependency here).

:class:`DepthAnything3ForDepthEstimation` is that subclass, so the weights load, export to ONNX and
build TensorRT engines through the same code as every other Depth Anything model; the key mapping
is :func:`depth_perception.depth.weights.convert_original_depth_anything_3`.

Metric scale (DA3METRIC-LARGE): the network predicts depth at a canonical focal length of 300
pixels; the reference's ``apply_metric_scaling`` multiplies by ``f / 300`` where ``f`` is the mean of
fx and fy of K *at the network input* (K resized with the image). :func:`metric_depth_m` takes fx of
the image the estimator was given and scales it by the resize factor (square pixels: fx = fy).

This module imports torch and transformers: import it lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import DepthAnythingForDepthEstimation

from .processing import Geometry

#: the canonical focal length (pixels) of DA3 Metric's output: metres = f_net * output / 300
CANONICAL_FOCAL_PX = 300.0
#: eps of the reference backbone's final ``nn.LayerNorm`` (torch's default)
FINAL_NORM_EPS = 1e-5


class Exp(torch.nn.Module):
    """The reference head's output activation (``DPT._apply_activation_single("exp")``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class DepthAnything3ForDepthEstimation(DepthAnythingForDepthEstimation):
    """Depth Anything 3 Mono/Metric: transformers' Depth Anything network with DA3's exp output and
    final-norm eps (see the module docstring). Takes a ``DepthAnythingConfig`` of type
    ``relative`` (``max_depth`` 1: the head's output is not rescaled)."""

    def __init__(self, config: Any) -> None:
        if config.depth_estimation_type != "relative" or config.max_depth != 1:
            raise ValueError("Depth Anything 3 takes a relative DepthAnythingConfig with max_depth 1 "
                             "(its head ends in exp, not in a bounded sigmoid)")
        super().__init__(config)
        self.head.activation2 = Exp()
        self.backbone.layernorm.eps = FINAL_NORM_EPS


def metric_depth_m(canonical: np.ndarray, geo: Geometry, fx_px: float | None) -> np.ndarray:
    """DA3 Metric's canonical depth (HxW, already at the image's resolution) → HxW float32 metres.

    ``fx_px``: the focal length in pixels of the image the network was given (fx of its K); the
    network saw it resized by ``geo.scale``, so its focal there is ``fx_px * geo.scale``.
    """
    if fx_px is None:
        raise ValueError("Depth Anything 3 Metric needs the focal length (fx in pixels, from "
                         "CameraInfo or --focal): its output is depth at a canonical focal length")
    if not np.isfinite(fx_px) or not fx_px > 0:
        raise ValueError(f"focal length must be a finite number of pixels > 0, got {fx_px}")
    f_net = float(fx_px) * geo.scale
    return (np.asarray(canonical, np.float32) * np.float32(f_net / CANONICAL_FOCAL_PX)).astype(
        np.float32, copy=False)
