"""Graspable regions → `depth_perception_msgs/GraspableRegionArray`, clouds, label images and RViz markers.

Written once against message classes passed in, like :mod:`.messages`: rclpy's generated classes on
a robot (:func:`rclpy_region_types`, :func:`rclpy_marker_types`) or `rosbags` typestore classes for
bag files and tests (:func:`register_region_types`, :func:`rosbags_marker_types`). Nothing here
imports rclpy at module level, and the interface package is optional: without it
:func:`rclpy_region_types` returns None and a node publishes the standard messages only.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..regions import Region, Verdict, label_image, regions_cloud
from . import clouds as C
from . import messages as M

MSG_PACKAGE = "depth_perception_msgs"
MSG_NAMES = ("GraspableRegion", "GraspableRegionArray")  # dependency order

#: marker colours (r, g, b) by verdict: green fits, orange too wide, grey too few points, red out of
#: range, magenta degenerate (a line or sliver whose geometry cannot be trusted)
_VERDICT_TEXT = {int(v): v.name.lower().replace("_", " ") for v in Verdict}
VERDICT_COLOURS: dict[int, tuple[float, float, float]] = {
    Verdict.GRASPABLE: (0.1, 0.8, 0.2),
    Verdict.TOO_WIDE: (1.0, 0.55, 0.0),
    Verdict.TOO_FEW_POINTS: (0.6, 0.6, 0.6),
    Verdict.OUT_OF_RANGE: (0.9, 0.1, 0.1),
    Verdict.DEGENERATE: (0.8, 0.2, 0.8),
}


@dataclass(frozen=True)
class RegionMessageTypes:
    """depth_perception_msgs classes plus the geometry_msgs they are built from."""

    GraspableRegion: Any
    GraspableRegionArray: Any
    Point: Any
    Pose: Any
    Quaternion: Any
    Vector3: Any


@dataclass(frozen=True)
class MarkerTypes:
    """visualization_msgs classes and what a Marker is built from."""

    Marker: Any
    MarkerArray: Any
    Point: Any
    Pose: Any
    Quaternion: Any
    Vector3: Any
    ColorRGBA: Any
    Duration: Any
    #: rosbags needs every field of a Marker; these fill the texture / mesh ones (None for rclpy,
    #: whose classes default them).
    CompressedImage: Any = None
    MeshFile: Any = None
    UVCoordinate: Any = None


# -- finding and registering the interface definitions ----------------------------------------------


def find_msg_dir(msg_dir: str | Path | None = None) -> Path:
    """The folder holding GraspableRegion.msg: ``msg_dir``, $DP_MSG_DIR, this source tree's msg/msg,
    or share/depth_perception_msgs/msg of an AMENT_PREFIX_PATH prefix (where colcon installs it)."""
    candidates = [Path(msg_dir)] if msg_dir is not None else []
    if not candidates:
        if os.environ.get("DP_MSG_DIR"):
            candidates.append(Path(os.environ["DP_MSG_DIR"]))
        candidates.append(Path(__file__).resolve().parents[2] / "msg" / "msg")
        for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
            candidates.append(Path(prefix) / "share" / MSG_PACKAGE / "msg")
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in MSG_NAMES):
            return folder
    raise M.MessageError(
        f"{MSG_PACKAGE} definitions ({', '.join(n + '.msg' for n in MSG_NAMES)}) not found in "
        f"{', '.join(str(c) for c in candidates)}; pass msg_dir or set DP_MSG_DIR"
    )


def register_region_types(typestore: Any, msg_dir: str | Path | None = None) -> RegionMessageTypes:
    """Register the depth_perception_msgs definitions in a rosbags typestore (so bags can carry
    them) and return the classes. Registering twice is harmless."""
    from rosbags.typesys import get_types_from_msg

    folder = find_msg_dir(msg_dir)
    definitions: dict[str, Any] = {}
    for name in MSG_NAMES:
        text = (folder / f"{name}.msg").read_text(encoding="utf-8")
        definitions.update(get_types_from_msg(text, f"{MSG_PACKAGE}/msg/{name}"))
    typestore.register(definitions)
    t = typestore.types
    return RegionMessageTypes(
        GraspableRegion=t[f"{MSG_PACKAGE}/msg/GraspableRegion"],
        GraspableRegionArray=t[f"{MSG_PACKAGE}/msg/GraspableRegionArray"],
        Point=t["geometry_msgs/msg/Point"],
        Pose=t["geometry_msgs/msg/Pose"],
        Quaternion=t["geometry_msgs/msg/Quaternion"],
        Vector3=t["geometry_msgs/msg/Vector3"],
    )


def rosbags_region_types(typestore: Any) -> RegionMessageTypes | None:
    """:func:`register_region_types`, or None when the definitions cannot be found (bags then
    carry standard messages only, like a robot without the interface package)."""
    try:
        return register_region_types(typestore)
    except (OSError, ValueError):
        return None


def rclpy_region_types() -> RegionMessageTypes | None:
    """rclpy classes of depth_perception_msgs, or None when the interface package is not built."""
    try:
        from depth_perception_msgs.msg import GraspableRegion, GraspableRegionArray
    except ImportError:
        return None
    from geometry_msgs.msg import Point, Pose, Quaternion, Vector3

    return RegionMessageTypes(GraspableRegion, GraspableRegionArray, Point, Pose, Quaternion, Vector3)


def rosbags_marker_types(typestore: Any) -> MarkerTypes:
    """visualization_msgs classes of a rosbags typestore (e.g. ``messages.rosbags_types().typestore``)."""
    t = typestore.types
    return MarkerTypes(
        Marker=t["visualization_msgs/msg/Marker"],
        MarkerArray=t["visualization_msgs/msg/MarkerArray"],
        Point=t["geometry_msgs/msg/Point"],
        Pose=t["geometry_msgs/msg/Pose"],
        Quaternion=t["geometry_msgs/msg/Quaternion"],
        Vector3=t["geometry_msgs/msg/Vector3"],
        ColorRGBA=t["std_msgs/msg/ColorRGBA"],
        Duration=t["builtin_interfaces/msg/Duration"],
        CompressedImage=t["sensor_msgs/msg/CompressedImage"],
        MeshFile=t.get("visualization_msgs/msg/MeshFile"),
        UVCoordinate=t.get("visualization_msgs/msg/UVCoordinate"),
    )


def rclpy_marker_types() -> MarkerTypes:
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    return MarkerTypes(Marker, MarkerArray, Point, Pose, Quaternion, Vector3, ColorRGBA, Duration)


# -- geometry helpers -------------------------------------------------------------------------------


def rotation_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """3x3 rotation → unit quaternion (x, y, z, w) with w >= 0; identity for a non-finite matrix."""
    m = np.asarray(R, dtype=np.float64)
    if m.shape != (3, 3):
        return (0.0, 0.0, 0.0, 1.0)
    # plain floats: numpy spends microseconds per call on 3x3 arrays
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = m.tolist()
    if not all(map(math.isfinite, (m00, m01, m02, m10, m11, m12, m20, m21, m22))):
        return (0.0, 0.0, 0.0, 1.0)
    tr = m00 + m11 + m22
    # Shepperd: divide by the largest of the four candidates for numerical stability
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, s / 4]
    elif m00 > m11 and m00 > m22:
        s = math.sqrt(1.0 + m00 - m11 - m22) * 2
        q = [s / 4, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s]
    elif m11 > m22:
        s = math.sqrt(1.0 + m11 - m00 - m22) * 2
        q = [(m01 + m10) / s, s / 4, (m12 + m21) / s, (m02 - m20) / s]
    else:
        s = math.sqrt(1.0 + m22 - m00 - m11) * 2
        q = [(m02 + m20) / s, (m12 + m21) / s, s / 4, (m10 - m01) / s]
    norm = math.sqrt(sum(v * v for v in q))
    sign = -1.0 if q[3] < 0 else 1.0
    return tuple(sign * v / norm for v in q)  # type: ignore[return-value]


def _point(cls: Any, p: Any) -> Any:
    """geometry_msgs Point / Vector3 from a 3-vector (array or sequence)."""
    x, y, z = p.tolist() if isinstance(p, np.ndarray) else p
    return cls(x=float(x), y=float(y), z=float(z))


def _pose(t: Any, centre: Any, R: np.ndarray | None) -> Any:
    """Pose at ``centre`` with orientation R (None: identity)."""
    x, y, z, w = (0.0, 0.0, 0.0, 1.0) if R is None else rotation_to_quaternion(R)
    return t.Pose(position=_point(t.Point, centre), orientation=t.Quaternion(x=x, y=y, z=z, w=w))


# -- GraspableRegionArray ---------------------------------------------------------------------------


def region_to_msg(
    region_classes: RegionMessageTypes, types: M.MessageTypes, region: Region, header: Any,
    depth_source: str = "", depth_confidence: float = 0.0, cloud: Any = None,
) -> Any:
    """One :class:`Region` → `depth_perception_msgs/GraspableRegion` (cloud: xyz [+ rgb], height 1;
    ``cloud`` when it is already made)."""
    t = region_classes
    x, y, w, h = region.roi
    return t.GraspableRegion(
        header=header,
        id=int(region.id),
        label=str(region.label),
        score=float(region.score),
        roi=types.RegionOfInterest(x_offset=int(x), y_offset=int(y), height=int(h), width=int(w),
                                   do_rectify=False),
        cloud=C.points_to_cloud(types, region.points, header, rgb=region.colors) if cloud is None else cloud,
        centroid=_point(t.Point, region.centroid),
        box_pose=_pose(t, region.box_center, region.box_rotation),
        box_size=_point(t.Vector3, region.box_size),
        approach=_point(t.Vector3, region.approach),
        grasp_width=float(region.grasp_width),
        graspable=bool(region.graspable),
        verdict=int(region.verdict),
        reason=str(region.reason),
        point_count=int(region.point_count),
        depth_source=str(depth_source),
        depth_confidence=float(depth_confidence),
    )


def regions_to_msg(
    region_classes: RegionMessageTypes, types: M.MessageTypes, regions: list[Region], header: Any,
    depth_source: str = "", depth_confidence: float = 0.0,
) -> Any:
    """Regions of one frame → `depth_perception_msgs/GraspableRegionArray`, every part with ``header``.

    Descriptors of regions without points stay NaN (REP 117); their verdict says why.
    """
    if len({r.colors is None for r in regions}) > 1:  # regions of different origins: one by one
        clouds = [C.points_to_cloud(types, r.points, header, rgb=r.colors) for r in regions]
    else:  # one interleaving pass for all
        xyz, rgb, _ = regions_cloud(regions, labels=False)
        clouds = C.points_to_clouds(types, xyz, [r.point_count for r in regions], header, rgb=rgb)
    return region_classes.GraspableRegionArray(
        header=header,
        regions=[
            region_to_msg(region_classes, types, r, header, depth_source, depth_confidence, cloud)
            for r, cloud in zip(regions, clouds)
        ],
    )


def regions_cloud_msg(types: M.MessageTypes, regions: list[Region], header: Any) -> Any:
    """All region clouds as one `PointCloud2` (xyz [+ rgb] + uint16 ``label`` = region id)."""
    xyz, rgb, label = regions_cloud(regions)
    return C.points_to_cloud(types, xyz, header, rgb=rgb, label=label)


def label_image_msg(types: M.MessageTypes, regions: list[Region], shape: tuple[int, int], header: Any) -> Any:
    """16UC1 instance image aligned with depth (0 = background, value = region id)."""
    return M.numpy_to_image(types, label_image(regions, shape), "16UC1", header)


# -- markers ----------------------------------------------------------------------------------------


def _marker_base(mt: MarkerTypes, header: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The fields every Marker of one MarkerArray shares (rosbags classes have no defaults, so all
    are set), and the names of the list fields that each marker needs a fresh list for. The texture
    and mesh fields of newer distros are empty, so every marker may share them."""
    base: dict[str, Any] = dict(
        header=header, ns="", id=0, type=mt.Marker.CUBE, action=mt.Marker.ADD, frame_locked=False,
        text="", mesh_resource="", mesh_use_embedded_materials=False,
        lifetime=mt.Duration(sec=0, nanosec=0),
    )
    lists = ["points", "colors"]
    if dataclasses.is_dataclass(mt.Marker):
        names = {f.name for f in dataclasses.fields(mt.Marker)}
        extras: dict[str, Any] = {"texture_resource": ""}
        if mt.CompressedImage is not None:
            extras["texture"] = mt.CompressedImage(header=header, format="", data=np.zeros(0, dtype=np.uint8))
        if mt.MeshFile is not None:
            extras["mesh_file"] = mt.MeshFile(filename="", data=np.zeros(0, dtype=np.uint8))
        base.update((k, v) for k, v in extras.items() if k in names)
        if "uv_coordinates" in names:
            lists.append("uv_coordinates")
    return base, tuple(lists)


