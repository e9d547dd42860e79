"""Building: an ONNX file -> a serialized TensorRT engine (bytes), minutes for a real model.

The ONNX graph's inputs are N x C x H x W float32 (-1 marks a dynamic axis); each gets one range
of shapes in the engine's single optimization profile: the requested :class:`ShapeProfile` for the
main input (``pixel_values``), ``extra_profiles`` for further ones (e.g. ``prompt_depth``, metres),
the one size of a further static input. Static axes of the graph must be matched exactly by the
request, so a mismatch is reported here rather than deep inside TensorRT.

Precision: ``fp32``; ``fp16`` (TensorRT keeps normalisation layers in FP32 by itself); ``int8``
with FP16 fallback and a calibrator (:mod:`.tensorrt_calibration`). The one switch on the TensorRT
version is here: the ``EXPLICIT_BATCH`` network flag, required before 10, deprecated in 10.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

from .engine_keys import PRECISIONS
from .engine_profiles import InputProfile, ShapeProfile, format_shape
from .onnx_export import INPUT_NAME
from .tensorrt_import import dims_tuple, needs_explicit_batch_flag, tensorrt_logger

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from .tensorrt_import import trt

Precision = Literal["fp32", "fp16", "int8"]
DEFAULT_PROFILE = ShapeProfile.fixed(518, 518)  # Depth Anything's native input, pixels


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


def resolve_profile(graph_shape: Sequence[int], requested: ShapeProfile,
                    name: str = INPUT_NAME) -> ShapeProfile:
    """The profile to build for an input whose ONNX shape is ``graph_shape`` (N, C, H, W; -1 = dynamic).

    Channels come from the graph. A static axis (an export without dynamic sizes) must be matched
    exactly by the requested profile, otherwise the build would fail deep inside TensorRT.
    """
    shape = [int(d) for d in graph_shape]
    if len(shape) != 4:
        raise ValueError(f"input {name!r} has shape {format_shape(shape)} in the ONNX graph; "
                         "this backend expects N x C x H x W")
    n, c, h, w = shape
    if c > 0 and c != requested.channels:
        requested = replace(requested, channels=c)
    if n > 0 and n != requested.batch:
        raise ValueError(f"input {name!r} has a fixed batch of {n} in the ONNX graph, but the "
                         f"profile asks for batch {requested.batch}")
    for axis, size, label in ((0, h, "height"), (1, w, "width")):
        wanted = {requested.min_hw[axis], requested.opt_hw[axis], requested.max_hw[axis]}
        if size > 0 and wanted != {size}:
            raise ValueError(
                f"input {name!r} has a fixed {label} of {size} in the ONNX graph (exported without "
                f"dynamic sizes), but the profile is {requested.describe()}: build with "
                f"--opt {h if h > 0 else requested.opt_hw[0]}x{w if w > 0 else requested.opt_hw[1]} "
                "(and no --min/--max), or re-export with --dynamic")
    return requested


def resolve_input_profile(graph_shape: Sequence[int], requested: InputProfile,
                          name: str) -> InputProfile:
    """:func:`resolve_profile` for either kind of profile: a :class:`TensorProfile` must have the
    graph input's rank and match each static axis exactly."""
    if isinstance(requested, ShapeProfile):
        return resolve_profile(graph_shape, requested, name)
    shape = [int(d) for d in graph_shape]
    if len(shape) != len(requested.min_shape):
        raise ValueError(f"input {name!r} has shape {format_shape(shape)} in the ONNX graph, but its "
                         f"profile {requested.describe()} has rank {len(requested.min_shape)}")
    for axis, size in enumerate(shape):
        wanted = {requested.min_shape[axis], requested.opt_shape[axis], requested.max_shape[axis]}
        if size > 0 and wanted != {size}:
            raise ValueError(f"input {name!r} has a fixed size of {size} on axis {axis} in the ONNX "
                             f"graph, but its profile is {requested.describe()}")
    return requested


