"""The parameters of the node, the bag tool and the CLI, derived from the dataclasses that hold them.

Every parameter is a dataclass field declared with :func:`depth_perception.params.param` (default,
description, range, choices, read-only): the processing settings on the stages' own dataclasses
(:class:`PipelineConfig`, :class:`ImageCheckParams`, :class:`StereoParams`, :class:`MetricConfig`,
:class:`GripperParams`, :class:`RegionParams`), the drivers' settings on :class:`NodeParams`, :class:`ModelParams` and
:class:`SegmenterParams` here. :data:`SECTIONS` names each dataclass's parameter prefix. From them
come the ROS declarations (:data:`PARAMETERS`), validation (:func:`validate_parameters`, the same
rules a library user meets when constructing the dataclasses), the processing config
(:func:`pipeline_config`), `config/default.yaml` (:func:`default_yaml`) and the README table
(:func:`parameters_markdown`); tests keep the last two identical to what is generated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .depth.estimator import BACKENDS, DepthEstimator
from .depth.processing import MAX_ASPECT_RATIO
from .image_check import ImageCheckParams
from .metric import MetricConfig, MotionParams
from .params import Spec, check_fields, default_of, exposed, param, rule_violation
from .pipeline import PipelineConfig
from .regions import GripperParams, RegionParams, kernel_available
from .segmentation.base import Segmenters
from .stereo import StereoParams

SAM_BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class NodeParams:
    """How the drivers (node, bag tool) receive and publish; not per-frame processing."""

    depth_encoding: str = param("32FC1", "32FC1 (metres, NaN invalid) or 16UC1 (mm, 0 invalid)",
                                choices=("32FC1", "16UC1"))
    image_transport: str = param("raw", "raw: sensor_msgs/Image on image; compressed: "
                                 "sensor_msgs/CompressedImage on image/compressed",
                                 choices=("raw", "compressed"), read_only=True)
    stereo: bool = param(False, "subscribe to right/image + right/camera_info and use SGBM",
                         read_only=True)
    baseline: float = param(0.0, "stereo baseline in metres; 0 = from right CameraInfo P[0,3]",
                            minimum=0.0, maximum=100.0)
    sync_slop: float = param(0.0, "max stamp difference between synchronised inputs, seconds",
                             minimum=0.0, maximum=1.0, read_only=True)
    queue_size: int = param(5, "per-input synchroniser queue length", minimum=1, maximum=100,
                            step=1, read_only=True)
    frame_queue: int = param(
        3, "synchronised frames waiting while the worker is busy; when full, the oldest waiting "
        "frame is dropped (counted in /diagnostics). 1: always the newest frame, lowest latency; "
        "3: a node that keeps up on average rides out a burst of frames (a driver, DDS or the "
        "machine stalled for two frame periods) without dropping any",
        minimum=1, maximum=10, step=1, read_only=True)
    camera_info_pairing: str = param(
        "latest", "latest: each image takes the newest CameraInfo of its size (calibration may be "
        "published seldom or stamped apart); exact: only a CameraInfo within sync_slop of the "
        "image's stamp", name="camera_info.pairing", choices=("latest", "exact"), read_only=True)
    camera_info_max_age: float = param(
        1.0, "warn (log, /diagnostics, bag summary) when the paired CameraInfo is stamped more "
        "than this far from the image, seconds (0 = never)", name="camera_info.max_age",
        minimum=0.0, maximum=3600.0)
    segmentation_wait: float = param(
        0.5, "how long an image waits for its `masks` / `detections` from another node before it "
        "is processed without them (depth and clouds still published), seconds; also ends when "
        "queue_size newer messages arrive", name="segmentation.wait", minimum=0.0, maximum=10.0,
        read_only=True)
    qos_reliability: str = param("best_effort", "reliability of the input subscriptions: "
                                 "best_effort (matches every publisher) or reliable (only reliable "
                                 "publishers; no lost fragments of large images)",
                                 name="qos.reliability", choices=("best_effort", "reliable"),
                                 read_only=True)
    qos_depth: int = param(5, "history depth of the input subscriptions", name="qos.depth",
                           minimum=1, maximum=100, step=1, read_only=True)
    cloud_stride: int = param(1, "decimation of the published scene cloud, pixels",
                              name="cloud.stride", minimum=1, maximum=16, step=1)
    cloud_max_range: float = param(0.0, "drop scene-cloud points farther than this, metres "
                                   "(0 = keep all)", name="cloud.max_range", minimum=0.0,
                                   maximum=1000.0)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ModelParams:
    """The monocular depth network (none: depth from stereo)."""

    model: str = param("", "monocular depth model (depth-perception models); empty = stereo",
                       read_only=True)
    weights: str = param("", "local weights for the model (folder, .safetensors, .pth) or a hub "
                         "id where the robot has internet", read_only=True)
    backend: str = param("auto", "auto, torch, onnxruntime, openvino (CPU, optional) or "
                         "tensorrt", choices=BACKENDS, read_only=True)
    precision: str = param("fp32", "fp32, fp16, bf16 (torch CPU) or int8", choices=PRECISIONS,
                           read_only=True)
    input_size: int = param(0, "network input size (shorter side); 0 = the model's default",
                            minimum=0, maximum=4096, step=1, read_only=True)
    onnx: str = param("", "ONNX file for onnxruntime/openvino/tensorrt (empty: export on first "
                      "run)", read_only=True)
    engine: str = param("", "TensorRT engine file (empty: build and cache on first run)",
                        read_only=True)
    device: str = param("", "torch device, e.g. cuda:0 (empty: cuda if present)", read_only=True)
    random_init: bool = param(False, "random weights (benchmarks and plumbing only)",
                              read_only=True)
    warm_up: bool = param(True, "run the network once on a grey 640x480 image when it loads, so "
                          "the first camera frame does not pay for kernel selection, memory "
                          "arenas and lazy initialisation", read_only=True)
    max_aspect_ratio: float = param(MAX_ASPECT_RATIO, "longest / shortest image side the network "
                                    "accepts; wider images are refused before any allocation (the "
                                    "network input grows with the ratio)", minimum=1.0,
                                    maximum=64.0, read_only=True)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class SegmenterParams:
    """The heavy mask sources: SAM and the open-vocabulary detector."""

    sam_model: str = param("vit_b", "SAM encoder: vit_b, vit_l or vit_h", name="sam.model",
                           read_only=True)
    sam_checkpoint: str = param("", "local SAM checkpoint (.pth)", name="sam.checkpoint",
                                read_only=True)
    sam_backend: str = param("torch", "SAM backend: " + ", ".join(SAM_BACKENDS) + " (TensorRT "
                             "engines are built, checked against ONNX Runtime and cached on first "
                             "use)", name="sam.backend", choices=SAM_BACKENDS, read_only=True)
    sam_onnx_dir: str = param("", "onnxruntime/tensorrt: folder with `<name>_encoder.onnx` and "
                              "`<name>_decoder.onnx` from `depth-perception export-sam` (empty: "
                              "export segmentation.sam.checkpoint into the engine cache on first "
                              "use)", name="sam.onnx_dir", read_only=True)
    text_model_dir: str = param("", "local OWLv2 folder (Hugging Face format)",
                                name="text.model_dir", read_only=True)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Section:
    """The dataclass ``cls`` whose exposed fields are the parameters ``prefix + name``."""

    prefix: str
    cls: type


#: in the order of the README table and config/default.yaml
SECTIONS = (
    Section("", NodeParams),
    Section("", PipelineConfig),
    Section("image_check.", ImageCheckParams),
    Section("stereo.", StereoParams),
    Section("", ModelParams),
    Section("metric.", MetricConfig),
    Section("metric.motion.", MotionParams),
    Section("segmentation.", SegmenterParams),
    Section("gripper.", GripperParams),
    Section("regions.", RegionParams),
)


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter as the node declares it. Lists default to a list."""

    name: str
    default: Any
    description: str
    read_only: bool = False  # a change needs a restart (subscriptions, queues)
    min_value: float | None = None
    max_value: float | None = None
    step: float = 0.0
    section: Section | None = None
    field: str = ""
    choices: tuple[str, ...] | None = None


