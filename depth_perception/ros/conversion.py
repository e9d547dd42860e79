"""Synchronised input messages → :class:`Frame`, and :class:`FrameResult` → output messages.

Shared by the ROS node and the bag processor so both publish exactly the same thing. Message
classes come in through :class:`MessageTypes`; nothing here imports rclpy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..pipeline import Frame, FrameResult
from ..sync import CameraInfoMatch, CameraInfoStore
from . import clouds as C
from . import messages as M

#: Output topic names, relative to the node's namespace.
OUTPUT_TOPICS = ("depth", "depth/camera_info", "depth/colored", "points", "regions",
                 "regions/points", "regions/labels", "regions/markers", "masks/overlay")


@dataclass(frozen=True)
class OutputOptions:
    depth_encoding: str = "32FC1"
    #: topics to produce; costly ones are skipped when nobody listens.
    topics: tuple[str, ...] = OUTPUT_TOPICS
    cloud_rgb: bool = True
    cloud_label: bool = True  # uint16 `label` field (instance id) when regions exist
    cloud_stride: int = 1
    cloud_max_range_m: float | None = None
    #: `depth_perception_msgs` classes (None when the interface package is not built) and
    #: `visualization_msgs` classes; see ros/region_messages.py.
    region_types: Any = None
    marker_types: Any = None


def output_options(values: dict[str, Any], region_types: Any = None, marker_types: Any = None,
                   topics: tuple[str, ...] = OUTPUT_TOPICS) -> OutputOptions:
    """OutputOptions from node parameter values (see depth_perception.config)."""
    max_range = float(values["cloud.max_range"])
    return OutputOptions(depth_encoding=str(values["depth_encoding"]), topics=topics,
                         cloud_stride=int(values["cloud.stride"]),
                         cloud_max_range_m=max_range if max_range > 0 else None,
                         region_types=region_types, marker_types=marker_types)


def colour_from_message(msg: Any, max_pixels: int | None = None) -> Any:
    """`sensor_msgs/Image` or `sensor_msgs/CompressedImage` → HxWx3 uint8 RGB; images over
    ``max_pixels`` are refused before they are converted or decoded."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return M.compressed_to_rgb(msg, max_pixels)
    M.check_image_size(int(msg.width), int(msg.height), max_pixels)
    return M.image_to_rgb(msg)


def group_to_frame(group: dict[str, Any], baseline_m: float | None = None,
                   camera_infos: Mapping[str, CameraInfoStore] | None = None,
                   matches: dict[str, CameraInfoMatch] | None = None,
                   camera_info_wait_s: float = 0.0, max_pixels: int | None = None) -> Frame:
    """A synchronised set {"image", "camera_info"[, "right/image", "right/camera_info"]} → Frame.

    A CameraInfo missing from the set is taken from ``camera_infos`` (camera_info.pairing
    ``latest``): the newest one of the decoded image's size, waiting up to ``camera_info_wait_s``
    for a first one. The pairings made are put in ``matches`` (by input name) when given, so the
    caller can report their age. Colour images over ``max_pixels`` are refused before decoding.

    Raises :class:`messages.MessageError` (a ValueError) naming the bad message, or
    :class:`depth_perception.sync.MissingCameraInfo` (a ValueError).
    """
    image = group["image"]
    rgb = colour_from_message(image, max_pixels)
    stamp_ns = M.stamp_to_ns(image.header.stamp)
    frame = Frame(
        rgb=rgb,
        camera=M.camera_info_to_model(_camera_info(group, "camera_info", rgb, stamp_ns,
                                                   camera_infos, matches, camera_info_wait_s)),
        stamp_ns=stamp_ns,
        frame_id=image.header.frame_id,
    )
    if "masks" in group:  # another node's problem must not cost this frame its depth and cloud
        try:
            frame.masks = _mask_image(group["masks"])
        except M.MessageError as exc:
            frame.input_notes.append(f"topic: masks ignored: {exc}")
    if "detections" in group:
        from .vision_msgs import detections_from_msg

        frame.detections = detections_from_msg(group["detections"], frame.input_notes)
    if "sparse_depth" in group:
        frame.sparse_depth = M.image_to_depth(group["sparse_depth"])
    if "lidar_points" in group:
        frame.cloud_points = C.cloud_to_xyz(group["lidar_points"]).reshape(-1, 3)
    if "right/image" in group:
        frame.right_rgb = colour_from_message(group["right/image"], max_pixels)
        frame.right_camera = M.camera_info_to_model(_camera_info(
            group, "right/camera_info", frame.right_rgb, stamp_ns, camera_infos, matches,
            camera_info_wait_s))
        frame.baseline_m = baseline_m if baseline_m and baseline_m > 0 else None
    return frame


