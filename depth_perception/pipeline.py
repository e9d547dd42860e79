"""One frame in, one result out. Owns no transport: the ROS node, the bag processor and the CLI are
thin drivers over :class:`Pipeline`.

Stages: input checks → content check (black, saturated, flat or noise frames are refused:
:mod:`.image_check`) → depth (a monocular network made metric by :class:`MetricAligner`, or
stereo SGBM) → validity (range, flying pixels, REP 117 NaN) → organised scene cloud.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .camera import GEOMETRIES, CameraModel, image_geometry
from .image_check import ImageCheckParams, check_image_content
from .metric import (
    DepthImageSignal,
    MetricAligner,
    MetricConfig,
    MetricResult,
    MotionSignal,
    MotionTracker,
    PlaneSignal,
    PointCloudSignal,
    StereoSignal,
    sparse_from_depth_image,
    sparse_from_pointcloud,
)
from .metric import apply_validity
from .params import check_fields, param
from .regions import GripperParams, Region, RegionParams, describe_regions, label_image
from .segmentation.base import Detection, Segmentation, SegmentationError, Segmenters
from .segmentation.geometric import GeometricParams
from .stereo import StereoParams, stereo_depth

if TYPE_CHECKING:
    from .depth.estimator import DepthPredictor

#: Mask sources a pipeline can combine (in priority order where masks overlap).
SEGMENTATION_SOURCES = ("topic", "sam", "text", "geometric")


class PipelineError(ValueError):
    """Input the pipeline cannot process; the message names the problem."""


@dataclass(frozen=True)
class PipelineConfig:
    """Per-frame processing settings (ROS parameters map 1:1 onto these)."""

    image_geometry: str = param(
        "auto", "how the colour image relates to its CameraInfo: rectified (image_rect: rays from "
        "P, no distortion, as image_geometry), raw (image_raw: rays from K and D), auto (by the image "
        "topic's name, image_rect* = rectified, image_raw = raw; otherwise raw with rectify: true, "
        "else stereo = rectified, monocular = raw)", choices=GEOMETRIES)
    rectify: bool = param(False, "rectify raw images (K, D, R -> P) before depth; every output and "
                          "depth/camera_info then describe the rectified image (D = 0, K = P). "
                          "false: raw images give depth in the raw geometry with the raw CameraInfo")
    max_pixels: int = param(40_000_000, "largest colour image accepted, pixels (width x height); "
                            "compressed images are refused from their header, before decoding",
                            name="max_image_pixels", minimum=1, maximum=1_000_000_000, step=1)
    min_depth_m: float = param(0.1, "nearest valid depth, metres", name="min_depth", minimum=0.0,
                               maximum=1000.0)
    max_depth_m: float = param(20.0, "farthest valid depth, metres", name="max_depth",
                               minimum=0.0, maximum=1000.0)
    #: stereo images are matched as given: they must already be rectified (`image_rect`).
    stereo: StereoParams | None = None
    flying_threshold: float = param(0.1, "relative depth jump over 3x3 that marks a flying pixel "
                                    "(0 disables)", minimum=0.0, maximum=10.0)
    #: how a monocular prediction is made metric (mode, fit gates, temporal filter).
    metric: MetricConfig = MetricConfig()
    cloud: bool = True
    segmentation: tuple[str, ...] = param(
        ("geometric",), "mask sources, combined in order (earlier wins where masks overlap): "
        "topic (instance-id image on `masks`), sam (prompted by `detections`), text (`prompt` → "
        "OWLv2 → SAM), geometric (table plane + clustering, no weights); [] = none",
        name="segmentation.source", choices=SEGMENTATION_SOURCES, read_only=True)
    geometric: GeometricParams = GeometricParams()
    fuse_masks: bool = param(True, "drop masks that the cleaning against depth (erosion, depth "
                             "edges, outliers, dominant cluster) leaves with too few pixels, naming "
                             "them in the segmentation message; false keeps them as regions with "
                             "too few points", name="segmentation.fuse")
    allow_mask_resize: bool = param(False, "resample masks of another size (nearest) instead of "
                                    "dropping them", name="segmentation.allow_resize")
    #: graspable regions from the (fused) instance masks.
    regions: bool = True
    gripper: GripperParams = GripperParams()
    region_params: RegionParams = RegionParams()
    #: black, saturated, flat and pure-noise colour images are refused before depth.
    image_check: ImageCheckParams = ImageCheckParams()

    def __post_init__(self) -> None:
        check_fields(self, error=PipelineError)
        if not (0.0 <= self.min_depth_m < self.max_depth_m):
            raise PipelineError(
                f"need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m} and {self.max_depth_m}"
            )


@dataclass
class Frame:
    """One synchronised set of inputs. ``rgb`` is HxWx3 uint8 RGB; ``camera`` describes it."""

    rgb: np.ndarray
    camera: CameraModel
    right_rgb: np.ndarray | None = None
    #: stereo baseline in metres; defaults to the one in ``right_camera.P``.
    baseline_m: float | None = None
    right_camera: CameraModel | None = None
    stamp_ns: int = 0
    frame_id: str = ""
    #: registered depth image for metric alignment: HxW float metres or uint16 millimetres.
    sparse_depth: np.ndarray | None = None
    #: Nx3 LiDAR points and the 4x4 transform into this camera's optical frame.
    cloud_points: np.ndarray | None = None
    T_camera_from_cloud: np.ndarray | None = None
    #: camera height above the support plane, metres (e.g. from TF), for ``plane`` mode.
    camera_height_m: float | None = None
    #: 4x4 pose of this image's optical frame in the odometry frame at ``stamp_ns`` (the driver
    #: interpolates it: :class:`~depth_perception.metric.PoseBuffer`), for ``motion`` mode.
    T_odom_camera: np.ndarray | None = None
    #: HxW instance ids from another node (0 = background), with optional names/scores per id.
    masks: np.ndarray | None = None
    mask_names: dict[int, str] | None = None
    mask_scores: dict[int, float] | None = None
    #: boxes/points naming the mask ids, or prompting SAM (e.g. from a detector or a VLM).
    detections: list[Detection] | None = None
    #: open-vocabulary text prompt for the ``text`` source, e.g. "mug, screwdriver".
    prompt: str | None = None
    #: (4,) support plane n·p + d = 0 in the camera frame, when known (e.g. from TF).
    support_plane: np.ndarray | None = None
    #: problems with optional inputs found while building the frame (e.g. a malformed detection
    #: that was skipped), reported with the segmentation message.
    input_notes: list[str] = field(default_factory=list)
    #: whether the image is rectified, as its topic name says (:func:`camera.rectified_topic`;
    #: None: the name does not say); read when ``image_geometry`` is ``auto``.
    image_rectified: bool | None = None


@dataclass
class FrameResult:
    """What one frame produced. Arrays are aligned with the input image (HxW)."""

    depth_m: np.ndarray  # HxW float32 metres, NaN where invalid (REP 117/118)
    valid: np.ndarray  # HxW bool
    points: np.ndarray | None  # HxWx3 float32 metres, camera optical frame, NaN where invalid
    camera: CameraModel  # model of the depth image (binning/ROI applied; rectified when rectified)
    depth_source: str  # "stereo", "sparse_depth", "pointcloud", "plane", "model", "fixed", "none", "refused"
    stamp_ns: int = 0
    frame_id: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    depth_confidence: float = 1.0  # confidence of the metric scale in [0, 1]
    prediction: np.ndarray | None = None  # raw network output (HxW), when a network ran
    metric: MetricResult | None = None  # how the prediction was made metric
    regions: list[Region] = field(default_factory=list)
    labels: np.ndarray | None = None  # HxW uint16 cleaned instance image (0 = background)
    segmentation_source: str = ""  # "topic", "geometric", "sam", ... ("" = none)
    segmentation_message: str = ""  # why masks were dropped or missing ("" = all fine)
    #: the colour image the outputs are aligned with (the input, or its rectified version)
    rgb: np.ndarray | None = None
    geometry: str = ""  # the camera model used for rays, e.g. "rectified: rays from P (...)"
    #: why the colour image was refused before depth (black, saturated, flat, noise; see
    #: :mod:`.image_check`): depth all NaN, no regions, depth_source "refused". "" = accepted.
    refused: str = ""

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0

    def why_no_depth(self) -> str:
        """Why no pixel has valid depth, naming what to change ("" when some pixel has)."""
        if self.valid.any():
            return ""
        if self.refused:
            return f"frame refused: {self.refused}"
        if self.metric is not None and self.metric.source == "none":
            return self.metric.message
        if self.depth_source == "stereo":
            return ("stereo matching gave no depth within min_depth..max_depth: check the baseline, "
                    "that the pair is rectified (image_geometry, rectify) and stereo.num_disparities")
        return "every depth value lies outside min_depth..max_depth or on a depth edge"


def check_rgb(image: np.ndarray, what: str = "image") -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise PipelineError(f"{what} must be HxWx3 RGB, got {shape}")
    if image.dtype != np.uint8:
        raise PipelineError(f"{what} must be uint8, got {image.dtype}")


class Pipeline:
    """One stream's processing. State: the metric scale filter (over time, by design) and caches
    keyed by the camera (pixel rays). ``estimator`` is a monocular depth network
    (:class:`depth_perception.depth.estimator.DepthEstimator` or anything with its ``predict``);
    without one, depth comes from stereo."""

    def __init__(self, config: PipelineConfig | None = None, estimator: DepthPredictor | None = None,
                 segmenters: Segmenters | None = None) -> None:
        self.config = config or PipelineConfig()
        self.estimator = estimator
        #: heavy mask sources built by the caller: {"sam": SamSegmenter, "text": TextSegmenter}
        self.segmenters = Segmenters(**(segmenters or {}))
        metric = replace(self.config.metric, min_depth_m=self.config.min_depth_m,
                         max_depth_m=self.config.max_depth_m,
                         flying_threshold=self.config.flying_threshold,
                         stereo=self.config.metric.stereo or self.config.stereo)
        self.aligner = MetricAligner(metric)
        #: keyframe state of the ``motion`` signal, across frames like the aligner's scale filter
        self.motion = MotionTracker(metric.motion)
        self._rays: tuple[tuple, np.ndarray] | None = None  # (camera key, HxWx2 rays)
        from .rectify import RectifyMaps

        self._maps = RectifyMaps()  # remap tables of the cameras seen, for ``rectify``

    def _in_geometry(self, frame: Frame) -> tuple[Frame, CameraModel, str]:
        """(frame, camera model for rays and metric signals, "rectified" | "raw").

        A rectified image is read through P (:meth:`CameraModel.rectified`); a raw one through K and
        D, or, with ``rectify``, resampled into the rectified geometry first, together with every
        pixel-aligned input (right image, masks, sparse depth, detections) — the frame returned then
        carries the rectified images and model."""
        cfg = self.config
        cam = frame.camera.effective()
        stereo = frame.right_rgb is not None
        geometry = image_geometry(cfg.image_geometry, stereo, frame.image_rectified, cfg.rectify)
        if geometry == "rectified":
            return frame, cam.rectified(), geometry
        if cam.rectification_is_identity:
            return frame, cam, "raw"
        if cfg.rectify:
            from .rectify import rectify_frame

            rectified = rectify_frame(frame, self._maps, self.aligner.config.T_camera_from_cloud)
            return rectified, rectified.camera, "rectified"
        if stereo:
            raise PipelineError(
                "stereo matching needs rectified images, but this pair is read as raw (its CameraInfo "
                "has distortion or R != I): subscribe to image_rect, set image_geometry: rectified if "
                "it already is, or set rectify: true")
        return frame, cam, geometry

    def _rays_for(self, cam: CameraModel) -> np.ndarray:
        key = (cam.width, cam.height, cam.K.tobytes(), cam.D.tobytes(), cam.distortion_model)
        if self._rays is None or self._rays[0] != key:
            self._rays = (key, cam.normalized_rays())
        return self._rays[1]

    def process(self, frame: Frame, on_depth: Callable[[FrameResult], None] | None = None) -> FrameResult:
        """Depth, cloud, segmentation and regions of one frame.

        ``on_depth`` gets the result as soon as depth and cloud exist (no regions or labels yet), so
        a driver can publish depth before segmentation, which may take far longer, is done.
        """
        cfg = self.config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        check_rgb(frame.rgb, "colour image")
        h, w = frame.rgb.shape[:2]
        if h * w > cfg.max_pixels:
            raise PipelineError(f"colour image is {w}x{h} = {w * h / 1e6:.1f} MP, over "
                                f"max_image_pixels ({cfg.max_pixels / 1e6:.1f} MP)")
        try:
            frame.camera.check_image(frame.rgb, "colour image")
        except ValueError as exc:
            raise PipelineError(str(exc)) from exc
        t = time.perf_counter()
        given = frame
        frame, cam, geometry = self._in_geometry(frame)
        if frame is not given:
            timings["rectify"] = (time.perf_counter() - t) * 1e3
        refused = self._refuse(frame, cam, geometry, timings, t0, on_depth)
        if refused is not None:
            return refused

        t = time.perf_counter()
        prediction = metric = None
        confidence = 1.0
        if self.estimator is not None:
            pred = self.estimator.predict(frame.rgb, **self._model_inputs(frame, cam))
            timings["depth"] = (time.perf_counter() - t) * 1e3
            prediction = pred.values
            t = time.perf_counter()
            motion = self._motion(frame, cam)
            if motion is not None:
                timings["motion"] = (time.perf_counter() - t) * 1e3
                t = time.perf_counter()
            metric = self.aligner.align(pred.values, pred.kind, cam, self._signal(frame, motion))
            depth_m, valid = metric.depth_m, metric.valid
            source, confidence = metric.source, metric.confidence
            timings["metric"] = (time.perf_counter() - t) * 1e3
        elif frame.right_rgb is not None:
            # SGBM's depth is a fresh array: validity may edit it in place
            depth_m = self._stereo(frame, frame.right_rgb, cam).astype(np.float32, copy=False)
            source = "stereo"
            timings["depth"] = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            valid = apply_validity(depth_m, cfg.min_depth_m, cfg.max_depth_m,
                                          cfg.flying_threshold or None)
            timings["validity"] = (time.perf_counter() - t) * 1e3
        else:
            raise PipelineError(
                "no depth source: configure a monocular model, or give a right image (stereo)"
            )

        points = None
        if cfg.cloud:
            t = time.perf_counter()
            points = cam.backproject(depth_m, self._rays_for(cam))
            timings["cloud"] = (time.perf_counter() - t) * 1e3
        result = FrameResult(depth_m=depth_m, valid=valid, points=points, camera=cam, depth_source=source,
                             stamp_ns=frame.stamp_ns, frame_id=frame.frame_id, timings_ms=timings,
                             depth_confidence=confidence, prediction=prediction, metric=metric,
                             rgb=frame.rgb, geometry=cam.describe(geometry))
        if on_depth is not None:
            on_depth(replace(result, timings_ms=dict(timings)))
        regions: list[Region] = []
        labels = None
        seg_source = seg_message = ""
        if cfg.regions and points is not None and cfg.segmentation:
            t = time.perf_counter()
            seg = self._segment(frame, points)
            timings["segmentation"] = (time.perf_counter() - t) * 1e3
            seg_source = seg.source
            t = time.perf_counter()
            regions, seg_message = self._regions(frame, seg, points)
            labels = label_image(regions, depth_m.shape)
            timings["regions"] = (time.perf_counter() - t) * 1e3
        timings["total"] = (time.perf_counter() - t0) * 1e3
        result.regions, result.labels = regions, labels
        result.segmentation_source, result.segmentation_message = seg_source, seg_message
        return result

    def _refuse(self, frame: Frame, cam: CameraModel, geometry: str, timings: dict[str, float],
                t0: float, on_depth: Callable[[FrameResult], None] | None) -> FrameResult | None:
        """The result of a frame whose colour image shows nothing to measure depth from (all-NaN
        depth and cloud, no regions, the reason in ``refused``; handed to ``on_depth`` too), or
        None to process it. A refused frame never reaches the metric scale filter."""
        cfg = self.config
        if not cfg.image_check.enabled:
            return None
        t = time.perf_counter()
        check = check_image_content(frame.rgb, cfg.image_check)
        timings["image_check"] = (time.perf_counter() - t) * 1e3
        if check.ok:
            return None
        h, w = frame.rgb.shape[:2]
        points = np.full((h, w, 3), np.nan, np.float32) if cfg.cloud else None
        # an empty label image where regions would have been made: drivers clear old regions
        labels = np.zeros((h, w), np.uint16) if cfg.regions and cfg.cloud and cfg.segmentation else None
        result = FrameResult(depth_m=np.full((h, w), np.nan, np.float32), valid=np.zeros((h, w), bool),
                             points=points, camera=cam, depth_source="refused", stamp_ns=frame.stamp_ns,
                             frame_id=frame.frame_id, timings_ms=timings, depth_confidence=0.0,
                             refused=check.reason, rgb=frame.rgb, geometry=cam.describe(geometry))
        if on_depth is not None:
            on_depth(replace(result, timings_ms=dict(timings)))
        result.labels = labels
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return result

    def _regions(self, frame: Frame, seg: Segmentation, points: np.ndarray) -> tuple[list[Region], str]:
        """The masks cleaned once against the depth (fusion), then the regions of what that kept;
        returns them with the segmentation message (naming the masks fusion dropped)."""
        from .regions.fusion import fuse_masks

        cfg = self.config
        plane = frame.support_plane if frame.support_plane is not None else seg.support_plane
        fused = fuse_masks(seg, points, cfg.region_params, plane)
        regions = describe_regions(fused.cleaned, cfg.gripper, cfg.region_params, rgb=frame.rgb,
                                   names={**seg.names, **(frame.mask_names or {})},
                                   scores={**seg.scores, **(frame.mask_scores or {})},
                                   keep_dropped=not cfg.fuse_masks)
        return regions, fused.segmentation.message if cfg.fuse_masks else seg.message

    def _segment(self, frame: Frame, points: np.ndarray) -> Segmentation:
        """Every configured mask source → merged (not yet cleaned). Never raises for bad masks:
        problems end up in the message and the frame keeps its depth and cloud."""
        from .segmentation.base import join_messages, merge_segmentations

        shape = points.shape[:2]
        sources: dict[str, Callable[[Frame, np.ndarray, list[str]], Segmentation | None]] = {
            "topic": self._topic_masks, "geometric": self._geometric_masks,
            "sam": self._sam_masks, "text": self._text_masks}
        found: list[Segmentation] = []
        notes: list[str] = list(frame.input_notes)
        for source in self.config.segmentation:
            try:
                seg = sources[source](frame, points, notes)
            except SegmentationError as exc:
                notes.append(f"{source}: {exc}")
                continue
            if seg is not None:
                found.append(seg)
        if not found:
            return Segmentation(labels=np.zeros(shape, np.uint16), message=join_messages(*notes))
        # One source keeps its own ids (another node's ids stay meaningful); several are renumbered.
        merged = found[0] if len(found) == 1 else merge_segmentations(found, shape)
        merged.message = join_messages(*notes, merged.message)
        return merged

    # Each mask source: the frame's masks, or None with the reason appended to ``notes``.

    def _topic_masks(self, frame: Frame, points: np.ndarray, notes: list[str]) -> Segmentation | None:
        from .segmentation.external import external_segmentation

        if frame.masks is None:
            notes.append("topic: no mask image for this frame")
            return None
        return external_segmentation(np.asarray(frame.masks), points.shape[:2], frame.detections,
                                     allow_resize=self.config.allow_mask_resize)

    def _geometric_masks(self, frame: Frame, points: np.ndarray,
                         notes: list[str]) -> Segmentation | None:
        from .segmentation.geometric import segment_geometric

        return segment_geometric(points, self.config.geometric, frame.support_plane)

    def _sam_masks(self, frame: Frame, points: np.ndarray, notes: list[str]) -> Segmentation | None:
        from .segmentation.base import detections_in_image

        sam = self.segmenters.get("sam")
        prompts, outside = detections_in_image(frame.detections or [], frame.rgb.shape[:2])
        notes += [f"sam: {text}" for text in outside]
        if sam is None or not prompts:
            notes.append("sam: " + ("no SAM model loaded" if sam is None
                                    else "no detections to prompt it"))
            return None
        return sam.segment(frame.rgb, prompts)

    def _text_masks(self, frame: Frame, points: np.ndarray, notes: list[str]) -> Segmentation | None:
        text = self.segmenters.get("text")
        if text is None or not frame.prompt:
            notes.append("text: " + ("no detector loaded" if text is None else "no prompt yet"))
            return None
        return text.segment(frame.rgb, frame.prompt)

    def _motion(self, frame: Frame, cam: CameraModel) -> MotionSignal | None:
        """The motion tracker's signal for this frame: in ``motion`` mode always (a frame without
        a pose says so), in ``auto`` when the frame has a pose; None otherwise."""
        mode = self.aligner.config.mode
        if mode != "motion" and not (mode == "auto" and frame.T_odom_camera is not None):
            return None
        try:
            sample = self.motion.update(frame.rgb, cam, frame.T_odom_camera, frame.stamp_ns)
        except ValueError as exc:  # a malformed pose is a bad signal: the stream goes on
            self.motion.reset()
            return MotionSignal(None, f"bad pose: {exc}")
        return MotionSignal.from_sample(sample)

    def _model_inputs(self, frame: Frame, cam: CameraModel) -> dict[str, Any]:
        """The further inputs the depth network takes besides the image: the focal length of Depth
        Pro and Depth Anything 3 Metric (``spec.takes_focal``: fx of this image in pixels, from
        CameraInfo; the estimator scales it to the network input)
        and Prompt Depth Anything's prompt (the frame's registered depth, else its LiDAR points
        projected into the image: HxW metres, NaN = none). Empty for a model that takes none (or a
        stand-in without a spec)."""
        spec = getattr(self.estimator, "spec", None)
        if spec is not None and spec.takes_focal:
            # K, not the model's own field-of-view guess, sets the metric scale
            return {"fx_px": cam.fx * frame.rgb.shape[1] / cam.width}
        if spec is None or "prompt_depth" not in spec.extra_inputs:
            return {}
        c = self.aligner.config
        shape = frame.rgb.shape[:2]
        try:
            if frame.sparse_depth is not None:
                prompt = sparse_from_depth_image(frame.sparse_depth, shape, c.depth_scale_m)
            elif frame.cloud_points is not None:
                T = c.T_camera_from_cloud if frame.T_camera_from_cloud is None else frame.T_camera_from_cloud
                prompt = sparse_from_pointcloud(frame.cloud_points, T, cam, shape, min_depth_m=c.min_depth_m)
            else:
                raise PipelineError(f"{spec.name} needs a prompt depth every frame: a registered depth "
                                    "image on `sparse_depth` or LiDAR points on `lidar_points`")
        except PipelineError:
            raise
        except ValueError as exc:
            raise PipelineError(f"prompt depth for {spec.name}: {exc}") from exc
        if not np.isfinite(prompt).any():
            raise PipelineError(f"prompt depth for {spec.name}: no valid sample in this frame's "
                                f"{'sparse_depth' if frame.sparse_depth is not None else 'lidar_points'}")
        return {"prompt_depth_m": prompt}

    def _signal(self, frame: Frame, motion: MotionSignal | None = None) -> Any:
        """The metric signal this frame carries for the configured mode (None: none this frame);
        for ``auto`` the first present among sparse depth, LiDAR, stereo and a camera height, then
        the motion tracker's (``motion``, from :meth:`_motion`)."""
        mode = self.aligner.config.mode
        auto = mode == "auto"
        if (auto or mode == "sparse_depth") and frame.sparse_depth is not None:
            return DepthImageSignal(frame.sparse_depth)
        if (auto or mode == "pointcloud") and frame.cloud_points is not None:
            return PointCloudSignal(frame.cloud_points, frame.T_camera_from_cloud)
        if (auto or mode == "stereo") and frame.right_rgb is not None:
            return StereoSignal(frame.rgb, frame.right_rgb, baseline_m=frame.baseline_m,
                                right_camera=frame.right_camera)
        if (auto or mode == "plane") and frame.camera_height_m is not None:
            return PlaneSignal(frame.camera_height_m)
        return motion

    def _stereo(self, frame: Frame, right: np.ndarray, cam: CameraModel) -> np.ndarray:
        check_rgb(right, "right image")
        if right.shape != frame.rgb.shape:
            raise PipelineError(
                f"right image is {right.shape[1]}x{right.shape[0]} but the left is "
                f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}"
            )
        baseline = frame.baseline_m
        if baseline is None and frame.right_camera is not None:
            baseline = frame.right_camera.effective().baseline_m
        if baseline is None or not np.isfinite(baseline) or baseline <= 0:
            raise PipelineError(
                "stereo needs a positive baseline: set it, or give the right CameraInfo with "
                f"P[0,3] = -fx*B (got baseline {baseline})"
            )
        fx = float(cam.P[0, 0]) if cam.P[0, 0] > 0 else cam.fx
        # Rectified pairs may differ in principal point (Middlebury's doffs): d_true = d + doffs.
        doffs = 0.0
        if frame.right_camera is not None:
            doffs = float(frame.right_camera.effective().P[0, 2] - cam.P[0, 2])
        result = stereo_depth(
            frame.rgb,
            right,
            fx=fx,
            baseline_m=float(baseline),
            params=self.config.stereo,
            doffs=doffs,
            min_depth_m=self.config.min_depth_m,
            max_depth_m=self.config.max_depth_m,
        )
        return result.depth_m
