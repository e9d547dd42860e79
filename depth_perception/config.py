"""The node's parameters, defined once: the ROS node declares them, the bag processor and the CLI
read the same `config/*.yaml` files, and both turn them into a :class:`PipelineConfig` here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .depth.estimator import BACKENDS, DepthEstimator
from .metric import MODES as METRIC_MODES
from .metric import MetricConfig
from .pipeline import SEGMENTATION_SOURCES, PipelineConfig
from .regions import REGION_IMPLEMENTATIONS, GripperParams, RegionParams, kernel_available
from .segmentation.base import Segmenters
from .stereo import StereoParams


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False  # a change needs a restart (subscriptions, queues)
    min_value: float | None = None
    max_value: float | None = None
    step: float = 0.0


_STEREO = StereoParams()
_PIPE = PipelineConfig()
_GRIP = GripperParams()
_REG = RegionParams()
_MET = MetricConfig()
SAM_BACKENDS = ("torch", "onnxruntime", "tensorrt")

PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("min_depth", _PIPE.min_depth_m, "nearest valid depth, metres", min_value=0.0,
                  max_value=1000.0),
    ParameterSpec("max_depth", _PIPE.max_depth_m, "farthest valid depth, metres", min_value=0.0,
                  max_value=1000.0),
    ParameterSpec("depth_encoding", "32FC1", "32FC1 (metres, NaN invalid) or 16UC1 (mm, 0 invalid)"),
    ParameterSpec("image_transport", "raw", "raw: sensor_msgs/Image on image; compressed: "
                  "sensor_msgs/CompressedImage on image/compressed", read_only=True),
    ParameterSpec("stereo", False, "subscribe to right/image + right/camera_info and use SGBM",
                  read_only=True),
    ParameterSpec("baseline", 0.0, "stereo baseline in metres; 0 = from right CameraInfo P[0,3]",
                  min_value=0.0, max_value=100.0),
    ParameterSpec("sync_slop", 0.0, "max stamp difference between synchronised inputs, seconds",
                  read_only=True, min_value=0.0, max_value=1.0),
    ParameterSpec("queue_size", 5, "per-input synchroniser queue length", read_only=True,
                  min_value=1, max_value=100, step=1),
    ParameterSpec("stereo.num_disparities", _STEREO.num_disparities,
                  "SGBM disparity search range, multiple of 16", min_value=16, max_value=1024,
                  step=16),
    ParameterSpec("stereo.block_size", _STEREO.block_size, "SGBM block size, odd", min_value=1,
                  max_value=31, step=2),
    ParameterSpec("model", "", "monocular depth model (depth-perception models); empty = stereo",
                  read_only=True),
    ParameterSpec("weights", "", "local weights for the model (folder, .safetensors, .pth) or a "
                  "hub id where the robot has internet", read_only=True),
    ParameterSpec("backend", "auto", "auto, torch, onnxruntime or tensorrt", read_only=True),
    ParameterSpec("precision", "fp32", "fp32, fp16, bf16 (torch CPU) or int8", read_only=True),
    ParameterSpec("input_size", 0, "network input size (shorter side); 0 = the model's default",
                  read_only=True, min_value=0, max_value=4096, step=1),
    ParameterSpec("onnx", "", "ONNX file for onnxruntime/tensorrt (empty: export on first run)",
                  read_only=True),
    ParameterSpec("engine", "", "TensorRT engine file (empty: build and cache on first run)",
                  read_only=True),
    ParameterSpec("device", "", "torch device, e.g. cuda:0 (empty: cuda if present)",
                  read_only=True),
    ParameterSpec("random_init", False, "random weights (benchmarks and plumbing only)",
                  read_only=True),
    ParameterSpec("metric.mode", _MET.mode, "how relative depth becomes metric: "
                  + ", ".join(METRIC_MODES), read_only=True),
    ParameterSpec("metric.camera_height", _MET.camera_height_m,
                  "camera height above the support plane for plane mode, metres (0 = unset)",
                  min_value=0.0, max_value=100.0),
    ParameterSpec("metric.fixed_scale", _MET.fixed_scale, "fixed mode: scale", min_value=-1e6,
                  max_value=1e6),
    ParameterSpec("metric.fixed_shift", _MET.fixed_shift, "fixed mode: shift", min_value=-1e6,
                  max_value=1e6),
    ParameterSpec("metric.min_inliers", _MET.min_inliers, "fewest inliers for an accepted fit",
                  min_value=3, max_value=1_000_000, step=1),
    ParameterSpec("metric.max_residual", _MET.max_residual, "largest accepted fit residual",
                  min_value=0.0, max_value=10.0),
    ParameterSpec("metric.temporal", _MET.temporal, "filter the scale over time"),
    ParameterSpec("metric.stale_after", _MET.stale_after, "frames without a signal before the "
                  "scale is reported stale", min_value=1, max_value=100_000, step=1),
    ParameterSpec("metric.T_camera_from_cloud", list(_MET.T_camera_from_cloud),
                  "pointcloud mode: 16 values, row-major 4x4 from the LiDAR frame to the camera "
                  "optical frame (TF is not used)"),
    ParameterSpec("flying_threshold", _PIPE.flying_threshold, "relative depth jump over 3x3 "
                  "that marks a flying pixel (0 disables)", min_value=0.0, max_value=10.0),
    ParameterSpec("segmentation.source", ["geometric"], "mask sources, combined in order: topic "
                  "(instance-id image on `masks`), sam (prompted by `detections`), text (`prompt` "
                  "→ OWLv2 → SAM), geometric (table plane + clustering, no weights); [] = none",
                  read_only=True),
    ParameterSpec("segmentation.wait", 0.5, "how long an image waits for its `masks` / "
                  "`detections` from another node before it is processed without them (depth and "
                  "clouds still published), seconds; also ends when queue_size newer messages "
                  "arrive", read_only=True, min_value=0.0, max_value=10.0),
    ParameterSpec("segmentation.allow_resize", False, "resample masks of another size (nearest) "
                  "instead of dropping them"),
    ParameterSpec("segmentation.fuse", True, "drop masks that the cleaning against depth (erosion, "
                  "depth edges, outliers, dominant cluster) leaves with too few pixels, naming them "
                  "in the segmentation message; false keeps them as regions with too few points"),
    ParameterSpec("segmentation.sam.model", "vit_b", "SAM encoder: vit_b, vit_l or vit_h",
                  read_only=True),
    ParameterSpec("segmentation.sam.checkpoint", "", "local SAM checkpoint (.pth)", read_only=True),
    ParameterSpec("segmentation.sam.backend", "torch", "SAM backend: " + ", ".join(SAM_BACKENDS)
                  + " (TensorRT engines are built, checked against ONNX Runtime and cached on "
                  "first use)", read_only=True),
    ParameterSpec("segmentation.sam.onnx_dir", "", "onnxruntime/tensorrt: folder with "
                  "`<name>_encoder.onnx` and `<name>_decoder.onnx` from `depth-perception export-sam` "
                  "(empty: export segmentation.sam.checkpoint into the engine cache on first use)",
                  read_only=True),
    ParameterSpec("segmentation.text.model_dir", "", "local OWLv2 folder (Hugging Face format)",
                  read_only=True),
    ParameterSpec("cloud.stride", 1, "decimation of the published scene cloud, pixels",
                  min_value=1, max_value=16, step=1),
    ParameterSpec("cloud.max_range", 0.0, "drop scene-cloud points farther than this, metres "
                  "(0 = keep all)", min_value=0.0, max_value=1000.0),
    ParameterSpec("gripper.max_opening", _GRIP.max_opening_m, "widest graspable width, metres",
                  min_value=0.001, max_value=2.0),
    ParameterSpec("gripper.min_points", _GRIP.min_points, "fewest points for a graspable region",
                  min_value=1, max_value=1_000_000, step=1),
    ParameterSpec("gripper.min_range", _GRIP.min_range_m, "nearest graspable centroid, metres",
                  min_value=0.0, max_value=100.0),
    ParameterSpec("gripper.max_range", _GRIP.max_range_m, "farthest graspable centroid, metres",
                  min_value=0.0, max_value=100.0),
    ParameterSpec("regions.erosion_px", _REG.erosion_px, "mask border removed before measuring, px",
                  min_value=0, max_value=50, step=1),
    ParameterSpec("regions.stride", _REG.stride, "pixel decimation inside regions", min_value=1,
                  max_value=8, step=1),
    ParameterSpec("regions.outlier_std_ratio", _REG.outlier_std_ratio,
                  "statistical outlier removal threshold, std devs", min_value=0.1,
                  max_value=100.0),
    ParameterSpec("regions.cluster_gap_m", _REG.cluster_gap_m,
                  "depth gap that splits a region's clusters, metres", min_value=0.0001,
                  max_value=1.0),
    ParameterSpec("regions.implementation", _REG.implementation,
                  "auto: the compiled kernel when it is built, else numpy; compiled or numpy to "
                  "insist on one (same results; see the `regions implementation` diagnostic)"),
)

DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}


def validate_parameters(values: dict[str, Any]) -> str | None:
    """Why this parameter set is unusable, or None. Checks what ranges alone cannot."""
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        return f"unknown parameter(s): {', '.join(unknown)}"
    v = {**DEFAULTS, **values}
    for spec in PARAMETERS:
        if isinstance(spec.default, list):
            if isinstance(v[spec.name], (str, bytes)) or not hasattr(v[spec.name], "__len__"):
                return f"{spec.name} must be a list, got {v[spec.name]!r}"
            continue
        if not isinstance(v[spec.name], type(spec.default)) and not (
            isinstance(spec.default, float) and isinstance(v[spec.name], int)
            and not isinstance(v[spec.name], bool)
        ):
            return f"{spec.name} must be a {type(spec.default).__name__}, got {v[spec.name]!r}"
        if spec.min_value is not None and not spec.min_value <= v[spec.name] <= spec.max_value:
            return f"{spec.name} must be in [{spec.min_value}, {spec.max_value}], got {v[spec.name]}"
    if v["image_transport"] not in ("raw", "compressed"):
        return f"image_transport must be raw or compressed, not {v['image_transport']!r}"
    if v["depth_encoding"] not in ("32FC1", "16UC1"):
        return f"depth_encoding must be 32FC1 or 16UC1, not {v['depth_encoding']!r}"
    if not 0.0 <= v["min_depth"] < v["max_depth"]:
        return f"need 0 <= min_depth < max_depth, got {v['min_depth']} and {v['max_depth']}"
    if v["stereo.num_disparities"] % 16:
        return "stereo.num_disparities must be a multiple of 16"
    if v["stereo.block_size"] % 2 == 0:
        return "stereo.block_size must be odd"
    unknown = [x for x in v["segmentation.source"] if x not in SEGMENTATION_SOURCES]
    if unknown:
        return (f"segmentation.source entries must be among {', '.join(SEGMENTATION_SOURCES)}, "
                f"not {unknown}")
    if v["metric.mode"] not in METRIC_MODES:
        return f"metric.mode must be one of {', '.join(METRIC_MODES)}, not {v['metric.mode']!r}"
    if len(v["metric.T_camera_from_cloud"]) != 16:
        return "metric.T_camera_from_cloud needs 16 values (row-major 4x4)"
    if v["backend"] not in BACKENDS:
        return f"backend must be auto, torch, onnxruntime or tensorrt, not {v['backend']!r}"
    if v["precision"] not in ("fp32", "fp16", "bf16", "int8"):
        return f"precision must be fp32, fp16, bf16 or int8, not {v['precision']!r}"
    if v["segmentation.sam.backend"] not in SAM_BACKENDS:
        return (f"segmentation.sam.backend must be {', '.join(SAM_BACKENDS[:-1])} or "
                f"{SAM_BACKENDS[-1]}, not {v['segmentation.sam.backend']!r}")
    if v["gripper.min_range"] >= v["gripper.max_range"]:
        return "need gripper.min_range < gripper.max_range"
    if v["regions.implementation"] not in REGION_IMPLEMENTATIONS:
        return (f"regions.implementation must be auto, compiled or numpy, not "
                f"{v['regions.implementation']!r}")
    if v["regions.implementation"] == "compiled" and not kernel_available():
        return ("regions.implementation is compiled, but depth_perception._regions_kernel is not "
                "built (reinstall the package with a C++ compiler)")
    return None


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """Parameter values (missing ones default) → PipelineConfig. Raises ValueError when invalid."""
    reason = validate_parameters(values)
    if reason:
        raise ValueError(reason)
    v = {**DEFAULTS, **values}
    stereo = replace(StereoParams(), num_disparities=int(v["stereo.num_disparities"]),
                     block_size=int(v["stereo.block_size"]))
    gripper = GripperParams(max_opening_m=float(v["gripper.max_opening"]),
                            min_points=int(v["gripper.min_points"]),
                            min_range_m=float(v["gripper.min_range"]),
                            max_range_m=float(v["gripper.max_range"]))
    region_params = replace(RegionParams(), erosion_px=int(v["regions.erosion_px"]),
                            stride=int(v["regions.stride"]),
                            outlier_std_ratio=float(v["regions.outlier_std_ratio"]),
                            cluster_gap_m=float(v["regions.cluster_gap_m"]),
                            implementation=str(v["regions.implementation"]))
    metric = replace(MetricConfig(), mode=str(v["metric.mode"]),
                     camera_height_m=float(v["metric.camera_height"]),
                     fixed_scale=float(v["metric.fixed_scale"]),
                     fixed_shift=float(v["metric.fixed_shift"]),
                     min_inliers=int(v["metric.min_inliers"]),
                     max_residual=float(v["metric.max_residual"]),
                     temporal=bool(v["metric.temporal"]),
                     stale_after=int(v["metric.stale_after"]),
                     T_camera_from_cloud=tuple(float(x) for x in v["metric.T_camera_from_cloud"]))
    return PipelineConfig(min_depth_m=float(v["min_depth"]), max_depth_m=float(v["max_depth"]),
                          stereo=stereo, flying_threshold=float(v["flying_threshold"]),
                          metric=metric, gripper=gripper, region_params=region_params,
                          segmentation=tuple(str(x) for x in v["segmentation.source"]),
                          fuse_masks=bool(v["segmentation.fuse"]),
                          allow_mask_resize=bool(v["segmentation.allow_resize"]))


def segmenters_from_parameters(values: dict[str, Any],
                               log: Callable[[str], None] | None = None) -> Segmenters:
    """The heavy mask sources the parameters ask for ({"sam": ..., "text": ...}); may be slow
    (minutes on a first run: SAM export to ONNX, TensorRT engine builds). ``log`` gets one line
    before such a step."""
    v = {**DEFAULTS, **values}
    sources = list(v["segmentation.source"])
    out: Segmenters = {}
    if "sam" in sources or "text" in sources:
        out["sam"] = sam = sam_from_parameters(v, log)
    if "text" in sources:
        from .segmentation.text import OpenVocabDetector, TextSegmenter

        if not v["segmentation.text.model_dir"]:
            raise ValueError("segmentation.source text needs segmentation.text.model_dir")
        out["text"] = TextSegmenter(OpenVocabDetector.from_pretrained(
            v["segmentation.text.model_dir"]), sam)
    return out


def sam_from_parameters(values: dict[str, Any], log: Callable[[str], None] | None = None) -> Any:
    """The SAM segmenter of ``segmentation.sam.*``: torch from the checkpoint; onnxruntime or
    tensorrt from ``onnx_dir``, or from the checkpoint exported into the engine cache once."""
    v = {**DEFAULTS, **values}
    backend = v["segmentation.sam.backend"]
    model, checkpoint = v["segmentation.sam.model"], v["segmentation.sam.checkpoint"]
    onnx_dir = v["segmentation.sam.onnx_dir"]
    if backend not in SAM_BACKENDS:
        raise ValueError(f"segmentation.sam.backend must be one of {', '.join(SAM_BACKENDS)}, "
                         f"not {backend!r}")
    if backend == "torch":
        from .segmentation.sam import SamSegmenter

        if not checkpoint:
            raise ValueError("segmentation.source needs SAM: set segmentation.sam.checkpoint")
        return SamSegmenter.from_config(model, checkpoint)
    from .segmentation import sam_tensorrt

    if backend == "tensorrt":
        sam_tensorrt.check_tensorrt_ready()  # before an export that would be wasted
    if onnx_dir:
        files = sam_tensorrt.find_sam_onnx(onnx_dir, preferred=(model, "sam"))
    elif checkpoint:
        files = sam_tensorrt.cached_sam_onnx(model, checkpoint, log=log)
    else:
        raise ValueError(f"segmentation.sam.backend {backend} needs segmentation.sam.onnx_dir "
                         "(from `depth-perception export-sam`) or segmentation.sam.checkpoint "
                         "(exported into the engine cache on first use)")
    if backend == "onnxruntime":
        from .segmentation.sam_onnx import SamOnnxSegmenter

        return SamOnnxSegmenter(files.encoder, files.decoder)
    if log is not None:
        log(f"SAM on TensorRT from {files.encoder.parent}: a first run builds and checks two "
            "engines (minutes)")
    return sam_tensorrt.SamTensorRTSegmenter(files.encoder, files.decoder)


def estimator_from_parameters(values: dict[str, Any], log: Any = None) -> DepthEstimator | None:
    """The monocular DepthEstimator the parameters ask for, or None (stereo). May take minutes
    (export / TensorRT engine build on first run)."""
    v = {**DEFAULTS, **values}
    if not v["model"]:
        return None
    kwargs: dict[str, Any] = {} if log is None else {"log": log}
    return DepthEstimator(
        v["model"], weights=v["weights"] or None, backend=v["backend"],
        device=v["device"] or None, random_init=bool(v["random_init"]),
        input_size=int(v["input_size"]) or None, onnx_path=v["onnx"] or None,
        engine_path=v["engine"] or None, precision=v["precision"], **kwargs)


def load_parameters(path: str | Path) -> dict[str, Any]:
    """Read a ROS 2 parameter file (`node_name: ros__parameters: {...}`, `/**` wildcard allowed)
    → flat {name: value} with dotted names for nested groups."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such parameter file")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a mapping of node names to ros__parameters")
    sections = [v["ros__parameters"] for v in doc.values()
                if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)]
    if not sections:
        raise ValueError(f"{p}: no ros__parameters section")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(name + ".", value)
            else:
                flat[name] = value

    for section in sections:
        walk("", section)
    reason = validate_parameters(flat)
    if reason:
        raise ValueError(f"{p}: {reason}")
    return flat


def parameters_markdown() -> str:
    """The parameter table of the README (kept in step by a test)."""
    rows = ["| name | type | default | notes |", "|---|---|---|---|"]
    for p in PARAMETERS:
        kind = "double[]" if isinstance(p.default, list) else {
            bool: "bool", int: "int", float: "double", str: "string"}[type(p.default)]
        default = "identity" if isinstance(p.default, list) else (
            f'`"{p.default}"`' if isinstance(p.default, str) else f"`{p.default}`")
        notes = p.description + ("; read-only (restart)" if p.read_only else "")
        rows.append(f"| `{p.name}` | {kind} | {default} | {notes} |")
    return "\n".join(rows)