def _marker(mt: MarkerTypes, base: tuple[dict[str, Any], tuple[str, ...]], **fields: Any) -> Any:
    """A Marker with every field set: ``base`` from :func:`_marker_base`, then ``fields``."""
    shared, lists = base
    values = {**shared, **{k: [] for k in lists}, **fields}
    if "pose" not in values:
        values["pose"] = _pose(mt, (0.0, 0.0, 0.0), None)
    if "scale" not in values:
        values["scale"] = mt.Vector3(x=1.0, y=1.0, z=1.0)
    if "color" not in values:
        values["color"] = _colour(mt, (1.0, 1.0, 1.0), 1.0)
    return mt.Marker(**values)


def _colour(mt: MarkerTypes, rgb: tuple[float, float, float], alpha: float) -> Any:
    return mt.ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))


def regions_to_markers(
    marker_classes: MarkerTypes,
    regions: list[Region],
    header: Any,
    ns: str = "regions",
    box_alpha: float = 0.35,
    text_height_m: float = 0.02,
    arrow_length_m: float = 0.1,
    lifetime_s: float = 0.0,
) -> Any:
    """`visualization_msgs/MarkerArray` for RViz: DELETEALL first (so markers of regions that are
    gone vanish), then per region a CUBE (oriented box), a TEXT_VIEW_FACING label (label, id,
    verdict, width in cm) and an ARROW along the approach ending on the visible surface; colours
    by verdict (:data:`VERDICT_COLOURS`). Namespaces ``<ns>/boxes``, ``<ns>/labels``,
    ``<ns>/approach``; marker id = region id. Regions without a finite box get no markers.
    """
    mt = marker_classes
    sec, nanosec = divmod(int(round(max(lifetime_s, 0.0) * 1e9)), 1_000_000_000)
    life = mt.Duration(sec=sec, nanosec=nanosec)
    base = _marker_base(mt, header)
    base[0]["lifetime"] = life
    markers = [_marker(mt, base, ns="", id=0, action=mt.Marker.DELETEALL)]
    # one message object per colour / scale, shared by the markers that use it (messages are
    # only read when serialised)
    boxes_colour = {v: _colour(mt, rgb, box_alpha) for v, rgb in VERDICT_COLOURS.items()}
    solid_colour = {v: _colour(mt, rgb, 1.0) for v, rgb in VERDICT_COLOURS.items()}
    other_box, other_solid = _colour(mt, (1.0, 1.0, 1.0), box_alpha), _colour(mt, (1.0, 1.0, 1.0), 1.0)
    text_scale = mt.Vector3(x=0.0, y=0.0, z=float(text_height_m))
    # with points: x = shaft diameter, y = head diameter, z = head length
    arrow_scale = mt.Vector3(x=0.006, y=0.012, z=0.02)
    # plain floats below: a dozen numpy calls on 3-vectors per region cost more than the messages
    for r in regions:
        centre, box = r.box_center.tolist(), r.box_size.tolist()
        if not all(map(math.isfinite, centre + box)):
            continue
        verdict, rid = int(r.verdict), int(r.id)
        size = [max(v, 1e-3) for v in box]  # RViz drops zero-scale markers; planar sets have one
        markers.append(_marker(
            mt, base, ns=f"{ns}/boxes", id=rid, type=mt.Marker.CUBE,
            pose=_pose(mt, centre, r.box_rotation), scale=mt.Vector3(x=size[0], y=size[1], z=size[2]),
            color=boxes_colour.get(verdict, other_box),
        ))
        ux, uy, uz = r.support_plane[:3].tolist() if r.support_plane is not None else (0.0, -1.0, 0.0)
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = r.box_rotation.tolist()
        # box half-extent along up
        reach = 0.5 * (abs(r00 * ux + r10 * uy + r20 * uz) * size[0]
                       + abs(r01 * ux + r11 * uy + r21 * uz) * size[1]
                       + abs(r02 * ux + r12 * uy + r22 * uz) * size[2])
        text = f"{r.label or 'object'} #{rid}\n{_VERDICT_TEXT.get(verdict, '')}"
        if math.isfinite(r.grasp_width):
            text += f" {r.grasp_width * 100:.1f} cm"
        lift = reach + text_height_m
        markers.append(_marker(
            mt, base, ns=f"{ns}/labels", id=rid, type=mt.Marker.TEXT_VIEW_FACING,
            pose=_pose(mt, (centre[0] + ux * lift, centre[1] + uy * lift, centre[2] + uz * lift), None),
            scale=text_scale, color=solid_colour.get(verdict, other_solid), text=text,
        ))
        approach, end = r.approach.tolist(), r.surface_centroid.tolist()
        if all(map(math.isfinite, approach + end)):
            start = [e - arrow_length_m * a for e, a in zip(end, approach)]
            markers.append(_marker(
                mt, base, ns=f"{ns}/approach", id=rid, type=mt.Marker.ARROW,
                points=[_point(mt.Point, start), _point(mt.Point, end)],
                scale=arrow_scale, color=solid_colour.get(verdict, other_solid),
            ))
    return mt.MarkerArray(markers=markers)
