"""Mask–depth fusion: the masks of one frame, cleaned against its depth, as one label image.

Masks come from colour (SAM, a VLM, another node) and depth from a network or a sensor; at object
borders they disagree, and depth there is the worst. Fusion runs the cleaning pass of region
extraction once (:func:`.cleaning.clean_masks`: erosion, validity, depth edges,
outliers, dominant 3-D cluster per mask) and turns what it keeps into a :class:`Segmentation`
aligned with the depth image: 0 = background, value = the input id, with the names and scores of
the masks that keep at least ``RegionParams.min_pixels`` pixels, and a message naming the masks
dropped and why. :attr:`FusionResult.cleaned` carries the cleaned points on to
:func:`.extract.describe_regions`, so no frame is cleaned twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..segmentation.base import Segmentation, SegmentationError, check_points, join_messages
from .cleaning import CleanedMasks, clean_masks
from .params import RegionParams


@dataclass
class FusionResult:
    """The cleaned segmentation and the cleaned points behind it; per input id the pixels before /
    after and why a mask went (counted when asked for)."""

    segmentation: Segmentation
    cleaned: CleanedMasks
    input_labels: np.ndarray  # HxW, the masks as they came in

    @property
    def dropped(self) -> dict[int, str]:
        return self.cleaned.dropped

    @functools.cached_property
    def pixels_in(self) -> dict[int, int]:
        counts = np.bincount(self.input_labels.ravel())
        return {int(i): int(counts[i]) for i in np.flatnonzero(counts[1:]) + 1}

    @functools.cached_property
    def pixels_out(self) -> dict[int, int]:
        counts = np.bincount(self.segmentation.labels.ravel(), minlength=max(self.pixels_in, default=0) + 1)
        return {i: int(counts[i]) for i in self.pixels_in}


def fuse_masks(segmentation: Segmentation, points: np.ndarray, params: RegionParams | None = None,
               support_plane: np.ndarray | None = None) -> FusionResult:
    """Clean every mask of ``segmentation`` against the organised cloud of the same frame.

    :param segmentation: masks aligned with the depth image (HxW).
    :param points: HxWx3 float32 metres, camera optical frame, NaN invalid.
    :param params: the cleaning pass's settings (those of region extraction).
    :param support_plane: (4,) n·p + d = 0 in the camera frame, whose points are no object's;
        default: the segmentation's own (geometric masks come with the table).
    :returns: :class:`FusionResult`; its segmentation keeps the input ids, names and scores of the
        masks that survive, and its message lists the masks dropped and why.
    """
    pts = check_points(points)
    labels = segmentation.labels
    if labels.shape != pts.shape[:2]:
        raise SegmentationError(
            f"masks are {labels.shape[1]}x{labels.shape[0]} but the cloud is {pts.shape[1]}x{pts.shape[0]}")
    plane = segmentation.support_plane if support_plane is None else support_plane
    cleaned = clean_masks(pts, labels, params, plane)
    notes = [f"mask {segmentation.names.get(i, f'id {i}')!r} dropped: {why}" for i, why in cleaned.dropped.items()]
    seg = segmentation.with_labels(cleaned.label_image(), message=join_messages(segmentation.message, *notes))
    return FusionResult(seg, cleaned, labels)
