"""rosbag2 files through `rosbags` (no ROS install needed): mcap or sqlite3."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conversion import group_to_frame, output_options, result_to_messages
from .messages import MessageTypes, rosbags_types, stamp_to_ns


class BagWriter:
    """Writes messages of :func:`rosbags_types` classes to a new rosbag2; one connection per topic.

    Use as a context manager so the metadata is always written, even when processing fails midway.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        types: MessageTypes | None = None,
        overwrite: bool = False,
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path}: output bag already exists")
            shutil.rmtree(self.path)
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"bag storage must be mcap or sqlite3, got {storage!r}")
        self.types = types or rosbags_types()
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` to CDR and append it under ``topic`` at log time ``stamp_ns``."""
        ts = self.types.typestore
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            self._connections[topic] = conn
        self._writer.write(conn, int(stamp_ns), ts.serialize_cdr(msg, msg.__msgtype__))
        self.counts[topic] = self.counts.get(topic, 0) + 1


def read_bag(path: str | Path, topics: list[str] | None = None):
    """Yield (topic, msgtype, stamp_ns, message) in log-time order from a rosbag2 folder or file."""
    from rosbags.highlevel import AnyReader

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such bag")
    with AnyReader([p], default_typestore=rosbags_types().typestore) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, stamp_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, stamp_ns, reader.deserialize(raw, conn.msgtype)


# -- offline processing ---------------------------------------------------------------------------

INPUT_TYPES = {
    "image": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "right/image": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "right/camera_info": ("sensor_msgs/msg/CameraInfo",),
    "masks": ("sensor_msgs/msg/Image",),
    "detections": ("vision_msgs/msg/Detection2DArray",),
    "sparse_depth": ("sensor_msgs/msg/Image",),
    "lidar_points": ("sensor_msgs/msg/PointCloud2",),
}


@dataclass
class BagSummary:
    frames_processed: int = 0
    frames_failed: int = 0
    frames_unsynchronised: int = 0
    messages_read: int = 0
    messages_skipped: int = 0  # undecodable or of an unexpected type
    written: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # first words of each error → count
    depth_ms: list[float] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("frames processed", str(self.frames_processed)),
            ("frames failed", str(self.frames_failed)),
            ("frames without a synchronised partner", str(self.frames_unsynchronised)),
            ("messages read", str(self.messages_read)),
            ("messages skipped (broken/unknown)", str(self.messages_skipped)),
        ]
        if self.depth_ms:
            ms = sorted(self.depth_ms)
            rows.append(("pipeline ms p50 / max", f"{ms[len(ms) // 2]:.1f} / {ms[-1]:.1f}"))
        rows += [(f"wrote {topic}", str(n)) for topic, n in sorted(self.written.items())]
        rows += [(f"error: {text}", str(n)) for text, n in self.errors.items()]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def input_topics(camera_ns: str, stereo: bool, right_ns: str | None = None,
                 image: str = "image", masks: str | None = None, detections: str | None = None,
                 sparse_depth: str | None = None, lidar_points: str | None = None) -> dict[str, str]:
    """Bag topic of each pipeline input, e.g. /camera/image and /camera/camera_info (the optional
    ones only when given)."""
    ns = camera_ns.rstrip("/")
    right = (right_ns or f"{ns}/right").rstrip("/")
    topics = {"image": f"{ns}/{image}", "camera_info": f"{ns}/camera_info"}
    if stereo:
        topics |= {"right/image": f"{right}/{image}", "right/camera_info": f"{right}/camera_info"}
    for name, topic in (("masks", masks), ("detections", detections),
                        ("sparse_depth", sparse_depth), ("lidar_points", lidar_points)):
        if topic:
            topics[name] = topic
    return topics


def process_bag(
    in_path: str | Path,
    out_path: str | Path,
    parameters: dict[str, Any] | None = None,
    topics: dict[str, str] | None = None,
    output_ns: str = "/depth_perception",
    storage: str = "mcap",
    copy_inputs: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> BagSummary:
    """Run the node's pipeline over a rosbag2 in log-time order and write every output topic with
    the input stamps. Broken or unexpected messages and failing frames are counted, never fatal; the
    output bag is closed properly whatever happens."""
    from rosbags.highlevel import AnyReader
    from tqdm import tqdm

    from ..config import DEFAULTS, pipeline_config
    from ..driver import load_models, synchronizer

    params = {**DEFAULTS, **(parameters or {})}
    topics = topics or input_topics("/camera", bool(params["stereo"]))
    in_p = Path(in_path)
    if not in_p.exists():
        raise FileNotFoundError(f"{in_p}: no such bag")
    # the same models as the node: the monocular network (when `model` is set) and SAM / the
    # open-vocabulary detector (when segmentation.source asks for them)
    config = pipeline_config(params)  # invalid parameters fail before the models load
    pipeline = load_models(params).pipeline(config)
    types = rosbags_types()
    if "detections" in topics:  # vision_msgs is not in rosbags' own typestore
        from .vision_msgs import register_vision_types

        register_vision_types(types.typestore)
    with AnyReader([in_p], default_typestore=types.typestore) as reader, \
            BagWriter(out_path, storage=storage, types=types, overwrite=overwrite) as writer:
        conns = _input_connections(reader, topics, in_p)
        # masks / detections recorded from slower nodes: an image waits for them (in log time)
        replay = _Replay(pipeline, synchronizer(list(topics), params), writer, types, params,
                         output_ns.rstrip("/"), {topic: name for name, topic in topics.items()},
                         copy_inputs)
        total = sum(c.msgcount for c in conns)
        for conn, log_ns, raw in tqdm(reader.messages(connections=conns), total=total,
                                      unit="msg", disable=not progress or None):
            replay.feed(reader, conn, log_ns, raw)
        return replay.finish()


def _input_connections(reader: Any, topics: dict[str, str], in_p: Path) -> list[Any]:
    """The bag's connections of the input topics; every input topic must be there."""
    present = {c.topic for c in reader.connections}
    missing = [t for t in topics.values() if t not in present]
    if missing:
        raise ValueError(
            f"{in_p}: input topic(s) {', '.join(missing)} not in the bag "
            f"(it has: {', '.join(sorted(present)) or 'none'})")
    wanted = set(topics.values())
    return [c for c in reader.connections if c.topic in wanted]


class _Replay:
    """Feeds recorded messages through the synchroniser and the pipeline, writing the outputs."""

    def __init__(self, pipeline: Any, sync: Any, writer: BagWriter, types: Any,
                 params: dict[str, Any], ns: str, name_of_topic: dict[str, str],
                 copy_inputs: bool):
        from .region_messages import rosbags_marker_types, rosbags_region_types

        self.pipeline, self.sync, self.writer, self.types = pipeline, sync, writer, types
        self.params, self.ns, self.name_of_topic = params, ns, name_of_topic
        self.copy_inputs = copy_inputs
        self.options = output_options(params, rosbags_region_types(types.typestore),
                                      rosbags_marker_types(types.typestore))
        self.summary = BagSummary()
        self.last_ns = 0

    def feed(self, reader: Any, conn: Any, log_ns: int, raw: bytes) -> None:
        self.summary.messages_read += 1
        name = self.name_of_topic[conn.topic]
        if conn.msgtype not in INPUT_TYPES[name]:
            self.summary.messages_skipped += 1
            return
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception:  # noqa: BLE001 - a corrupt record is counted, not fatal
            self.summary.messages_skipped += 1
            return
        if self.copy_inputs:
            self.writer.write(conn.topic, msg, log_ns)
        group = self.sync.add(name, stamp_to_ns(msg.header.stamp), msg, now_ns=log_ns)
        if group is not None:
            self._process(group, log_ns)
        self.last_ns = log_ns

    def finish(self) -> BagSummary:
        final = self.sync.poll(None)  # the last image may still wait for masks / detections
        if final is not None:
            self._process(final, self.last_ns)
        summary = self.summary
        summary.written = {t: n for t, n in self.writer.counts.items()
                           if t.startswith(self.ns + "/")}
        summary.frames_unsynchronised = self.sync.stats.dropped + sum(
            n for name, n in self.sync.pending().items() if name == "image")
        return summary

    def _process(self, group: dict[str, Any], log_ns: int) -> None:
        try:
            frame = group_to_frame(group, baseline_m=float(self.params["baseline"]))
            result = self.pipeline.process(frame)
            outputs = result_to_messages(self.types, frame, result, group["image"].header,
                                         self.options)
        except ValueError as exc:
            self.summary.frames_failed += 1
            key = str(exc)[:80]
            self.summary.errors[key] = self.summary.errors.get(key, 0) + 1
            return
        self.summary.frames_processed += 1
        self.summary.depth_ms.append(result.timings_ms.get("total", 0.0))
        for topic, out_msg in outputs.items():
            self.writer.write(f"{self.ns}/{topic}", out_msg, log_ns)
