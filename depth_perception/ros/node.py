"""`depth_perception_node`: the thin rclpy driver over :class:`depth_perception.pipeline.Pipeline`.

Subscribed topics (relative names, remap them):
    image, camera_info                      colour image (rgb8/bgr8/rgba8/bgra8/mono8/mono16) + its info
    image/compressed                        instead of ``image`` when ``image_transport: compressed``
    right/image, right/camera_info          right image of a rectified pair (``stereo: true``)
Published topics:
    depth              sensor_msgs/Image 32FC1 metres, NaN invalid (or 16UC1 mm, 0 invalid)
    depth/camera_info  sensor_msgs/CameraInfo of the depth image
    depth/colored      sensor_msgs/Image rgb8 (only while someone subscribes)
    points             sensor_msgs/PointCloud2 organised xyz[rgb] (only while someone subscribes)
    /diagnostics       diagnostic_msgs/DiagnosticArray (diagnostic_updater): status, drops, per-stage
                       latency, depth source, metric scale, input rates, depth rate and stamp delay

Every output keeps the colour image's header (stamp and frame_id). Processing runs on a worker
thread fed through a short queue of the newest frames (``frame_queue``); bad input is logged and
the next frame is processed.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any

import rclpy
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

try:  # Iron and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef]

from ..camera import rectified_topic
from ..config import PARAMETERS, parameter_problems, pipeline_config
from ..driver import (CAMERA_INFO_INPUTS, Models, camera_info_stores, input_names, load_models,
                      pose_buffer, synchronizer)
from ..regions import implementation_in_use
from ..sync import LatestQueue
from ..threads import limit_blas_threads
from . import messages as M
from .conversion import group_to_frame, iter_result_messages, output_options

#: published as soon as depth exists, before segmentation and regions
EARLY_TOPICS = ("depth", "depth/camera_info", "depth/colored")


#: how long an image waits for the first CameraInfo of its size (at start-up the image often
#: arrives just before its CameraInfo), seconds
CAMERA_INFO_WAIT_S = 1.0
#: how long a frame waits for the odometry pose after its stamp (odometry runs at 20-200 Hz)
POSE_WAIT_S = 0.1

#: longest diagnostic value / log detail: a flood of bad input must not make megabyte messages
MAX_TEXT = 2000


def _capped(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


class InvalidParameters(ValueError):
    """Start-up parameters the node cannot run with; ``problems`` has one line per parameter."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class DepthPerceptionNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth_perception", **kwargs)
        self._types = M.rclpy_types()
        p = self._declare_parameters()
        #: the parameter values accepted last (guarded: the worker reads them after a model load)
        self._values_lock = threading.Lock()
        self._values = p
        self._models = Models()
        self._pipeline = self._models.pipeline(pipeline_config(p))
        self._ready = threading.Event()
        self._slot: LatestQueue[tuple[dict[str, Any], float]] = LatestQueue(int(p["frame_queue"]))
        self.frames_processed = 0
        self.frames_failed = 0
        self.last_error = ""

        sources = list(p["segmentation.source"])
        from .vision_msgs import rclpy_vision_types

        self._vision_types = rclpy_vision_types()
        if "sam" in sources and self._vision_types is None:
            self.get_logger().error("segmentation.source sam needs vision_msgs "
                                    "(Detection2DArray prompts on `detections`), not installed")
        inputs = input_names(p, detections=self._vision_types is not None)
        # masks and detections come from slower nodes: an image waits for them a while, then it is
        # processed without them (depth and scene cloud never depend on another node)
        self._sync = synchronizer(inputs, p)
        # camera_info.pairing latest: CameraInfo is calibration, kept per image size, not paired
        # by stamp
        self._camera_infos = camera_info_stores(inputs, p, {n: self._topic_name(n) for n in inputs})
        # metric.mode motion / auto: odometry poses, interpolated at each image's stamp
        self._poses = pose_buffer(inputs, p)
        self._poses_lock = threading.Lock()
        self.bad_poses = 0
        wait_s = float(p["segmentation.wait"])
        if self._sync.optional and wait_s > 0:
            self._poll_timer = self.create_timer(min(wait_s / 4, 0.05), self._poll_sync)
        self._timings: deque[dict[str, float]] = deque(maxlen=50)
        self._latencies_ms: deque[float] = deque(maxlen=50)
        self._last_source = ""
        self.lost_below: dict[str, int] = {}  # input → messages DDS lost before the node saw them
        self._last_geometry = ""  # the camera model of the last frame (CameraModel.describe)
        self._no_pose = ""  # why the last frame had no odometry pose ("" = it had, or no odometry)
        self._no_depth = ""  # why the last frame had no valid depth ("" = it had)
        self._rectified_hint: bool | None = rectified_topic(self.resolve_topic_name("image"))
        self._last_region_count = 0
        self._last_metric = None
        self._last_segmentation = ""
        self._prompt: str | None = None
        self._setup_diagnostics(inputs)
        if self._camera_infos:
            self._updater.add("camera_info", self._camera_info_status)
        self._subscribe(inputs, p)
        self._advertise()

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="depth_perception_worker",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"depth_perception ready: inputs {', '.join(inputs)}; depth from "
            + (f"model {p['model']} ({p['metric.mode']})" if p["model"] else
               "stereo" if p["stereo"] else "nothing: set `model` or `stereo: true`")
        )

    # -- topics -----------------------------------------------------------------------------------

    def _subscribe(self, inputs: list[str], p: dict[str, Any]) -> None:
        """One subscription per input (``qos.reliability`` / ``qos.depth``; users override them per
        topic with ``qos_overrides.<topic>.*``), plus ``prompt`` for text segmentation."""
        sub_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=int(p["qos.depth"]),
            reliability=(ReliabilityPolicy.RELIABLE if p["qos.reliability"] == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=DurabilityPolicy.VOLATILE)
        overridable = QoSOverridingOptions.with_default_policies()
        t = self._types
        compressed = p["image_transport"] == "compressed"
        input_types = {"camera_info": t.CameraInfo, "right/camera_info": t.CameraInfo,
                       "lidar_points": t.PointCloud2}
        if "odometry" in inputs:
            from nav_msgs.msg import Odometry

            input_types["odometry"] = Odometry
        if self._vision_types is not None:
            input_types["detections"] = self._vision_types.Detection2DArray
        if "text" in p["segmentation.source"]:
            from std_msgs.msg import String

            self.create_subscription(String, "prompt", self._on_prompt, 10)
        # CameraInfo first: an executor runs the callbacks that are ready together in the order
        # the subscriptions were made, so a frame's CameraInfo is stored before its image goes
        # to the worker
        for name in sorted(inputs, key=lambda n: n not in CAMERA_INFO_INPUTS):
            cls, topic = input_types.get(name, t.Image), name
            if compressed and name in ("image", "right/image"):
                cls, topic = t.CompressedImage, f"{name}/compressed"
            # samples DDS itself lost before they reached this node (a best-effort image whose
            # fragment was dropped, a full history): counted, as the node never sees them
            events = SubscriptionEventCallbacks(message_lost=self._make_lost_callback(name))
            # odometry comes at 20-200 Hz and in bursts: a short history would drop poses
            qos = replace_qos_depth(sub_qos, 100) if name == "odometry" else sub_qos
            self.create_subscription(cls, topic, self._make_callback(name), qos,
                                     qos_overriding_options=overridable, event_callbacks=events)

    def _make_lost_callback(self, name: str) -> Any:
        self.lost_below[name] = 0

        def on_lost(info: Any) -> None:
            self.lost_below[name] = int(info.total_count)

        return on_lost

    def _advertise(self) -> None:
        """The output publishers; ``regions`` only where depth_perception_msgs is installed."""
        t = self._types
        overridable = QoSOverridingOptions.with_default_policies()
        out_qos = QoSProfile(depth=5)

        def publisher(cls: Any, topic: str) -> Any:
            return self.create_publisher(cls, topic, out_qos, qos_overriding_options=overridable)

        self._pub_depth = publisher(t.Image, "depth")
        self._pub_info = publisher(t.CameraInfo, "depth/camera_info")
        self._pub_colored = publisher(t.Image, "depth/colored")
        self._pub_points = publisher(t.PointCloud2, "points")
        self._publishers_by_topic = {"depth": self._pub_depth, "depth/camera_info": self._pub_info,
                                     "depth/colored": self._pub_colored, "points": self._pub_points}
        from .region_messages import rclpy_marker_types, rclpy_region_types

        self._region_types = rclpy_region_types()
        self._marker_types = rclpy_marker_types()
        if self._region_types is None:
            self.get_logger().warning(
                "depth_perception_msgs is not available: not publishing `regions` "
                "(GraspableRegionArray); regions/points, regions/labels and regions/markers "
                "use standard messages and are published")
        else:
            self._publishers_by_topic["regions"] = publisher(
                self._region_types.GraspableRegionArray, "regions")
        self._publishers_by_topic["regions/points"] = publisher(t.PointCloud2, "regions/points")
        self._publishers_by_topic["regions/labels"] = publisher(t.Image, "regions/labels")
        self._publishers_by_topic["regions/markers"] = publisher(self._marker_types.MarkerArray,
                                                                 "regions/markers")
        self._publishers_by_topic["masks/overlay"] = publisher(t.Image, "masks/overlay")

    # -- parameters -------------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every parameter (ranges, choices, read-only in its descriptor); raise
        InvalidParameters naming each bad override."""
        values: dict[str, Any] = {}
        refused: list[str] = []  # overrides rclpy itself refused (range, type)
        for spec in PARAMETERS:
            ranges: dict[str, Any] = {}
            if spec.min_value is not None and isinstance(spec.default, float):
                ranges["floating_point_range"] = [FloatingPointRange(
                    from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)]
            elif spec.min_value is not None:
                ranges["integer_range"] = [IntegerRange(
                    from_value=int(spec.min_value), to_value=int(spec.max_value),
                    step=int(spec.step))]
            if spec.choices is not None:
                ranges["additional_constraints"] = "one of: " + ", ".join(spec.choices)
            desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                                       **ranges)
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, desc).value
            except InvalidParameterValueException:  # rclpy checked the override against the range
                refused.append(f"{spec.name} must be in [{spec.min_value}, {spec.max_value}]")
            except InvalidParameterTypeException as exc:  # an override of another type
                refused.append(str(exc).rsplit(": ", 1)[0].replace("Trying to set parameter ", ""))
            if spec.name not in values:  # go on, so that every bad parameter is reported at once
                values[spec.name] = self.declare_parameter(spec.name, spec.default, desc,
                                                           ignore_override=True).value
        values = {name: _empty_list_if_untyped(name, value) for name, value in values.items()}
        problems = refused + parameter_problems(values)
        if problems:
            raise InvalidParameters(problems)
        return values

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        with self._values_lock:
            values = dict(self._values)
            # qos_overrides.* and use_sim_time are rclpy's own parameters, not ours to validate.
            values.update({p.name: _empty_list_if_untyped(p.name, p.value)
                           for p in params if p.name in values})
            try:  # the same rules as at start-up
                config = pipeline_config(values)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            # Swap in a new pipeline; the worker picks it up on its next frame (the metric scale
            # filter restarts with the new settings). A pipeline that cannot be built leaves the
            # running one in place.
            try:
                pipeline = self._models.pipeline(config)
            except Exception as exc:  # noqa: BLE001 - refuse the change, keep the node running
                return SetParametersResult(successful=False, reason=f"not applied: {exc}")
            self._pipeline = pipeline
            self._values = values
        return SetParametersResult(successful=True)

    # -- input ------------------------------------------------------------------------------------

    def _on_prompt(self, msg: Any) -> None:
        self._prompt = str(msg.data).strip() or None
        self.get_logger().info(f"text prompt: {self._prompt!r}")

    def _topic_name(self, name: str) -> str:
        """The full name of relative topic ``name`` after remapping (for messages)."""
        try:
            return self.resolve_topic_name(name)
        except Exception:  # noqa: BLE001 - an older rclpy without it: the relative name will do
            return name

    def _make_callback(self, name: str):
        rate = self._input_rates[name]
        if name == "odometry":
            return self._make_pose_callback(rate)
        camera_infos = self._camera_infos.get(name)
        if camera_infos is not None:
            def store(msg: Any) -> None:
                rate.tick()
                camera_infos.add(M.camera_info_size(msg), M.stamp_to_ns(msg.header.stamp), msg)

            return store

        def callback(msg: Any) -> None:
            rate.tick()
            group = self._sync.add(name, M.stamp_to_ns(msg.header.stamp), msg, time.monotonic_ns())
            if group is not None:
                self._slot.put((group, time.monotonic()))

        return callback

    def _make_pose_callback(self, rate: Any):
        def store(msg: Any) -> None:
            rate.tick()
            try:
                T = M.pose_to_matrix(msg.pose.pose)
                with self._poses_lock:
                    self._poses.add(M.stamp_to_ns(msg.header.stamp), T)
            except ValueError as exc:  # a broken pose costs that pose only
                self.bad_poses += 1
                self.get_logger().warning(f"odometry pose skipped: {exc}",
                                          throttle_duration_sec=10.0)

        return store

    def _pose_at(self, stamp_ns: int) -> tuple[Any, str]:
        """(T_odom_camera at the image stamp, "") or (None, why). An image usually arrives before
        the odometry pose after its stamp: wait up to POSE_WAIT_S for it."""
        deadline = time.monotonic() + POSE_WAIT_S
        while True:
            with self._poses_lock:
                T, why = self._poses.lookup(stamp_ns)
            if T is not None or "after the newest" not in why or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if T is None:
            return None, why
        return T @ self._pipeline.config.metric.motion.T_base_camera_matrix, ""

    def _poll_sync(self) -> None:
        """Release an image whose wait for masks / detections ran out."""
        group = self._sync.poll(time.monotonic_ns())
        if group is not None:
            self._slot.put((group, time.monotonic()))

    @property
    def frames_dropped(self) -> int:
        return self._slot.dropped + self._sync.stats.dropped

    # -- processing -------------------------------------------------------------------------------

    def _load_model(self) -> None:
        """Build the models off the executor: an export or a TensorRT engine build can take
        minutes on first run, and the node must stay responsive meanwhile."""
        with self._values_lock:
            values = dict(self._values)
        try:
            models = load_models(values, log=self.get_logger().info,
                                 on_segmenter_error=self._segmenters_failed)
        except Exception as exc:  # noqa: BLE001 - report and keep the node alive
            self.last_error = f"depth model {values['model']} failed to load: {exc}"
            self.get_logger().error(self.last_error)
            return
        # the models only depend on read-only parameters; the pipeline takes the values accepted
        # last, including any set while the models loaded
        with self._values_lock:
            self._models = models
            self._pipeline = models.pipeline(pipeline_config(self._values))
        self._ready.set()

    def _segmenters_failed(self, exc: Exception) -> None:
        """Depth and clouds still work without the mask sources."""
        self.last_error = f"segmentation models failed to load: {exc}"
        self.get_logger().error(self.last_error)

    def _work(self) -> None:
        self._load_model()
        while not self._stop.is_set():
            item = self._slot.take(timeout=0.1)
            if item is None:
                continue
            group, received = item
            try:
                self._process(group)
                self.frames_processed += 1
                self._latencies_ms.append((time.monotonic() - received) * 1e3)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
                self.frames_failed += 1
                self.last_error = _capped(str(exc))
                header = group["image"].header
                self.get_logger().error(
                    f"frame {header.stamp.sec}.{header.stamp.nanosec:09d} "
                    f"({_capped(header.frame_id, 200)}) skipped: {self.last_error}"
                )

    def _wanted_topics(self) -> tuple[str, ...]:
        """Always depth and its info; the costly outputs only while someone subscribes."""
        always = ("depth", "depth/camera_info", "regions", "regions/labels")
        return tuple(topic for topic, pub in self._publishers_by_topic.items()
                     if topic in always or pub.get_subscription_count() > 0)

    def _process(self, group: dict[str, Any]) -> None:
        t_in = time.perf_counter()
        baseline = float(self.get_parameter("baseline").value)
        matches: dict[str, Any] = {}
        frame = group_to_frame(group, baseline_m=baseline, camera_infos=self._camera_infos,
                               matches=matches, camera_info_wait_s=CAMERA_INFO_WAIT_S,
                               max_pixels=self._pipeline.config.max_pixels)
        for match in matches.values():
            if match.warning:
                self.get_logger().warning(match.warning, throttle_duration_sec=10.0)
        frame.prompt = self._prompt
        frame.image_rectified = self._rectified_hint
        if self._poses is not None:
            frame.T_odom_camera, self._no_pose = self._pose_at(frame.stamp_ns)
        convert_ms = (time.perf_counter() - t_in) * 1e3
        pipeline = self._pipeline  # one consistent config for the whole frame
        values = {p.name: p.value for p in self.get_parameters(
            ["depth_encoding", "cloud.stride", "cloud.max_range"])}
        options = output_options(values, self._region_types, self._marker_types,
                                 topics=self._wanted_topics())
        header = group["image"].header
        # depth goes out before segmentation (SAM can take far longer than the depth network);
        # the cloud waits for the instance labels it carries
        early = tuple(t for t in options.topics if t in EARLY_TOPICS)
        publish_ms: list[float] = []

        def publish(result: Any, topics: tuple[str, ...]) -> None:
            t0 = time.perf_counter()
            for topic, msg in iter_result_messages(self._types, frame, result, header,
                                                   replace(options, topics=topics)):
                self._publishers_by_topic[topic].publish(msg)
                if topic == "depth":
                    self._depth_topic.tick(M.stamp_to_ns(header.stamp) * 1e-9)
            publish_ms.append((time.perf_counter() - t0) * 1e3)

        result = pipeline.process(frame, on_depth=lambda partial: publish(partial, early))
        publish(result, tuple(t for t in options.topics if t not in early))
        result.timings_ms["convert_in"] = convert_ms
        result.timings_ms["publish"] = sum(publish_ms)
        self._timings.append(result.timings_ms)
        self._last_source = result.depth_source
        self._last_geometry = result.geometry
        self._no_depth = result.why_no_depth()
        if self._no_depth:
            self.get_logger().warning(f"no valid depth: {self._no_depth}", throttle_duration_sec=5.0)
        self._last_region_count = len(result.regions)
        self._last_metric = result.metric
        self._last_segmentation = " ".join(
            x for x in (result.segmentation_source, result.segmentation_message) if x)

    def _setup_diagnostics(self, inputs: list[str]) -> None:
        """`/diagnostics` through diagnostic_updater (period: the ``diagnostic_updater.period``
        parameter): the node's own status, the metric scale, the rate of every input and the rate
        and stamp delay of ``depth``."""
        from diagnostic_updater import (
            FrequencyStatus,
            FrequencyStatusParam,
            TimeStampStatusParam,
            TopicDiagnostic,
            Updater,
        )

        self._updater = Updater(self)
        self._updater.setHardwareID(self.get_fully_qualified_name())
        self._updater.add("depth", self._depth_status)
        self._updater.add("metric scale", self._metric_status)
        # No rate is required (min 0): a silent input shows as ERROR "No events recorded."
        any_rate = {"min": 0.0}
        self._input_rates = {name: FrequencyStatus(FrequencyStatusParam(any_rate),
                                                   name=f"{name} input rate") for name in inputs}
        for task in self._input_rates.values():
            self._updater.add(task)
        # Stamp delay of the published depth: ERROR past 5 s (a live camera is never that late;
        # a bag replayed without use_sim_time is, and that is worth seeing).
        self._depth_topic = TopicDiagnostic(
            "depth", self._updater, FrequencyStatusParam(any_rate),
            TimeStampStatusParam(min_acceptable=-1.0, max_acceptable=5.0))

    def _depth_status(self, stat: Any) -> Any:
        from diagnostic_msgs.msg import DiagnosticStatus

        stats = self._sync.stats
        values: dict[str, str] = {
            "frames processed": str(self.frames_processed),
            "frames failed": str(self.frames_failed),
            "frames dropped (worker busy)": str(self._slot.dropped),
            "frames waiting": f"{len(self._slot)} of {self._slot.capacity}",
            "frames dropped (unsynchronised)": str(stats.dropped),
            **{f"{name} lost below the node (DDS)": str(n) for name, n in self.lost_below.items()},
            **{f"{name} dropped (no matching image)": str(n) for name, n in stats.discarded.items()},
            **{f"frames without {name} (wait ran out)": str(n)
               for name, n in stats.released_without.items()},
            "depth source": self._last_source or "none yet",
            "camera model": self._last_geometry or "none yet",
            **({"odometry pose": self._no_pose or "ok", "odometry poses skipped (broken)":
                str(self.bad_poses)} if self._poses is not None else {}),
            "regions (last frame)": str(self._last_region_count),
            "regions implementation": implementation_in_use(self._pipeline.config.region_params),
            "segmentation": self._last_segmentation,
            "last error": self.last_error,
        }
        timings = list(self._timings)
        for stage in (timings[-1] if timings else {}):
            ms = [t[stage] for t in timings if stage in t]
            values[f"{stage} latency mean (ms)"] = f"{sum(ms) / len(ms):.2f}"
        if self._latencies_ms:
            values["end-to-end latency max (ms)"] = f"{max(self._latencies_ms):.1f}"
        estimator = self._models.estimator
        if estimator is not None:
            values["model"] = estimator.spec.name
            values["backend"] = estimator.backend_name
        if self.last_error and self.frames_failed and not timings:
            stat.summary(DiagnosticStatus.ERROR, self.last_error)
        elif self._no_depth:
            stat.summary(DiagnosticStatus.ERROR, f"no valid depth in the last frame: {self._no_depth}")
        elif self.frames_processed == 0:
            stat.summary(DiagnosticStatus.WARN, "no frame processed yet")
        else:
            stat.summary(DiagnosticStatus.OK, "ok")
        for key, value in values.items():
            stat.add(key, _capped(value))
        return stat

    def _camera_info_status(self, stat: Any) -> Any:
        """CameraInfo pairing (camera_info.pairing latest): sizes held, age of the last pairing,
        pairings older than camera_info.max_age, images that found none."""
        from diagnostic_msgs.msg import DiagnosticStatus

        stale = missing = paired = 0
        for name, store in self._camera_infos.items():
            s = store.stats
            stale, missing, paired = stale + s.stale, missing + s.missing, paired + s.paired
            stat.add(f"{name} sizes", ", ".join(f"{w}x{h}" for w, h in store.sizes()) or "none")
            stat.add(f"{name} age of last pairing (s)", f"{s.last_age_s:.3f}")
            stat.add(f"{name} max age seen (s)", f"{s.max_age_seen_s:.3f}")
            stat.add(f"{name} pairings older than camera_info.max_age", str(s.stale))
            stat.add(f"{name} images without a CameraInfo of their size", str(s.missing))
        if missing and not paired:
            stat.summary(DiagnosticStatus.ERROR, "no image has found a CameraInfo of its size")
        elif stale:
            stat.summary(DiagnosticStatus.WARN, "CameraInfo stamped far from the images "
                                                "(camera_info.max_age)")
        elif missing:  # e.g. images before the first CameraInfo at start-up
            stat.summary(DiagnosticStatus.WARN, "some images came before a CameraInfo of their size")
        else:
            stat.summary(DiagnosticStatus.OK, "ok")
        return stat

    def _metric_status(self, stat: Any) -> Any:
        from diagnostic_msgs.msg import DiagnosticStatus

        metric = self._last_metric
        if metric is None:
            stat.summary(DiagnosticStatus.OK, f"no scale fit (depth source: "
                                              f"{self._last_source or 'none yet'})")
            return stat
        stat.summary(bytes([int(metric.level)]), metric.message or "ok")
        for key, value in metric.diagnostics().items():
            stat.add(key, str(value))
        return stat

    def destroy_node(self) -> None:
        self._stop.set()
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        super().destroy_node()


_LIST_PARAMETERS = {spec.name for spec in PARAMETERS if isinstance(spec.default, (list, tuple))}


def replace_qos_depth(qos: QoSProfile, depth: int) -> QoSProfile:
    """``qos`` with a history depth of at least ``depth``."""
    return QoSProfile(history=qos.history, depth=max(int(qos.depth), depth),
                      reliability=qos.reliability, durability=qos.durability)


def _empty_list_if_untyped(name: str, value: Any) -> Any:
    """An empty list given for a list parameter (`-p segmentation.source:=[]`, `[]` in YAML,
    `ros2 param set ... "[]"`) reaches rclpy untyped, as a parameter that is not set: it means []."""
    return [] if value is None and name in _LIST_PARAMETERS else value


def main(args: list[str] | None = None) -> None:
    try:
        _run(args)
    except KeyboardInterrupt:  # a further Ctrl-C while shutting down: nothing is left to stop
        pass
    except InvalidParameters as exc:  # one line per bad parameter, no traceback, exit status 2
        logger = rclpy.logging.get_logger("depth_perception")
        for problem in exc.problems:
            logger.fatal(f"invalid parameter: {problem}")
        sys.exit(2)


def _run(args: list[str] | None) -> None:
    limit_blas_threads()
    rclpy.init(args=args)
    node = None
    try:
        node = DepthPerceptionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C on `ros2 launch` signals the node twice (the terminal's SIGINT to the process
        # group, then launch's own): the second must not interrupt the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
