"""What every driver of the pipeline sets up from the node's parameter values, transport-free.

The ROS node (live topics) and the bag processor (recorded ones) both need the inputs the
parameters ask for, a :class:`StampSynchronizer` grouping them, and the heavy models (the
monocular depth network, SAM and the open-vocabulary detector) a :class:`Pipeline` runs with::

    inputs = input_names(values)              # ["image", "camera_info", ...]
    sync = synchronizer(inputs, values)       # stamp-paired inputs (not the calibration)
    infos = camera_info_stores(inputs, values)  # {"camera_info": CameraInfoStore, ...}
    models = load_models(values)              # minutes on a first run (export, engine builds)
    pipeline = models.pipeline(pipeline_config(values))   # again after every parameter change
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .config import DEFAULTS, estimator_from_parameters, segmenters_from_parameters
from .depth.estimator import DepthEstimator
from .metric.motion import PoseBuffer
from .pipeline import Pipeline, PipelineConfig
from .segmentation.base import Segmenters
from .sync import CameraInfoStore, StampSynchronizer

#: inputs from slower nodes: an image waits for them a while, then goes on without them
OPTIONAL_INPUTS = ("masks", "detections")
#: metric signals metric.mode ``auto`` uses when they are there; an image never waits for them
SIGNAL_INPUTS = ("sparse_depth", "lidar_points")
#: inputs interpolated at the image stamp rather than paired by stamp (the robot's own motion)
POSE_INPUTS = ("odometry",)
#: calibration inputs and the image each one describes
CAMERA_INFO_INPUTS = {"camera_info": "image", "right/camera_info": "right/image"}


def input_names(values: dict[str, Any], detections: bool = True) -> list[str]:
    """The pipeline inputs the parameters ask for: ``image`` and ``camera_info``; the right pair
    with ``stereo``; ``masks`` for segmentation.source ``topic``; ``detections`` for ``sam`` (only
    where ``detections``: the driver can receive them); the metric signal of a monocular ``model``
    with metric.mode ``sparse_depth`` (``sparse_depth``) or ``pointcloud`` (``lidar_points``), both
    with ``auto`` (optional there: :data:`SIGNAL_INPUTS`); ``odometry`` with metric.mode ``motion``
    or ``auto`` (:data:`POSE_INPUTS`: interpolated, see :func:`pose_buffer`)."""
    v = {**DEFAULTS, **values}
    inputs = ["image", "camera_info"]
    if v["stereo"]:
        inputs += ["right/image", "right/camera_info"]
    sources = list(v["segmentation.source"])
    if "topic" in sources:
        inputs.append("masks")
    if "sam" in sources and detections:
        inputs.append("detections")
    if v["model"] and v["metric.mode"] in ("sparse_depth", "auto"):
        inputs.append("sparse_depth")
    if v["model"] and v["metric.mode"] in ("pointcloud", "auto"):
        inputs.append("lidar_points")
    if v["model"] and v["metric.mode"] in ("motion", "auto"):
        inputs.append("odometry")
    return inputs


def camera_info_stores(inputs: Sequence[str], values: dict[str, Any],
                       topics: dict[str, str] | None = None) -> dict[str, CameraInfoStore]:
    """With camera_info.pairing ``latest``: a :class:`CameraInfoStore` per CameraInfo input among
    ``inputs`` (its messages go there, not to the synchroniser); ``topics`` names their topics
    in error messages. With ``exact``: none (CameraInfo is paired by stamp like any input)."""
    v = {**DEFAULTS, **values}
    if v["camera_info.pairing"] != "latest":
        return {}
    names = topics or {}
    return {name: CameraInfoStore(names.get(name, name), float(v["camera_info.max_age"]))
            for name in inputs if name in CAMERA_INFO_INPUTS}


def pose_buffer(inputs: Sequence[str], values: dict[str, Any]) -> PoseBuffer | None:
    """A buffer of odometry poses (T_odom_base) sized by metric.motion.pose_buffer, when ``inputs``
    has ``odometry``; the driver adds every pose and sets ``Frame.T_odom_camera`` from
    ``lookup(image stamp)`` composed with metric.motion.T_base_camera."""
    if "odometry" not in inputs:
        return None
    v = {**DEFAULTS, **values}
    return PoseBuffer(int(v["metric.motion.pose_buffer"]), float(v["metric.motion.max_pose_gap"]))


def synchronizer(inputs: Sequence[str], values: dict[str, Any]) -> StampSynchronizer:
    """Groups ``inputs`` around ``image`` within ``sync_slop`` seconds, ``queue_size`` messages per
    input; masks and detections (from slower nodes) are waited for up to ``segmentation.wait``
    seconds (on the caller's clock), then the image goes on without them. With metric.mode
    ``auto`` the metric signals join a set when they are there and are never waited for.
    CameraInfo inputs take part only with camera_info.pairing ``exact`` (see
    :func:`camera_info_stores`)."""
    v = {**DEFAULTS, **values}
    inputs = [name for name in inputs if name not in POSE_INPUTS]
    if v["camera_info.pairing"] == "latest":
        inputs = [name for name in inputs if name not in CAMERA_INFO_INPUTS]
    no_wait = tuple(n for n in SIGNAL_INPUTS if n in inputs) if v["metric.mode"] == "auto" else ()
    optional = tuple(n for n in OPTIONAL_INPUTS if n in inputs) + no_wait
    return StampSynchronizer(
        list(inputs), primary="image", slop_ns=int(v["sync_slop"] * 1e9),
        queue_size=int(v["queue_size"]), optional=optional,
        optional_wait_ns=int(float(v["segmentation.wait"]) * 1e9), no_wait=no_wait)


@dataclass
class Models:
    """The heavy models a driver builds once and keeps across pipelines (parameter changes)."""

    estimator: DepthEstimator | None = None
    segmenters: Segmenters = field(default_factory=Segmenters)

    def pipeline(self, config: PipelineConfig) -> Pipeline:
        """A pipeline with ``config`` (:func:`depth_perception.config.pipeline_config`) running
        these models."""
        return Pipeline(config, estimator=self.estimator, segmenters=self.segmenters)


def load_models(values: dict[str, Any], log: Callable[[str], None] | None = None,
                on_segmenter_error: Callable[[Exception], None] | None = None) -> Models:
    """The monocular model (when ``model`` is set) and the mask sources segmentation.source asks
    for (SAM, the open-vocabulary detector). May take minutes on a first run (ONNX export, TensorRT
    engine builds); ``log`` gets a line before and after the depth model and before each long step.

    A model that fails to load raises, unless ``on_segmenter_error`` is given: then a failing mask
    source is passed to it and the models load without mask sources (depth and clouds still work).
    """
    v = {**DEFAULTS, **values}
    say = log or (lambda _msg: None)
    if v["model"]:
        say(f"loading depth model {v['model']} (backend {v['backend']}, {v['precision']}); a "
            "first run may export ONNX / build a TensorRT engine")
    estimator = estimator_from_parameters(values, log=log)
    if estimator is not None:
        warm = f"; warm-up inference {warm_up(estimator):.0f} ms" if v["warm_up"] else ""
        say(f"depth model {v['model']} ready on {estimator.backend_name}{warm}")
    try:
        segmenters = segmenters_from_parameters(values, log=log)
    except Exception as exc:  # noqa: BLE001 - the caller decides whether a driver goes on without
        if on_segmenter_error is None:
            raise
        on_segmenter_error(exc)
        segmenters = Segmenters()
    return Models(estimator, segmenters)


def warm_up(estimator: DepthEstimator, width: int = 640, height: int = 480) -> float:
    """One inference on a grey ``width`` x ``height`` image (with a focal length and a 1 m prompt
    for the models that take them): torch picks its kernels, ONNX Runtime grows its memory arena,
    TensorRT creates its execution context now rather than on the first camera frame. Returns the
    milliseconds it took."""
    import time

    import numpy as np

    t0 = time.perf_counter()
    prompt = (np.ones((height, width), np.float32)
              if "prompt_depth" in estimator.spec.extra_inputs else None)
    estimator.predict(np.full((height, width, 3), 128, np.uint8), fx_px=0.8 * width,
                      prompt_depth_m=prompt)
    return (time.perf_counter() - t0) * 1e3


__all__ = ["CAMERA_INFO_INPUTS", "OPTIONAL_INPUTS", "POSE_INPUTS", "SIGNAL_INPUTS", "Models",
           "camera_info_stores", "input_names", "load_models", "pose_buffer", "synchronizer",
           "warm_up"]
