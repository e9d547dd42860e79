"""`vision_msgs/Detection2DArray` ↔ :class:`~depth_perception.segmentation.base.Detection`.

``vision_msgs`` is not pip-installable, so for bags and tests its definitions are registered from
``.msg`` text into a `rosbags` typestore (:func:`register_vision_types`); on a robot the real package's
rclpy classes are used (:func:`rclpy_vision_types`). Parsing is duck-typed, so it reads either
flavour and both layouts that are in use:

- ``"humble"`` (vision_msgs 4.x: Humble, Iron, Jazzy, Kilted): ``results[].hypothesis.class_id`` /
  ``.score``, ``bbox.center.position.x`` (vision_msgs/Pose2D), ``Detection2D.id``;
- ``"legacy"`` (vision_msgs 2.x/3.x: Foxy, Galactic): ``results[].id`` / ``.score``,
  ``bbox.center.x`` (geometry_msgs/Pose2D), ``Detection2D.tracking_id``, ``source_img``.

A Detection2D's ``id`` (``tracking_id`` in legacy) that is a decimal integer names the instance
with that id in an instance-id mask (the mask contract of :mod:`..segmentation.external`).
Nothing here imports rclpy at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..segmentation.base import Detection
from .messages import MessageError

PACKAGE = "vision_msgs"

#: vision_msgs 4.x (Humble and later), in dependency order. Comments dropped; fields verbatim.
HUMBLE_DEFINITIONS: dict[str, str] = {
    "Point2D": "float64 x\nfloat64 y\n",
    "Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\n"
                                "geometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                   "vision_msgs/BoundingBox2D bbox\nstring id\n",
    "Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}

#: vision_msgs 2.x/3.x (Foxy, Galactic).
LEGACY_DEFINITIONS: dict[str, str] = {
    "BoundingBox2D": "geometry_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesisWithPose": "string id\nfloat64 score\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                   "vision_msgs/BoundingBox2D bbox\nsensor_msgs/Image source_img\nbool is_tracking\n"
                   "string tracking_id\n",
    "Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}

LAYOUTS = {"humble": HUMBLE_DEFINITIONS, "legacy": LEGACY_DEFINITIONS}


@dataclass(frozen=True)
class VisionTypes:
    """The classes a Detection2DArray is built from (``ObjectHypothesis``/``Point2D`` are None in the
    legacy layout; ``Pose2D`` is vision_msgs/Pose2D or geometry_msgs/Pose2D accordingly)."""

    Detection2DArray: Any
    Detection2D: Any
    ObjectHypothesisWithPose: Any
    BoundingBox2D: Any
    Pose2D: Any
    PoseWithCovariance: Any
    Pose: Any
    Point: Any
    Quaternion: Any
    ObjectHypothesis: Any = None
    Point2D: Any = None
    #: legacy Detection2D.source_img (rosbags needs every field); None for rclpy (defaults it).
    Image: Any = None
    layout: str = "humble"
    #: the typestore (rosbags) or None (rclpy).
    typestore: Any = None


def register_vision_types(typestore: Any, layout: str = "humble") -> VisionTypes:
    """Register vision_msgs from ``.msg`` text in a rosbags typestore (e.g.
    ``messages.rosbags_types().typestore``) and return its classes. Registering twice is harmless;
    one typestore holds one layout."""
    from rosbags.typesys import get_types_from_msg

    if layout not in LAYOUTS:
        raise ValueError(f"vision_msgs layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    defs: dict[str, Any] = {}
    for name, text in LAYOUTS[layout].items():
        defs.update(get_types_from_msg(text, f"{PACKAGE}/msg/{name}"))
    typestore.register(defs)
    t = typestore.types
    humble = layout == "humble"
    return VisionTypes(
        Detection2DArray=t[f"{PACKAGE}/msg/Detection2DArray"],
        Detection2D=t[f"{PACKAGE}/msg/Detection2D"],
        ObjectHypothesisWithPose=t[f"{PACKAGE}/msg/ObjectHypothesisWithPose"],
        BoundingBox2D=t[f"{PACKAGE}/msg/BoundingBox2D"],
        Pose2D=t[f"{PACKAGE}/msg/Pose2D" if humble else "geometry_msgs/msg/Pose2D"],
        PoseWithCovariance=t["geometry_msgs/msg/PoseWithCovariance"],
        Pose=t["geometry_msgs/msg/Pose"],
        Point=t["geometry_msgs/msg/Point"],
        Quaternion=t["geometry_msgs/msg/Quaternion"],
        ObjectHypothesis=t[f"{PACKAGE}/msg/ObjectHypothesis"] if humble else None,
        Point2D=t[f"{PACKAGE}/msg/Point2D"] if humble else None,
        Image=None if humble else t["sensor_msgs/msg/Image"],
        layout=layout,
        typestore=typestore,
    )


def rclpy_vision_types() -> VisionTypes | None:
    """rclpy classes of the installed vision_msgs (layout detected), or None when it is absent."""
    try:
        from vision_msgs import msg as vm
    except ImportError:
        return None
    from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion

    humble = hasattr(vm, "ObjectHypothesis") and hasattr(vm, "Point2D")
    if humble:
        pose2d: Any = vm.Pose2D
    else:
        from geometry_msgs import msg as gm

        pose2d = gm.Pose2D
    return VisionTypes(
        Detection2DArray=vm.Detection2DArray, Detection2D=vm.Detection2D,
        ObjectHypothesisWithPose=vm.ObjectHypothesisWithPose, BoundingBox2D=vm.BoundingBox2D,
        Pose2D=pose2d, PoseWithCovariance=PoseWithCovariance, Pose=Pose, Point=Point,
        Quaternion=Quaternion, ObjectHypothesis=getattr(vm, "ObjectHypothesis", None),
        Point2D=getattr(vm, "Point2D", None), layout="humble" if humble else "legacy")


# -- parsing (duck-typed: rclpy or rosbags, either layout) -------------------------------------------


def _instance_id(text: Any) -> int | None:
    s = str(text).strip() if text is not None else ""
    return int(s) if s.isdigit() and int(s) <= 65535 else None


def _hypothesis(result: Any) -> tuple[str, float]:
    """(class id, score) of one ObjectHypothesisWithPose, either layout."""
    h = getattr(result, "hypothesis", result)  # 4.x nests it; legacy has the fields inline
    cls = getattr(h, "class_id", None)
    if cls is None:
        cls = getattr(h, "id", "")
    return str(cls), float(getattr(h, "score", 0.0))


def box_xyxy(bbox: Any) -> np.ndarray:
    """A BoundingBox2D (either layout) → (4,) axis-aligned (x0, y0, x1, y1) pixels; a rotated box
    (theta ≠ 0) gives the axis-aligned box around it."""
    centre = bbox.center
    pos = getattr(centre, "position", centre)  # 4.x: center.position.x; legacy: center.x
    cx, cy = float(pos.x), float(pos.y)
    theta = float(getattr(centre, "theta", 0.0))
    sx, sy = float(bbox.size_x), float(bbox.size_y)
    if not np.isfinite([cx, cy, sx, sy, theta]).all() or sx < 0 or sy < 0:
        raise MessageError(f"bounding box has non-finite or negative values: centre ({cx}, {cy}), "
                           f"size {sx} x {sy}, theta {theta}")
    c, s = abs(np.cos(theta)), abs(np.sin(theta))
    hw, hh = 0.5 * (c * sx + s * sy), 0.5 * (s * sx + c * sy)
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def detections_from_msg(msg: Any, problems: list[str] | None = None) -> list[Detection]:
    """A Detection2DArray (or a sequence of Detection2D) → :class:`Detection` list.

    label/score: the best-scoring hypothesis (label "" and score 0 without one). A zero-size box
    (size 0 x 0) means "no box" (e.g. a detection that only names a mask instance). instance_id:
    ``id`` (4.x) or ``tracking_id`` (legacy) when it is a decimal integer.
    A malformed box (negative or non-finite) raises :class:`MessageError`; with a ``problems``
    list, that detection is skipped instead and the reason appended, so the others still count.
    """
    dets = getattr(msg, "detections", msg)
    out = []
    for k, d in enumerate(dets):
        hyps = [_hypothesis(r) for r in getattr(d, "results", [])]
        label, score = max(hyps, key=lambda h: h[1]) if hyps else ("", 0.0)
        raw_id = getattr(d, "id", None)
        if raw_id is None:
            raw_id = getattr(d, "tracking_id", None)
        try:
            box = box_xyxy(d.bbox)
        except MessageError as exc:
            if problems is None:
                raise
            problems.append(f"detection {k} ({label or 'no label'!r}) skipped: {exc}")
            continue
        has_box = box[2] > box[0] and box[3] > box[1]
        out.append(Detection(box_xyxy=box if has_box else None, label=label, score=score,
                             instance_id=_instance_id(raw_id)))
    return out


def boxes_from_detections(detections: Sequence[Detection]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(Nx4 float64 XYXY boxes, labels, (N,) scores) of the detections that have a box."""
    with_box = [d for d in detections if d.box_xyxy is not None]
    boxes = np.array([d.box_xyxy for d in with_box], float).reshape(-1, 4)
    return boxes, [d.label for d in with_box], np.array([d.score for d in with_box], float)


