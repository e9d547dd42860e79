"""Mask sources.

Every source returns a :class:`Segmentation` (HxW uint16 instance labels aligned with the depth
image, 0 = background, plus names and scores per id):

- ``geometric``: :func:`segment_geometric` — no weights: support plane + clustering (the default);
- ``topic``: :func:`external_segmentation` — an instance-id image published by another node;
- ``sam``: :class:`.sam.SamSegmenter` (PyTorch) / :class:`.sam_onnx.SamOnnxSegmenter` (ONNX
  Runtime) — Segment Anything prompted by boxes/points, e.g. from a Detection2DArray;
- ``text``: :class:`.text.TextSegmenter` — text prompt → OWLv2 → boxes → SAM.

:func:`depth_perception.regions.fuse_masks` then cleans each mask against the depth, once per
frame (erosion, depth edges, outliers, dominant 3-D cluster).
Importing this package imports no torch, onnxruntime or transformers: the modules that need them
import them when called.
"""

from __future__ import annotations

from .base import Detection, Segmentation, SegmentationError, merge_segmentations
from .external import external_segmentation, resize_nearest
from .geometric import GeometricParams, PlaneFit, find_planes, segment_geometric

SOURCES = ("geometric", "topic", "sam", "text")

__all__ = [
    "SOURCES",
    "Detection",
    "GeometricParams",
    "PlaneFit",
    "Segmentation",
    "SegmentationError",
    "external_segmentation",
    "find_planes",
    "merge_segmentations",
    "resize_nearest",
    "segment_geometric",
]
