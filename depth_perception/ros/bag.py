"""Bags through `rosbags` (no ROS install needed): reads rosbag2 (mcap, sqlite3) and ROS 1 `.bag`,
writes rosbag2.

:func:`process_bag` replays a recorded camera through the node's pipeline. The camera is found
without flags where there is one obvious choice (:func:`find_topics`); CameraInfo is calibration,
paired with each image by size (camera_info.pairing ``latest``); the output bag appears only when
the run succeeds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..camera import rectified_topic
from ..driver import POSE_INPUTS
from .conversion import group_to_frame, output_options, result_to_messages
from .messages import MessageTypes, camera_info_size, copy_header, rosbags_types, stamp_to_ns

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"


class BagError(ValueError):
    """A bag that cannot be used as asked (unreadable, topics missing or ambiguous, no result);
    the text is one line naming the problem."""


class NoValidDepth(BagError):
    """The bag was processed but no frame produced valid depth; ``summary`` says what happened."""

    def __init__(self, message: str, summary: BagSummary):
        super().__init__(message)
        self.summary = summary


class BagWriter:
    """Writes messages of :func:`rosbags_types` classes to a new rosbag2; one connection per topic.

    Use as a context manager. The bag is written under a temporary name beside ``path`` and
    renamed to ``path`` when the block ends without an exception (replacing an existing bag only
    with ``overwrite``); on an exception it is deleted, so a failed run leaves nothing behind.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        types: MessageTypes | None = None,
        overwrite: bool = False,
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path}: output bag already exists (use --overwrite)")
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"bag storage must be mcap or sqlite3, got {storage!r}")
        self.storage_plugin = plugins[storage]
        self.overwrite = overwrite
        self.types = types or rosbags_types()
        self._tmp: Path | None = None
        self._writer: Any = None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        from rosbags.rosbag2 import Writer

        parent = self.path.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"{parent}: no such folder for the output bag")
        # the bag keeps its final name inside the temporary folder: rosbag2 names its storage file
        # after the bag folder
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial",
                                          dir=parent))
        self._writer = Writer(self._tmp / self.path.name, version=9,
                              storage_plugin=self.storage_plugin)
        try:
            self._writer.open()
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if self._tmp is None:
            raise RuntimeError("BagWriter closed without being opened (use it in a with block)")
        try:
            self._writer.close()
            if exc_type is None:
                if self.path.exists():
                    if not self.overwrite:  # appeared while we were writing
                        raise FileExistsError(f"{self.path}: output bag already exists")
                    if self.path.is_dir():
                        shutil.rmtree(self.path)
                    else:
                        self.path.unlink()
                (self._tmp / self.path.name).rename(self.path)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` to CDR and append it under ``topic`` at log time ``stamp_ns``."""
        ts = self.types.typestore
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            self._connections[topic] = conn
        self._writer.write(conn, int(stamp_ns), ts.serialize_cdr(msg, msg.__msgtype__))
        self.counts[topic] = self.counts.get(topic, 0) + 1


@contextmanager
def open_bag(path: str | Path, typestore: Any = None) -> Iterator[Any]:
    """An open rosbags AnyReader on a rosbag2 (folder, .mcap, .db3) or a ROS 1 ``.bag``; an
    unreadable bag raises :class:`BagError` (a missing one FileNotFoundError) in one line."""
    from rosbags.highlevel import AnyReader

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such bag")
    try:
        reader = AnyReader([p], default_typestore=typestore or rosbags_types().typestore)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds for a broken file
        raise BagError(f"{p}: not a readable rosbag2 or ROS 1 bag ({_one_line(exc)})") from exc
    try:
        yield reader
    finally:
        reader.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def read_bag(path: str | Path, topics: list[str] | None = None):
    """Yield (topic, msgtype, stamp_ns, message) in log-time order from a rosbag2 or ROS 1 bag."""
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, stamp_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, stamp_ns, reader.deserialize(raw, conn.msgtype)


def bag_topics(path: str | Path) -> dict[str, str]:
    """{topic: message type} of a bag (reads its index only)."""
    with open_bag(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


# -- finding the camera ---------------------------------------------------------------------------

INPUT_TYPES = {
    "image": (IMAGE, COMPRESSED),
    "camera_info": (CAMERA_INFO,),
    "right/image": (IMAGE, COMPRESSED),
    "right/camera_info": (CAMERA_INFO,),
    "masks": (IMAGE,),
    "detections": ("vision_msgs/msg/Detection2DArray",),
    "sparse_depth": (IMAGE,),
    "lidar_points": ("sensor_msgs/msg/PointCloud2",),
    "odometry": ("nav_msgs/msg/Odometry",),
}



def _join(ns: str | None, name: str) -> str:
    return name if name.startswith("/") else f"{(ns or '').rstrip('/')}/{name}"


def _camera_ns(image_topic: str) -> str:
    """/cam/image_raw/compressed → /cam; /cam/image → /cam."""
    base = image_topic.removesuffix("/compressed")
    return base.rpartition("/")[0]


def image_candidates(available: dict[str, str], namespace: str | None = None) -> list[str]:
    """The camera image topics of a bag, under ``namespace`` (anywhere when None): Image topics
    named ``image*`` and CompressedImage topics ``.../image*/compressed``. A compressed copy of a
    raw topic, the ``<ns>/right`` camera of a pair found at ``<ns>`` and depth images (a namespace
    naming depth) are left out."""
    ns = (namespace or "").rstrip("/")
    found: dict[str, str] = {}  # base topic → topic
    for topic, msgtype in sorted(available.items()):
        if ns and not topic.startswith(ns + "/"):
            continue
        if msgtype == IMAGE:
            base = topic
        elif msgtype == COMPRESSED and topic.endswith("/compressed"):
            base = topic.removesuffix("/compressed")
        else:
            continue
        if not base.rpartition("/")[2].startswith("image"):
            continue
        if base not in found or msgtype == IMAGE:  # raw beats its compressed copy
            found[base] = topic
    topics = list(found.values())
    parents = {_camera_ns(t) for t in topics}
    topics = [t for t in topics if not (_camera_ns(t).endswith("/right")
                                        and _camera_ns(t).removesuffix("/right") in parents)]
    colour = [t for t in topics if "depth" not in _camera_ns(t)[len(ns):]]
    return colour or topics


def find_camera(available: dict[str, str], namespace: str | None = None,
                flag: str = "--camera-ns") -> tuple[str, str]:
    """(image topic, CameraInfo topic) of the one camera under ``namespace``: an image topic
    (:func:`image_candidates`) with ``<its namespace>/camera_info`` beside it. Raises
    :class:`BagError` listing the candidates and ``flag`` when there are none or several."""
    where = f" under {namespace}" if namespace else ""
    images = image_candidates(available, namespace)
    if not images:
        have = ", ".join(sorted(available)) or "none"
        raise BagError(f"no camera image topic{where} (an Image `.../image*` or a CompressedImage "
                       f"`.../image*/compressed`; the bag has: {have}); give --image TOPIC")
    paired = [t for t in images if available.get(f"{_camera_ns(t)}/camera_info") == CAMERA_INFO]
    if not paired:
        looked = ", ".join(f"{_camera_ns(t)}/camera_info" for t in images)
        raise BagError(f"no CameraInfo beside the image topic(s) {', '.join(images)} (looked for "
                       f"{looked}); give --camera-info TOPIC")
    if len(paired) > 1:
        raise BagError(f"several cameras{where}: {', '.join(paired)}; choose one with {flag} NS "
                       "(or --image TOPIC)")
    return paired[0], f"{_camera_ns(paired[0])}/camera_info"


def find_topics(available: dict[str, str], stereo: bool = False, camera_ns: str | None = None,
                image: str | None = None, camera_info: str | None = None,
                right_ns: str | None = None, masks: str | None = None,
                detections: str | None = None, sparse_depth: str | None = None,
                lidar_points: str | None = None, odometry: str | None = None) -> dict[str, str]:
    """Bag topic of each pipeline input, from a bag's {topic: type} and the user's choices.

    ``image`` is a topic (or a name relative to ``camera_ns``); without it the camera is found
    under ``camera_ns`` (or anywhere) by :func:`find_camera`. ``camera_info`` defaults to the
    one beside the image; with ``stereo`` the right camera is found under ``right_ns`` (default
    ``<camera namespace>/right``). The optional inputs are used when given.
    """
    if image:
        image_topic = _join(camera_ns, image)
        info_topic = camera_info or f"{_camera_ns(image_topic)}/camera_info"
    else:
        image_topic, info_topic = find_camera(available, camera_ns)
        info_topic = camera_info or info_topic
    topics = {"image": image_topic, "camera_info": info_topic}
    if stereo:
        ns = (right_ns or f"{_camera_ns(image_topic)}/right").rstrip("/")
        leaf = image_topic[len(_camera_ns(image_topic)):]  # the same name beside the right camera
        if available.get(ns + leaf) in INPUT_TYPES["right/image"]:
            topics["right/image"] = ns + leaf
        else:
            topics["right/image"] = find_camera(available, ns, "--right-ns")[0]
        topics["right/camera_info"] = f"{ns}/camera_info"
    for name, topic in (("masks", masks), ("detections", detections),
                        ("sparse_depth", sparse_depth), ("lidar_points", lidar_points),
                        ("odometry", odometry)):
        if topic:
            topics[name] = topic
    return topics


# -- offline processing ---------------------------------------------------------------------------


@dataclass
class BagSummary:
    """What a bag run did, frame by frame: what :meth:`table` prints."""

    frames_processed: int = 0  # the pipeline ran
    frames_valid: int = 0  # ... and produced valid depth somewhere
    frames_failed: int = 0  # the frame could not be processed (bad input, no CameraInfo, ...)
    frames_unsynchronised: int = 0
    messages_read: int = 0
    messages_skipped: int = 0  # undecodable or of an unexpected type
    written: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # first words of each error → count
    #: why a processed frame's depth is entirely invalid → count
    no_depth: dict[str, int] = field(default_factory=dict)
    depth_sources: dict[str, int] = field(default_factory=dict)  # result.depth_source → frames
    camera_models: dict[str, int] = field(default_factory=dict)  # result.geometry → frames
    no_pose: dict[str, int] = field(default_factory=dict)  # why a frame had no odometry pose
    #: metric scale per processed frame: (stamp_ns, source, scale) where a metric fit ran
    scales: list[tuple[int, str, float]] = field(default_factory=list)
    #: frames whose CameraInfo was stamped more than camera_info.max_age away
    camera_info_stale: int = 0
    camera_info_max_age_s: float = 0.0  # the largest image ↔ CameraInfo stamp distance paired
    pairing: str = "latest"
    depth_ms: list[float] = field(default_factory=list)

    @property
    def frames_without_depth(self) -> int:
        return self.frames_processed - self.frames_valid

    def failure_reason(self) -> str:
        """One line: why no frame has valid depth (the most frequent reasons)."""
        reasons = Counter({**self.errors})
        reasons.update(self.no_depth)
        seen = self.frames_processed + self.frames_failed + self.frames_unsynchronised
        if not seen:
            return "no frame in the bag (no image message could be read)"
        if not reasons:
            others = ("CameraInfo or another input" if self.pairing == "exact"
                      else "the other input topics")
            return (f"none of {self.frames_unsynchronised} image(s) found a message with its stamp "
                    f"on {others} (sync_slop; camera_info.pairing {self.pairing})")
        top = "; ".join(f"{text} ({n}x)" for text, n in reasons.most_common(2))
        return f"no frame produced valid depth ({seen} image(s)): {top}"

    def table(self) -> str:
        dropped = ("images without a CameraInfo of the same stamp" if self.pairing == "exact"
                   else "images without a synchronised partner")
        rows = [
            ("frames with valid depth", str(self.frames_valid)),
            ("frames with no valid depth", str(self.frames_without_depth)),
            ("frames failed", str(self.frames_failed)),
            (dropped, str(self.frames_unsynchronised)),
            ("messages read", str(self.messages_read)),
            ("messages skipped (broken/unknown)", str(self.messages_skipped)),
            (f"CameraInfo pairing ({self.pairing}): max stamp distance s",
             f"{self.camera_info_max_age_s:.2f}"),
            ("CameraInfo older than camera_info.max_age", str(self.camera_info_stale)),
        ]
        rows += [(f"depth source {source}", str(n))
                 for source, n in sorted(self.depth_sources.items())]
        rows += [(f"camera model {model}", str(n)) for model, n in self.camera_models.items()]
        rows += [(f"no odometry pose: {text}", str(n)) for text, n in self.no_pose.items()]
        if self.scales:
            last = self.scales[-1]
            rows.append(("metric scale (last frame, source)", f"{last[2]:.5g} ({last[1]})"))
        rows += [(f"no valid depth: {text}", str(n)) for text, n in self.no_depth.items()]
        if self.depth_ms:
            ms = sorted(self.depth_ms)
            rows.append(("pipeline ms p50 / max", f"{ms[len(ms) // 2]:.1f} / {ms[-1]:.1f}"))
        rows += [(f"wrote {topic}", str(n)) for topic, n in sorted(self.written.items())]
        rows += [(f"error: {text}", str(n)) for text, n in self.errors.items()]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


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
    log: Callable[[str], None] | None = None,
) -> BagSummary:
    """Run the node's pipeline over a rosbag2 or ROS 1 bag in log-time order and write every output
    topic with the input stamps to a new rosbag2 at ``out_path``.

    ``topics`` maps pipeline inputs to bag topics (default: :func:`find_topics` finds the camera).
    Broken or unexpected messages and failing frames are counted, never fatal. Raises
    :class:`BagError` for an unusable bag (unreadable, truncated, missing topics, no CameraInfo)
    and :class:`NoValidDepth` when no frame produced valid depth; then no output bag is left.
    ``log`` gets the model loader's lines (default: stderr).
    """
    from tqdm import tqdm

    from ..config import DEFAULTS, pipeline_config
    from ..driver import camera_info_stores, load_models, synchronizer

    params = {**DEFAULTS, **(parameters or {})}
    in_p = Path(in_path)
    if not in_p.exists():
        raise FileNotFoundError(f"{in_p}: no such bag")
    if Path(out_path).exists() and not overwrite:
        raise FileExistsError(f"{out_path}: output bag already exists (use --overwrite)")
    config = pipeline_config(params)  # invalid parameters fail before anything is read or loaded
    types = rosbags_types()
    if topics is None or "detections" in topics:  # vision_msgs is not in rosbags' own typestore
        from .vision_msgs import register_vision_types

        register_vision_types(types.typestore)
    with open_bag(in_p, types.typestore) as reader:
        available = {c.topic: c.msgtype for c in reader.connections}
        topics = topics or find_topics(available, bool(params["stereo"]))
        conns = _input_connections(reader, topics, in_p)
        camera_infos = camera_info_stores(list(topics), params, topics)
        _check_camera_info(reader, conns, topics, camera_infos, in_p)
        poses = _read_poses(reader, conns, topics, config, in_p)
        # the same models as the node: the monocular network (when `model` is set) and SAM / the
        # open-vocabulary detector (when segmentation.source asks for them)
        pipeline = load_models(params, log=log).pipeline(config)
        with BagWriter(out_path, storage=storage, types=types, overwrite=overwrite) as writer:
            # masks / detections recorded from slower nodes: an image waits for them (in log time)
            replay = _Replay(pipeline, synchronizer(list(topics), params), camera_infos, writer,
                             types, params, output_ns.rstrip("/"),
                             {topic: name for name, topic in topics.items()}, copy_inputs, poses)
            total = sum(c.msgcount for c in conns)
            messages = iter(reader.messages(connections=conns))
            with tqdm(total=total, unit="msg", disable=not progress or None) as bar:
                while True:
                    try:
                        conn, log_ns, raw = next(messages)
                    except StopIteration:
                        break
                    except Exception as exc:  # noqa: BLE001 - any storage error: the bag is damaged
                        raise BagError(
                            f"{in_p}: corrupt or truncated bag after {replay.summary.messages_read}"
                            f" messages ({_one_line(exc)})") from exc
                    replay.feed(reader, conn, log_ns, raw)
                    bar.update()
            summary = replay.finish()
            if summary.frames_valid == 0:
                summary.written = {}  # the output bag is discarded
                raise NoValidDepth(summary.failure_reason(), summary)
        return summary


def _input_connections(reader: Any, topics: dict[str, str], in_p: Path) -> list[Any]:
    """The bag's connections of the input topics; every input topic must be there."""
    present = {c.topic for c in reader.connections}
    missing = [t for t in topics.values() if t not in present]
    if missing:
        raise BagError(
            f"{in_p}: input topic(s) {', '.join(missing)} not in the bag "
            f"(it has: {', '.join(sorted(present)) or 'none'})")
    wanted = set(topics.values())
    return [c for c in reader.connections if c.topic in wanted]


def _check_camera_info(reader: Any, conns: list[Any], topics: dict[str, str],
                       camera_infos: dict[str, Any], in_p: Path) -> None:
    """Every CameraInfo input has messages; with camera_info.pairing latest, seed each store with
    the first CameraInfo of every size in the bag.

    Seeding (one extra read of the small CameraInfo messages) rather than holding images back:
    a recording often starts with images logged before the first CameraInfo, and calibration does
    not change within a bag, so those images are processed with it instead of being lost; an
    image of a size no CameraInfo ever describes fails naming the sizes there are.
    """
    for name in ("camera_info", "right/camera_info"):
        if name not in topics:
            continue
        info_conns = [c for c in conns if c.topic == topics[name]]
        if sum(c.msgcount for c in info_conns) == 0:
            raise BagError(f"{in_p}: no CameraInfo message on {topics[name]}: the images cannot "
                           "be calibrated")
        store = camera_infos.get(name)
        if store is None:
            continue
        first: set[tuple[int, int]] = set()
        try:
            for conn, _, raw in reader.messages(connections=info_conns):
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                    size = camera_info_size(msg)
                except Exception:  # noqa: BLE001 - counted when the replay meets it
                    continue
                if size not in first:
                    first.add(size)
                    store.add(size, stamp_to_ns(msg.header.stamp), msg)
        except Exception as exc:  # noqa: BLE001 - any storage error: the bag is damaged
            raise BagError(f"{in_p}: corrupt or truncated bag ({_one_line(exc)})") from exc
        if not first:
            raise BagError(f"{in_p}: no readable CameraInfo message on {topics[name]}")
        store.stats.received = 0  # the replay counts them


def _read_poses(reader: Any, conns: list[Any], topics: dict[str, str], config: Any,
                in_p: Path) -> Any:
    """Every odometry pose of the bag in a PoseBuffer (T_odom_base; the camera extrinsic is applied
    at each frame), or None without an odometry topic. Read before the replay, like CameraInfo: an
    image is interpolated between the poses around its stamp, and the pose after it is often logged
    after the image."""
    if "odometry" not in topics:
        return None
    from ..metric.motion import PoseBuffer
    from .messages import pose_to_matrix

    odom_conns = [c for c in conns if c.topic == topics["odometry"]]
    total = sum(c.msgcount for c in odom_conns)
    if total == 0:
        raise BagError(f"{in_p}: no message on the odometry topic {topics['odometry']}")
    motion = config.metric.motion
    poses = PoseBuffer(max(total, 2), motion.max_pose_gap)
    try:
        for conn, _, raw in reader.messages(connections=odom_conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
                poses.add(stamp_to_ns(msg.header.stamp), pose_to_matrix(msg.pose.pose))
            except Exception:  # noqa: BLE001 - a broken pose is skipped (counted in the replay)
                continue
    except Exception as exc:  # noqa: BLE001 - any storage error: the bag is damaged
        raise BagError(f"{in_p}: corrupt or truncated bag ({_one_line(exc)})") from exc
    if len(poses) == 0:
        raise BagError(f"{in_p}: no readable odometry pose on {topics['odometry']}")
    return poses


class _Replay:
    """Feeds recorded messages through the synchroniser and the pipeline, writing the outputs."""

    def __init__(self, pipeline: Any, sync: Any, camera_infos: dict[str, Any], writer: BagWriter,
                 types: Any, params: dict[str, Any], ns: str, name_of_topic: dict[str, str],
                 copy_inputs: bool, poses: Any = None):
        from .region_messages import rosbags_marker_types, rosbags_region_types

        self.pipeline, self.sync, self.writer, self.types = pipeline, sync, writer, types
        self.camera_infos = camera_infos
        self.poses = poses  # PoseBuffer of the whole bag's odometry, or None
        self.params, self.ns, self.name_of_topic = params, ns, name_of_topic
        self.copy_inputs = copy_inputs
        self.options = output_options(params, rosbags_region_types(types.typestore),
                                      rosbags_marker_types(types.typestore))
        self.summary = BagSummary(pairing=str(params["camera_info.pairing"]))
        self.last_ns = 0
        self._migrations: dict[str, object] = {}  # rosbags' cache of field mappings
        image_topic = next(t for t, name in name_of_topic.items() if name == "image")
        self.image_rectified = rectified_topic(image_topic)  # for image_geometry auto

    def feed(self, reader: Any, conn: Any, log_ns: int, raw: bytes) -> None:
        self.summary.messages_read += 1
        name = self.name_of_topic[conn.topic]
        if conn.msgtype not in INPUT_TYPES[name]:
            self.summary.messages_skipped += 1
            return
        try:
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            if name in self.camera_infos:
                self.camera_infos[name].add(camera_info_size(msg), stamp, msg)
        except Exception:  # noqa: BLE001 - a corrupt record is counted, not fatal
            self.summary.messages_skipped += 1
            return
        if self.copy_inputs:
            self.writer.write(conn.topic, _as_output_type(reader, msg, conn.msgtype,
                                                          self.types.typestore, self._migrations),
                              log_ns)
        if name not in self.camera_infos and name not in POSE_INPUTS:  # poses were read up front
            group = self.sync.add(name, stamp, msg, now_ns=log_ns)
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
        for store in self.camera_infos.values():
            summary.camera_info_stale += store.stats.stale
            summary.camera_info_max_age_s = max(summary.camera_info_max_age_s,
                                                store.stats.max_age_seen_s)
        return summary

    def _count(self, table: dict[str, int], text: str) -> None:
        key = text[:120]
        table[key] = table.get(key, 0) + 1

    def _process(self, group: dict[str, Any], log_ns: int) -> None:
        matches: dict[str, Any] = {}
        try:
            frame = group_to_frame(group, baseline_m=float(self.params["baseline"]),
                                   camera_infos=self.camera_infos, matches=matches,
                                   max_pixels=self.pipeline.config.max_pixels)
            frame.image_rectified = self.image_rectified
            if self.poses is not None:
                T, why = self.poses.lookup(frame.stamp_ns)
                frame.T_odom_camera = None if T is None else \
                    T @ self.pipeline.config.metric.motion.T_base_camera_matrix
                if T is None:
                    self._count(self.summary.no_pose, why)
            result = self.pipeline.process(frame)
            header = copy_header(self.types, group["image"].header)  # ROS 1 headers too
            outputs = result_to_messages(self.types, frame, result, header, self.options)
        except ValueError as exc:
            self.summary.frames_failed += 1
            self._count(self.summary.errors, str(exc))
            return
        s = self.summary
        if self.summary.pairing == "exact":  # the synchroniser paired them: measure the distance
            info = group.get("camera_info")
            if info is not None:
                age = abs(stamp_to_ns(info.header.stamp) - frame.stamp_ns) * 1e-9
                s.camera_info_max_age_s = max(s.camera_info_max_age_s, age)
        s.frames_processed += 1
        s.depth_sources[result.depth_source] = s.depth_sources.get(result.depth_source, 0) + 1
        s.camera_models[result.geometry] = s.camera_models.get(result.geometry, 0) + 1
        if result.metric is not None and result.metric.source != "none":
            s.scales.append((frame.stamp_ns, result.metric.source,
                             float(result.metric.estimate.scale)))
        if result.valid.any():
            s.frames_valid += 1
        else:
            self._count(s.no_depth, f"{result.depth_source}: {result.why_no_depth()}")
        s.depth_ms.append(result.timings_ms.get("total", 0.0))
        for topic, out_msg in outputs.items():
            self.writer.write(f"{self.ns}/{topic}", out_msg, log_ns)


def _as_output_type(reader: Any, msg: Any, msgtype: str, typestore: Any, cache: dict) -> Any:
    """An input message in the output's (ROS 2) definition of its type, fields matched as
    `rosbags-convert --dst-typestore` does (ROS 1 ``K`` → ``k``, no Header ``seq``): one bag must
    not hold two definitions of a type (readers key types by name)."""
    from rosbags.convert.converter import migrate_message

    return migrate_message(reader.typestore, typestore, msgtype, msgtype, cache, msg)