def _parameters() -> tuple[ParameterSpec, ...]:
    out = []
    for section in SECTIONS:
        for name, f, spec in exposed(section.cls):
            default = default_of(f)
            out.append(ParameterSpec(
                section.prefix + name, list(default) if isinstance(default, tuple) else default,
                spec.description, spec.read_only, spec.minimum, spec.maximum, spec.step,
                section, f.name, spec.choices))
    return tuple(out)


PARAMETERS: tuple[ParameterSpec, ...] = _parameters()
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}


def _spec(p: ParameterSpec) -> Spec:
    return Spec(p.description, None, p.min_value, p.max_value, int(p.step), p.choices, p.read_only)


def _typed(p: ParameterSpec, value: Any) -> Any:
    """A parameter value as its dataclass field holds it (lists → tuples, ints → floats)."""
    if isinstance(p.default, list):
        return tuple(value)
    if isinstance(p.default, float):
        return float(value)
    return value


def _build(section: Section, values: dict[str, Any]) -> Any:
    kwargs = {p.field: _typed(p, values[p.name]) for p in PARAMETERS if p.section is section}
    return section.cls(**kwargs)


def _sections(values: dict[str, Any]) -> dict[type, Any]:
    """Every section's dataclass from the values (missing ones default). Raises ValueError with
    the rule a value breaks, named by its parameter."""
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
    v = {**DEFAULTS, **values}
    for p in PARAMETERS:
        reason = rule_violation(p.name, _spec(p), _typed(p, p.default), v[p.name])
        if reason:
            raise ValueError(reason)
    built = {}
    for section in SECTIONS:
        try:
            built[section.cls] = obj = _build(section, v)
            if section.cls is StereoParams:
                obj.check()  # SGBM's own rules, checked when matching rather than on construction
        except ValueError as exc:  # a rule between fields, from the dataclass itself
            raise ValueError(_in_parameter_names(str(exc), section)) from None
    if built[RegionParams].implementation == "compiled" and not kernel_available():
        raise ValueError("regions.implementation is compiled, but depth_perception._regions_kernel "
                         "is not built (reinstall the package with a C++ compiler)")
    return built


