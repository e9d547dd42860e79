"""Masks published by another node: the instance-id image contract.

Another node (a VLM, a detector with a mask head, a labelling tool) publishes an instance-id image
(``mono8``, ``mono16`` or ``16UC1``; 0 = background, value = instance id) with the colour image's
stamp, optionally with a `vision_msgs/Detection2DArray` naming the instances. Pairing by stamp is the
driver's job (:class:`depth_perception.sync.StampSynchronizer`); these are the pure functions that
turn one paired set into a :class:`Segmentation`.

Naming. A detection names instance N when its ``id`` is "N" (Detection2D.id); detections without a
numeric id are matched to the instance that fills most of their box. Ids without a detection are
named "id N". Problems with the *content* (size, empty mask, unmatched detections) never raise: the
result says what happened in ``message`` and the frame still yields depth and the scene cloud.
Arrays that cannot be a mask at all (float, 3-D, negative) raise :class:`SegmentationError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Detection, Segmentation, SegmentationError, join_messages

SOURCE = "topic"


def check_mask_array(mask: np.ndarray) -> np.ndarray:
    """An HxW (or HxWx1) non-negative integer array → HxW uint16."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise SegmentationError(f"instance mask must be a single-channel HxW image, got shape {m.shape}")
    if m.dtype == np.bool_:
        return m.astype(np.uint16)
    if not np.issubdtype(m.dtype, np.integer):
        raise SegmentationError(
            f"instance mask must hold integer ids (mono8, mono16, 16UC1), got dtype {m.dtype}")
    if m.size and (m.min() < 0 or m.max() > 65535):
        raise SegmentationError(f"instance mask ids must be in 0..65535, got {m.min()}..{m.max()}")
    return m.astype(np.uint16, copy=False)


def resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of an HxW label image to ``shape`` (H, W): ids are never blended.
    Pixel centres map to pixel centres (the same convention as :meth:`CameraModel.scaled`)."""
    h, w = labels.shape
    H, W = int(shape[0]), int(shape[1])
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def external_segmentation(mask: np.ndarray, shape: tuple[int, int],
                          detections: Sequence[Detection] | None = None, *,
                          allow_resize: bool = False) -> Segmentation:
    """An instance-id image (+ optional detections) → :class:`Segmentation` aligned with the depth.

    :param mask: HxW uint8/uint16 instance ids, e.g. ``messages.image_to_numpy`` of a mono8, mono16
        or 16UC1 `sensor_msgs/Image`; 0 = background.
    :param shape: (H, W) of the depth image the masks must align with.
    :param detections: optional :class:`Detection` list naming the instances (by ``instance_id``, or
        by box overlap when the id is missing).
    :param allow_resize: a mask of another size is resampled (nearest) instead of dropped. Only
        right when the mask covers the same field of view (e.g. a half-resolution mask).
    :returns: the segmentation, empty with a message when the mask cannot be used.
    """
    labels = check_mask_array(mask)
    shape = (int(shape[0]), int(shape[1]))
    notes = []
    if labels.shape != shape:
        size = f"{labels.shape[1]}x{labels.shape[0]}"
        want = f"{shape[1]}x{shape[0]}"
        if not allow_resize:
            return Segmentation.empty(shape, SOURCE, f"mask is {size} but the depth image is {want}; "
                                      "mask dropped (set segmentation.allow_resize to resample it)")
        # the aspect must match, else the mask does not cover the same view
        if abs(labels.shape[1] / labels.shape[0] - shape[1] / shape[0]) > 0.02 * shape[1] / shape[0]:
            return Segmentation.empty(shape, SOURCE, f"mask is {size}, depth is {want}: different aspect "
                                      "ratios, so the mask is not a resampled view; dropped")
        labels = resize_nearest(labels, shape)
        notes.append(f"mask resampled from {size} to {want} (nearest)")
    ids = np.flatnonzero(np.bincount(labels.ravel()))
    ids = ids[ids != 0]
    if ids.size == 0:
        return Segmentation.empty(shape, SOURCE, join_messages(*notes, "mask is empty (no non-zero ids)"))
    names, scores, det_notes = name_instances(labels, ids, detections or [])
    return Segmentation(labels=labels, names=names, scores=scores, source=SOURCE,
                        message=join_messages(*notes, *det_notes))


def name_instances(labels: np.ndarray, ids: np.ndarray, detections: Sequence[Detection]
                   ) -> tuple[dict[int, str], dict[int, float], list[str]]:
    """({id: name}, {id: score}, notes) for the instances ``ids`` of ``labels``.

    Detections with an ``instance_id`` present in the mask name it; the others are matched to the
    instance with the most pixels inside their box (at least half of the instance's pixels in the
    box, so a box around one object does not name its neighbour). Unnamed ids become "id N".
    """
    present = {int(i) for i in ids}
    names: dict[int, str] = {}
    scores: dict[int, float] = {}
    notes: list[str] = []
    unmatched: list[str] = []
    by_box: list[Detection] = []
    for det in detections:
        if det.instance_id is not None:
            if det.instance_id in present:
                if det.instance_id not in names or det.score > scores[det.instance_id]:
                    names[det.instance_id] = det.label or f"id {det.instance_id}"
                    scores[det.instance_id] = float(det.score)
            else:
                unmatched.append(_describe(det))
        elif det.box_xyxy is not None:
            by_box.append(det)
        else:
            unmatched.append(_describe(det))
    if by_box:
        counts = np.bincount(labels.ravel())
        h, w = labels.shape
        for det in sorted(by_box, key=lambda d: -d.score):
            x0, y0, x1, y1 = np.asarray(det.box_xyxy, float)
            c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
            c1, r1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
            inside = np.bincount(labels[r0:r1, c0:c1].ravel(), minlength=len(counts)) if r1 > r0 and c1 > c0 \
                else np.zeros(len(counts), np.int64)
            inside[0] = 0
            for i in names:  # an instance is named once
                inside[i] = 0
            best = int(np.argmax(inside))
            if inside[best] > 0 and inside[best] >= 0.5 * counts[best]:
                names[best] = det.label or f"id {best}"
                scores[best] = float(det.score)
            else:
                unmatched.append(_describe(det))
    if unmatched:
        notes.append(f"{len(unmatched)} detection(s) match no instance in the mask: {', '.join(unmatched[:5])}"
                     + (" ..." if len(unmatched) > 5 else ""))
    unnamed = sorted(present - set(names))
    if unnamed and detections:
        notes.append(f"{len(unnamed)} instance id(s) without a detection: {unnamed[:10]}")
    for i in unnamed:
        names[i] = f"id {i}"
        scores[i] = 1.0
    return names, scores, notes


def _describe(det: Detection) -> str:
    label = repr(det.label) if det.label else "unlabelled"
    return label + (f" (id {det.instance_id})" if det.instance_id is not None else "")