def _camera_info(group: dict[str, Any], name: str, rgb: np.ndarray, stamp_ns: int,
                 camera_infos: Mapping[str, CameraInfoStore] | None,
                 matches: dict[str, CameraInfoMatch] | None, wait_s: float) -> Any:
    """The CameraInfo message of input ``name``: from the set, else the latest of ``rgb``'s size."""
    if name in group:
        return group[name]
    if camera_infos is None or name not in camera_infos:
        raise M.MessageError(f"no CameraInfo for this image (is {name} published?)")
    match = camera_infos[name].lookup((rgb.shape[1], rgb.shape[0]), stamp_ns, wait_s)
    if matches is not None:
        matches[name] = match
    return match.msg


def _mask_image(msg: Any) -> np.ndarray:
    """An instance-id mask message → HxW uint16 (0 = background)."""
    if msg.encoding not in ("mono8", "8UC1", "mono16", "16UC1"):
        raise M.MessageError(f"mask image has encoding {msg.encoding!r}; expected mono8, mono16 or 16UC1")
    return M.image_to_numpy(msg).astype(np.uint16, copy=False)


def iter_result_messages(
    types: M.MessageTypes, frame: Frame, result: FrameResult, header: Any,
    options: OutputOptions = OutputOptions(),
) -> Iterator[tuple[str, Any]]:
    """(relative topic, message) for one frame's outputs, all with ``header``, cheapest and most
    awaited first (depth, then the regions and their labels), the multi-megabyte scene cloud and
    overlay last, so a driver can publish each as soon as it is built."""
    want = set(options.topics)
    rgb = result.rgb if result.rgb is not None else frame.rgb  # rectified with ``rectify``
    if "depth" in want:
        yield "depth", M.depth_to_image(types, result.depth_m, header, options.depth_encoding)
    if "depth/camera_info" in want:
        yield "depth/camera_info", M.model_to_camera_info(types, result.camera, header)
    if "depth/colored" in want:
        from ..visualize import colorize_depth

        yield "depth/colored", M.numpy_to_image(types, colorize_depth(result.depth_m), "rgb8",
                                                header)
    if result.labels is not None:
        yield from _region_messages(types, result, header, options, want)
    if "points" in want and result.points is not None:
        from ..regions import scene_cloud

        labels = result.labels if options.cloud_label and result.labels is not None else None
        cloud = scene_cloud(result.points, rgb if options.cloud_rgb else None, labels,
                            stride=options.cloud_stride, max_range_m=options.cloud_max_range_m)
        yield "points", C.points_to_cloud(types, cloud.xyz, header, rgb=cloud.rgb,
                                          label=cloud.label)
    if "masks/overlay" in want and result.labels is not None:
        from ..visualize import label_overlay

        yield "masks/overlay", M.numpy_to_image(types, label_overlay(rgb, result.labels),
                                                "rgb8", header)


def _region_messages(types: M.MessageTypes, result: FrameResult, header: Any,
                     options: OutputOptions, want: set[str]) -> Iterator[tuple[str, Any]]:
    from . import region_messages as R

    if "regions" in want and options.region_types is not None:
        yield "regions", R.regions_to_msg(options.region_types, types, result.regions, header,
                                          result.depth_source, result.depth_confidence)
    if "regions/labels" in want:
        yield "regions/labels", M.numpy_to_image(types, result.labels, "16UC1", header)
    if "regions/points" in want:
        yield "regions/points", R.regions_cloud_msg(types, result.regions, header)
    if "regions/markers" in want and options.marker_types is not None:
        yield "regions/markers", R.regions_to_markers(options.marker_types, result.regions, header)


def result_to_messages(
    types: M.MessageTypes, frame: Frame, result: FrameResult, header: Any,
    options: OutputOptions = OutputOptions(),
) -> dict[str, Any]:
    """The output messages of one frame, keyed by relative topic name, all with ``header``."""
    return dict(iter_result_messages(types, frame, result, header, options))