def _in_parameter_names(message: str, section: Section) -> str:
    """A dataclass's error message with its field names replaced by the parameters' names."""
    words = {p.field: p.name for p in PARAMETERS if p.section is section}
    renamed = re.sub(r"\b(" + "|".join(map(re.escape, words)) + r")\b",
                     lambda m: words[m.group(1)], message) if words else message
    if renamed != message:
        return re.sub(r"^(metric\.motion|metric|stereo|gripper|regions|image_check) (?=\S+\.)", "",
                      renamed)
    return f"{section.prefix.rstrip('.') or section.cls.__name__}: {message}"


def validate_parameters(values: dict[str, Any]) -> str | None:
    """Why this parameter set is unusable, or None."""
    try:
        _sections(values)
    except ValueError as exc:
        return str(exc)
    return None


def parameter_problems(values: dict[str, Any]) -> list[str]:
    """Every reason this parameter set is unusable, one line per bad parameter ([] when usable);
    rules between parameters are checked once each parameter is fine on its own."""
    problems = [f"unknown parameter {name}" for name in sorted(set(values) - set(DEFAULTS))]
    v = {**DEFAULTS, **values}
    for p in PARAMETERS:
        reason = rule_violation(p.name, _spec(p), _typed(p, p.default), v[p.name])
        if reason:
            problems.append(reason)
    if not problems:
        reason = validate_parameters(values)
        if reason:
            problems.append(reason)
    return problems


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """Parameter values (missing ones default) → PipelineConfig. Raises ValueError when invalid."""
    built = _sections(values)
    metric = replace(built[MetricConfig], motion=built[MotionParams])
    return replace(built[PipelineConfig], stereo=built[StereoParams], metric=metric,
                   gripper=built[GripperParams], region_params=built[RegionParams],
                   image_check=built[ImageCheckParams])


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
        engine_path=v["engine"] or None, precision=v["precision"],
        max_aspect_ratio=float(v["max_aspect_ratio"]), **kwargs)


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


def default_yaml() -> str:
    """`config/default.yaml`: every parameter at its default, with its description."""
    import yaml

    lines = ["# depth_perception_node parameters at their defaults, generated from the dataclasses",
             "# (depth_perception.config.default_yaml(); a test keeps this file identical to it).",
             "# Other profiles in this folder override a few of them.",
             "/**:", "  ros__parameters:"]
    for p in PARAMETERS:
        note = p.description + (" (read-only: restart)" if p.read_only else "")
        lines.append(f"    # {note}")
        value = yaml.safe_dump(p.default, default_flow_style=True, width=1000).strip()
        value = value.removesuffix("\n...").removesuffix("...").strip()
        lines.append(f"    {p.name}: {value}")
    return "\n".join(lines) + "\n"


def parameters_markdown() -> str:
    """The parameter table of the README (a test keeps the README's copy identical)."""
    rows = ["| name | type | default | notes |", "|---|---|---|---|"]
    for p in PARAMETERS:
        if isinstance(p.default, list):
            kind = "string[]" if all(isinstance(x, str) for x in p.default) else "double[]"
            default = ("identity" if p.name in ("metric.T_camera_from_cloud",
                                                "metric.motion.T_base_camera")
                       else "`[" + ", ".join(f'"{x}"' for x in p.default) + "]`")
        else:
            kind = {bool: "bool", int: "int", float: "double", str: "string"}[type(p.default)]
            default = f'`"{p.default}"`' if isinstance(p.default, str) else f"`{p.default}`"
        notes = p.description + ("; read-only (restart)" if p.read_only else "")
        rows.append(f"| `{p.name}` | {kind} | {default} | {notes} |")
    return "\n".join(rows)
