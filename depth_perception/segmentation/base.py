"""The result every segmentation source returns, and the checks they share.

A segmentation is an instance label image aligned with the depth image (HxW uint16, 0 = background,
pixel value = instance id) plus, per id, a name and a score. This is what region extraction and
Contact-GraspNet-style planners take with depth and K.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

import numpy as np

from ..grid import check_cloud


class SegmentationError(ValueError):
    """Input a segmentation source cannot use; the message names the argument and the problem."""


@dataclass
class Segmentation:
    """Instance masks of one frame.

    labels: HxW uint16, 0 = background, value = instance id (ids need not be contiguous).
    names: {id: label}, e.g. {1: "mug"}; every id present in ``labels`` has an entry.
    scores: {id: confidence in [0, 1]}; 1.0 where the source has no notion of confidence.
    source: "geometric", "topic", "sam", "text", ...
    message: diagnostics for humans ("" when all went well), e.g. why a mask was dropped.
    support_plane: (4,) float64 (nx, ny, nz, d), n·p + d = 0 in the camera frame with unit n
        pointing up (towards the camera), when the source found one (geometric); else None.
    """

    labels: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    source: str = ""
    message: str = ""
    support_plane: np.ndarray | None = None

    def __post_init__(self) -> None:
        lab = np.asarray(self.labels)
        if lab.ndim != 2:
            raise SegmentationError(f"labels must be an HxW image, got shape {lab.shape}")
        if lab.dtype != np.uint16:
            if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() > 65535):
                raise SegmentationError(f"labels must hold integer ids in 0..65535, got dtype {lab.dtype}")
            lab = lab.astype(np.uint16)
        self.labels = lab
        present = self.ids
        for i in present:
            self.names.setdefault(i, f"id {i}")
            self.scores.setdefault(i, 1.0)
        # names/scores of ids that no pixel carries (e.g. dropped by fusion) are stale.
        keep = set(present)
        self.names = {int(k): str(v) for k, v in self.names.items() if int(k) in keep}
        self.scores = {int(k): float(v) for k, v in self.scores.items() if int(k) in keep}

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.labels.shape)  # type: ignore[return-value]

    @property
    def ids(self) -> list[int]:
        """Sorted instance ids present in ``labels`` (0 excluded)."""
        return (np.flatnonzero(np.bincount(self.labels.ravel())[1:]) + 1).tolist()  # faster than np.unique

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, instance_id: int) -> np.ndarray:
        """HxW bool mask of one instance."""
        return self.labels == instance_id

    def pixel_counts(self) -> dict[int, int]:
        counts = np.bincount(self.labels.ravel())
        return {int(i): int(counts[i]) for i in np.flatnonzero(counts) if i != 0}

    def with_labels(self, labels: np.ndarray, message: str | None = None) -> Segmentation:
        """A copy with new labels (names/scores of vanished ids dropped), optionally a new message."""
        return Segmentation(labels=labels, names=dict(self.names), scores=dict(self.scores),
                            source=self.source, message=self.message if message is None else message,
                            support_plane=self.support_plane)

    @classmethod
    def empty(cls, shape: tuple[int, int], source: str, message: str = "") -> Segmentation:
        """No instances: the frame still yields depth and the scene cloud."""
        return cls(labels=np.zeros(shape, np.uint16), source=source, message=message)


@dataclass(frozen=True)
class Detection:
    """One detection (e.g. a `vision_msgs/Detection2D`), transport-free.

    box_xyxy: (4,) float64 (x0, y0, x1, y1) in pixels of the colour image, or None (no box).
    label: class name / id string ("mug"); "" when the detector gave none.
    score: confidence in [0, 1] (0 when unknown).
    instance_id: the instance id in a label image this detection names (Detection2D.id parsed as an
        integer), or None.
    points_xy: (N, 2) float64 prompt points in pixels (SAM), or None.
    point_labels: (N,) int 1 = foreground, 0 = background, or None (all foreground).
    """

    box_xyxy: np.ndarray | None = None
    label: str = ""
    score: float = 0.0
    instance_id: int | None = None
    points_xy: np.ndarray | None = None
    point_labels: np.ndarray | None = None



class PromptSegmenter(Protocol):
    """The ``sam`` source: masks for box/point prompts (:class:`.sam.SamSegmenter`, its ONNX
    Runtime and TensorRT twins)."""

    def segment(self, rgb: np.ndarray, detections: Sequence[Detection]) -> Segmentation:
        ...


class TextPromptSegmenter(Protocol):
    """The ``text`` source: masks for the objects a text prompt names (:class:`.text.TextSegmenter`)."""

    def segment(self, rgb: np.ndarray, prompt: str) -> Segmentation:
        ...


class Segmenters(TypedDict, total=False):
    """The heavy mask sources a pipeline is given, under their source names."""

    sam: PromptSegmenter
    text: TextPromptSegmenter

def detections_in_image(detections: Sequence[Detection], shape: tuple[int, int]
                        ) -> tuple[list[Detection], list[str]]:
    """Prompts that lie in an HxW image: boxes clipped to it, points outside it dropped.

    Returns (the detections that still prompt something, one note per dropped detection). A
    detection wholly outside the image (or with neither box nor points) would make SAM invent a mask
    somewhere else, so it is dropped and named.
    """
    H, W = int(shape[0]), int(shape[1])
    kept: list[Detection] = []
    notes: list[str] = []
    for d in detections:
        name = repr(d.label) if d.label else "an unnamed detection"
        box = None
        if d.box_xyxy is not None:
            x0, y0, x1, y1 = np.clip(np.asarray(d.box_xyxy, float), 0, [W, H, W, H]).tolist()
            box = np.array([x0, y0, x1, y1]) if x1 > x0 and y1 > y0 else None
        pts, labels = d.points_xy, d.point_labels
        if pts is not None:
            pts = np.asarray(pts, float).reshape(-1, 2)
            inside = (pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)
            labels = None if labels is None else np.asarray(labels)[inside]
            pts = pts[inside] if inside.any() else None
            labels = labels if pts is not None else None
        if box is None and pts is None:
            what = "has no box or points" if d.box_xyxy is None and d.points_xy is None else \
                f"lies outside the {W}x{H} image"
            notes.append(f"{name} {what}: ignored")
            continue
        kept.append(dataclasses.replace(d, box_xyxy=box, points_xy=pts, point_labels=labels))
    return kept, notes


def merge_segmentations(segmentations: list[Segmentation], shape: tuple[int, int] | None = None) -> Segmentation:
    """Several sources' masks in one label image (``segmentation.source: [topic, geometric]``).

    Earlier segmentations take precedence: a later one only labels pixels still background, and a
    later instance left with no pixels disappears. Ids are renumbered 1..N in order (source by
    source); names and scores follow; ``source`` is "a+b"; messages are prefixed by their source.
    """
    if not segmentations:
        if shape is None:
            raise SegmentationError("merge_segmentations needs segmentations or a shape")
        return Segmentation.empty(shape, "", "no segmentation source")
    shape = shape or segmentations[0].shape
    out = np.zeros(shape, np.uint16)
    names: dict[int, str] = {}
    scores: dict[int, float] = {}
    notes = []
    next_id = 1
    for seg in segmentations:
        if seg.shape != tuple(shape):
            notes.append(f"{seg.source}: masks are {seg.shape[1]}x{seg.shape[0]}, not "
                         f"{shape[1]}x{shape[0]}; skipped")
            continue
        ids = seg.ids
        if next_id + len(ids) > 65535:
            notes.append(f"{seg.source}: more than 65535 instances; skipped")
            continue
        lut = np.zeros(int(seg.labels.max()) + 1, np.uint16)
        lut[ids] = np.arange(next_id, next_id + len(ids), dtype=np.uint16)
        free = (out == 0) & (seg.labels > 0)
        out[free] = lut[seg.labels[free]]
        for old in ids:
            names[int(lut[old])] = seg.names.get(old, f"id {old}")
            scores[int(lut[old])] = seg.scores.get(old, 1.0)
        next_id += len(ids)
        if seg.message:
            notes.append(f"{seg.source}: {seg.message}")
    plane = next((s.support_plane for s in segmentations if s.support_plane is not None), None)
    final, old_ids = relabel_sequential(out)
    return Segmentation(labels=final, names={i: names[int(o)] for i, o in enumerate(old_ids) if i},
                        scores={i: scores[int(o)] for i, o in enumerate(old_ids) if i},
                        source="+".join(s.source for s in segmentations), message=join_messages(*notes),
                        support_plane=plane)


#: a message lists at most this many parts (a mask image with thousands of ids must not make a
#: diagnostic or a log line of megabytes)
MAX_MESSAGE_PARTS = 20


def join_messages(*parts: str) -> str:
    """The non-empty parts joined with "; ", the first MAX_MESSAGE_PARTS and a count of the rest."""
    kept = [p for p in parts if p]
    if len(kept) > MAX_MESSAGE_PARTS:
        kept = kept[:MAX_MESSAGE_PARTS] + [f"... and {len(kept) - MAX_MESSAGE_PARTS} more"]
    return "; ".join(kept)


def check_points(points: np.ndarray, what: str = "points") -> np.ndarray:
    """An organised cloud HxWx3 (metres, camera optical frame, NaN invalid) as float32."""
    return check_cloud(points, SegmentationError, what)


def check_image_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    """HxWx3 uint8 RGB."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise SegmentationError(f"{what} must be HxWx3 uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    return img


def relabel_sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 1..N in order of first id; returns (new HxW uint16, old id of each new id
    as an (N+1,) array with old_ids[0] = 0)."""
    old = np.unique(labels)
    old = old[old != 0]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint16)
    lut[old] = np.arange(1, len(old) + 1, dtype=np.uint16)
    return lut[labels], np.concatenate([[0], old]).astype(np.int64)