# -- building ------------------------------------------------------------------------------------------


def detections_to_msg(types: VisionTypes, detections: Sequence[Detection], header: Any) -> Any:
    """:class:`Detection` list → Detection2DArray of ``types`` (either layout, either flavour).
    Detections without a box get a zero-size box; ``instance_id`` goes to ``id`` / ``tracking_id``."""
    rosbags = types.typestore is not None
    items = []
    for d in detections:
        x0, y0, x1, y1 = (np.asarray(d.box_xyxy, float) if d.box_xyxy is not None else np.zeros(4))
        cx, cy, sx, sy = 0.5 * (x0 + x1), 0.5 * (y0 + y1), x1 - x0, y1 - y0
        pose = types.PoseWithCovariance(
            pose=types.Pose(position=types.Point(x=0.0, y=0.0, z=0.0),
                            orientation=types.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
            covariance=np.zeros(36) if rosbags else [0.0] * 36)
        ident = "" if d.instance_id is None else str(int(d.instance_id))
        if types.layout == "humble":
            result = types.ObjectHypothesisWithPose(
                hypothesis=types.ObjectHypothesis(class_id=d.label, score=float(d.score)), pose=pose)
            centre = types.Pose2D(position=types.Point2D(x=cx, y=cy), theta=0.0)
            fields: dict[str, Any] = {"id": ident}
        else:
            result = types.ObjectHypothesisWithPose(id=d.label, score=float(d.score), pose=pose)
            centre = types.Pose2D(x=cx, y=cy, theta=0.0)
            fields = {"is_tracking": bool(ident), "tracking_id": ident}
            if rosbags:
                fields["source_img"] = types.Image(
                    header=header, height=0, width=0, encoding="", is_bigendian=0, step=0,
                    data=np.zeros(0, np.uint8))
        bbox = types.BoundingBox2D(center=centre, size_x=float(sx), size_y=float(sy))
        items.append(types.Detection2D(header=header, results=[result] if d.label or d.score else [],
                                       bbox=bbox, **fields))
    return types.Detection2DArray(header=header, detections=items)