def input_profiles(graph_inputs: Mapping[str, Sequence[int]], main: str, profile: ShapeProfile,
                   extra_profiles: Mapping[str, InputProfile] | None = None,
                   source: Path | str = "the ONNX file") -> dict[str, InputProfile]:
    """The optimization profile per graph input (``graph_inputs``: name -> shape, -1 = dynamic):
    ``profile`` for the main input, ``extra_profiles`` for further ones; a further static
    N x C x H x W input gets its one size, other static inputs need no entry."""
    extra = dict(extra_profiles or {})
    profiles: dict[str, InputProfile] = {main: resolve_profile(graph_inputs[main], profile, main)}
    for name, graph_shape in graph_inputs.items():
        shape = tuple(int(d) for d in graph_shape)
        if name == main:
            continue
        if name in extra:
            profiles[name] = resolve_input_profile(shape, extra[name], name)
        elif all(d > 0 for d in shape) and len(shape) == 4:
            profiles[name] = ShapeProfile.fixed(shape[2], shape[3], shape[0], shape[1])
        elif not all(d > 0 for d in shape):
            raise ValueError(f"{source} has a further dynamic input {name!r} "
                             f"({format_shape(shape)}): give its shape profile (extra_profiles)")
    return profiles


def pick_input_name(available: Sequence[str], wanted: str = INPUT_NAME) -> str:
    """The main input among an engine's or graph's inputs: ``wanted``, or the only one."""
    if wanted in available:
        return wanted
    if len(available) == 1:
        return available[0]
    raise ValueError(f"the engine has inputs {list(available)} and none is named {wanted!r}")


def build_serialized_engine(onnx_path: Path | str, *, precision: Precision = "fp16",
                            profile: ShapeProfile = DEFAULT_PROFILE, workspace_mb: int | None = None,
                            calibrator: trt.IInt8Calibrator | None = None,
                            input_name: str = INPUT_NAME,
                            extra_profiles: Mapping[str, InputProfile] | None = None) -> bytes:
    """Parse an ONNX file and build a serialized engine (bytes). Minutes for a real model.

    ``fp16`` enables FP16 kernels (TensorRT keeps normalisation layers in FP32 by itself);
    ``int8`` enables INT8 (plus FP16 for layers without INT8 kernels) and needs ``calibrator``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected fp32, fp16 or int8")
    if precision == "int8" and calibrator is None:
        raise ValueError("an int8 engine needs a calibrator (calibration images: --calib DIR)")
    onnx_path = Path(onnx_path)
    version = str(trt.__version__)
    logger = tensorrt_logger()
    builder = trt.Builder(logger)
    flags = 0
    if needs_explicit_batch_flag(version):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so weights stored as external data next to the file load.
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT {version} could not parse {onnx_path}: "
                               f"{'; '.join(errors) or 'no detail given'}")

    graph_inputs = {network.get_input(i).name: dims_tuple(network.get_input(i).shape)
                    for i in range(network.num_inputs)}
    main = pick_input_name(list(graph_inputs), input_name)
    profiles = input_profiles(graph_inputs, main, profile, extra_profiles, onnx_path)
    if precision == "int8" and len(profiles) > 1:
        raise ValueError("int8 calibration supports single-input networks only")

    config = builder.create_builder_config()
    if workspace_mb is not None:
        if workspace_mb <= 0:
            raise ValueError(f"workspace must be > 0 MB, got {workspace_mb}")
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for name, p in profiles.items():
        lo, mid, hi = p.input_shapes()
        opt_profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(mid)), trt.Dims(list(hi)))
    config.add_optimization_profile(opt_profile)
    if precision == "int8" and calibrator is not None:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        # With dynamic shapes TensorRT calibrates at this profile's opt shape.
        config.set_calibration_profile(opt_profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT {version} failed to build an engine from {onnx_path} "
                               "(its log messages above say why)")
    return bytes(serialized)
