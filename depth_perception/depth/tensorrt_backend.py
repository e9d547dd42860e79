"""TensorRT backend: ONNX -> cached, validated engine -> inference on torch CUDA tensors.

Written against the TensorRT 10 Python API (type-checked with the ``tensorrt-stubs`` package) and
its tensor-name interface: ``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``set_input_shape``, ``get_tensor_shape``, ``set_tensor_address``,
``execute_async_v3``. That interface exists since TensorRT 8.5, so the same code serves JetPack 5
(TensorRT 8.5/8.6); the one switch on the version is at network creation (the ``EXPLICIT_BATCH``
flag, required before 10, deprecated in 10). TensorRT < 8.5 only has the bindings API and is refused
with a clear message.

Buffers are torch CUDA tensors and all work is queued on one torch CUDA stream owned by the backend
(no pycuda). Inputs are ordered after the caller's current stream and outputs before it, so the
estimator's torch post-processing on the device needs no host synchronisation.

Ownership is explicit: :class:`TensorRTBackend` owns its runtime, engine, execution context, stream
and buffers, and frees them in :meth:`TensorRTBackend.close` (or on leaving a ``with`` block).

``import tensorrt`` and ``import torch`` happen on first use, so this module imports (and its pure
helpers run) where neither is installed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

import numpy as np

from .engine_cache import (
    DEFAULT_TOLERANCE,
    ENV_CACHE_DIR,
    CorruptEngineError,
    EngineCache,
    EngineKey,
    EngineKeyMismatchError,
    InputProfile,
    ShapeProfile,
    TensorProfile,
    ValidationReport,
    atomic_write_bytes,
    build_lock,
    calibration_cache_path,
    calibration_id,
    list_calibration_images,
    read_engine_file,
    read_sidecar,
    format_shape,
    sha256_file,
    validate_engine,
    write_engine_file,
)
from .onnx_export import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import tensorrt as trt
    from typing_extensions import Buffer
else:

    class _LazyTensorRT:
        """Stands in for the ``tensorrt`` module until an attribute is first used."""

        def __getattr__(self, name: str) -> Any:
            return getattr(import_tensorrt(), name)

    trt = _LazyTensorRT()

Precision = Literal["fp32", "fp16", "int8"]
MIN_TENSORRT = (8, 5)
DEFAULT_PROFILE = ShapeProfile.fixed(518, 518)
_LOG = logging.getLogger(__name__)

# rgb HxWx3 uint8 + (H, W) network input size -> float32 1 x 3 x H x W, normalised exactly as the
# estimator does at inference time (int8 calibration must see the statistics it will run on).
PreprocessFn = Callable[[np.ndarray, "tuple[int, int]"], np.ndarray]

# k (0, 1, 2, ...: the k-th validation input) -> the further inputs of a multi-input graph to run it
# with. Deterministic in k. For graphs whose further inputs need meaningful values and several
# shapes (SAM's decoder: prompt points and labels over the prompt/point profile); the default is
# uniform noise at each further input's opt shape.
ValidationFeeds = Callable[[int], Mapping[str, np.ndarray]]


class TensorRTUnavailableError(ImportError):
    """TensorRT (or torch with CUDA, which holds its buffers) cannot be used on this machine."""


class TensorRTVersionError(TensorRTUnavailableError):
    """The installed TensorRT predates the tensor-name API (8.5)."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


# --------------------------------------------------------------------------------------------------
# Imports and versions


def parse_tensorrt_version(version: str) -> tuple[int, int]:
    """``"10.13.0.35"`` -> ``(10, 13)``."""
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"unrecognised TensorRT version string {version!r}")
    return int(match.group(1)), int(match.group(2))


def check_tensorrt_version(version: str) -> tuple[int, int]:
    """(major, minor) of a supported TensorRT; :class:`TensorRTVersionError` below 8.5."""
    parsed = parse_tensorrt_version(version)
    if parsed < MIN_TENSORRT:
        raise TensorRTVersionError(
            f"TensorRT {version} only has the legacy bindings API (get_binding_*, execute_async_v2); "
            "this backend uses the tensor-name API of TensorRT >= 8.5 (JetPack >= 5.1 on Jetson). "
            "Upgrade TensorRT, or use the onnxruntime or torch backend")
    return parsed


def needs_explicit_batch_flag(version: str) -> bool:
    """TensorRT < 10 builds implicit-batch networks unless asked; 10 deprecates (ignores) the flag."""
    return parse_tensorrt_version(version)[0] < 10


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` saying what is missing."""
    try:
        import tensorrt as module
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libnvinfer is not
        raise TensorRTUnavailableError(
            f"TensorRT is not usable here ({type(exc).__name__}: {exc}). On Jetson it comes with "
            "JetPack (python3-libnvinfer); on a desktop GPU `pip install tensorrt`. Without it use "
            "the onnxruntime or torch backend") from exc
    if not hasattr(module, "Builder") or not hasattr(module, "__version__"):
        # `tensorrt-stubs` alone installs a bare `tensorrt/` folder that imports as an empty
        # namespace package: the import succeeds, yet there is no TensorRT.
        where = ", ".join(str(p) for p in getattr(module, "__path__", []))
        raise TensorRTUnavailableError(
            f"the 'tensorrt' package found here ({where or 'unknown location'}) has no TensorRT "
            "runtime (type stubs only?). Install TensorRT's Python bindings, or use the "
            "onnxruntime or torch backend")
    check_tensorrt_version(str(module.__version__))
    return module


def tensorrt_available() -> bool:
    """True when :func:`import_tensorrt` would succeed (says nothing about a GPU)."""
    try:
        import_tensorrt()
    except TensorRTUnavailableError:
        return False
    return True


def _import_torch() -> Any:
    try:
        import torch as module
    except ImportError as exc:
        raise TensorRTUnavailableError(
            "the TensorRT backend keeps its buffers as torch CUDA tensors: install torch with CUDA "
            f"support ({exc})") from exc
    if not module.cuda.is_available():
        raise TensorRTUnavailableError(
            "the TensorRT backend needs a CUDA GPU, and torch sees none "
            "(torch.cuda.is_available() is False)")
    return module


@functools.lru_cache(maxsize=1)
def _tensorrt_logger() -> trt.ILogger:
    """The one TensorRT logger of this process, forwarding to logging ``depth_perception.tensorrt``.

    Cached on purpose: TensorRT keeps the first logger it is given for every later builder and
    runtime of the process, so a logger owned by one backend would dangle once that backend closed.
    TensorRT's INFO is chatty and goes to DEBUG.
    """
    target = logging.getLogger("depth_perception.tensorrt")
    levels = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG,
              4: logging.DEBUG}

    class _ForwardingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            level = levels.get(int(severity), logging.WARNING)
            if target.isEnabledFor(level):
                target.log(level, "TensorRT: %s", msg)

    return _ForwardingLogger()


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


# --------------------------------------------------------------------------------------------------
# Shape profiles against the graph


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
    if wanted in available:
        return wanted
    if len(available) == 1:
        return available[0]
    raise ValueError(f"the engine has inputs {list(available)} and none is named {wanted!r}")


# --------------------------------------------------------------------------------------------------
# Building


def build_serialized_engine(onnx_path: Path | str, *, precision: Precision = "fp16",
                            profile: ShapeProfile = DEFAULT_PROFILE, workspace_mb: int | None = None,
                            calibrator: trt.IInt8Calibrator | None = None,
                            input_name: str = INPUT_NAME,
                            extra_profiles: Mapping[str, InputProfile] | None = None) -> bytes:
    """Parse an ONNX file and build a serialized engine (bytes). Minutes for a real model.

    ``fp16`` enables FP16 kernels (TensorRT keeps normalisation layers in FP32 by itself);
    ``int8`` enables INT8 (plus FP16 for layers without INT8 kernels) and needs ``calibrator``.
    """
    if precision not in DEFAULT_TOLERANCE:
        raise ValueError(f"unknown precision {precision!r}: expected fp32, fp16 or int8")
    if precision == "int8" and calibrator is None:
        raise ValueError("an int8 engine needs a calibrator (calibration images: --calib DIR)")
    onnx_path = Path(onnx_path)
    version = str(trt.__version__)
    logger = _tensorrt_logger()
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

    graph_inputs = {network.get_input(i).name: _dims(network.get_input(i).shape)
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


# --------------------------------------------------------------------------------------------------
# INT8 calibration


@dataclass(frozen=True)
class CalibrationData:
    """Where int8 calibration images come from and how they are pre-processed.

    ``preprocess`` must be the estimator's own pre-processing (see :data:`PreprocessFn`);
    ``preprocess_id`` names it in the cache key (change it when the pre-processing changes).
    """

    directory: Path
    preprocess: PreprocessFn
    preprocess_id: str = ""
    max_images: int | None = 256
    cache_file: Path | None = None  # calibration table; default: in the engine cache directory


def make_entropy_calibrator(images: Sequence[Path], preprocess: PreprocessFn,
                            input_shape: Sequence[int], cache_file: Path, device: int = 0,
                            logger: logging.Logger | None = None) -> trt.IInt8EntropyCalibrator2:
    """An ``IInt8EntropyCalibrator2`` feeding ``images`` (batch N of ``input_shape`` N x C x H x W)
    through ``preprocess`` from one torch CUDA buffer, with a calibration table at ``cache_file``.

    TensorRT calls these methods from C++ and cannot take a Python exception, so a failing image is
    logged, calibration stops, and the error is kept in ``.error`` for the caller to raise.
    """
    torch = _import_torch()
    log = logger or _LOG
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise ValueError(f"calibration input shape must be N x C x H x W, got {shape}")
    batch, _, height, width = shape
    if not images:
        raise ValueError("no calibration images")
    from ..files import read_image

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: Exception | None = None
            self.batches_read = 0
            self._next = 0
            self._buffer = torch.empty(shape, dtype=torch.float32,
                                       device=torch.device("cuda", device))

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int]:
            if self.error is not None or self._next + batch > len(images):
                return []  # no more batches: calibration ends
            paths = images[self._next:self._next + batch]
            self._next += batch
            try:
                arrays = []
                for p in paths:
                    x = np.asarray(preprocess(read_image(p), (height, width)), dtype=np.float32)
                    if x.shape != (1,) + shape[1:]:
                        raise ValueError(f"pre-processing {p} gave shape {x.shape}, expected "
                                         f"{(1,) + shape[1:]}")
                    arrays.append(x)
                self._buffer.copy_(torch.from_numpy(np.concatenate(arrays, axis=0)))
                # TensorRT reads the buffer on its own stream: the copy must be finished.
                torch.cuda.synchronize(self._buffer.device)
            except Exception as exc:  # noqa: BLE001 - must not propagate into TensorRT's C++
                self.error = exc
                log.error("int8 calibration stopped at %s: %s", paths[0], exc)
                return []
            self.batches_read += 1
            return [int(self._buffer.data_ptr())]

        # The stubs say Buffer; TensorRT's documented contract is "bytes, or None for no cache".
        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]
            if cache_file.exists() and cache_file.stat().st_size > 0:
                log.info("using int8 calibration table %s", cache_file)
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Buffer) -> None:
            try:
                atomic_write_bytes(cache_file, bytes(cache))
            except OSError as exc:  # a read-only cache must not fail the build
                log.warning("could not write the int8 calibration table %s: %s", cache_file, exc)

    return _EntropyCalibrator()


# --------------------------------------------------------------------------------------------------
# Running an engine


class _EngineRunner:
    """One deserialized engine with its context, stream and buffers, on one CUDA device."""

    def __init__(self, engine_bytes: bytes, source: Path, device: int = 0,
                 input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> None:
        self._torch = _import_torch()
        torch = self._torch
        self.source = source
        self.device = torch.device("cuda", device)
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: Any = None
        self._buffers: dict[str, Any] = {}
        self._bound: dict[str, tuple[int, ...]] = {}
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(_tensorrt_logger())
            engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if engine is None:
                raise CorruptEngineError(
                    source, f"TensorRT {trt.__version__} could not deserialize it (built by another "
                    "TensorRT version or for another GPU, or damaged)")
            self._engine = engine
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"TensorRT could not create an execution context for {source} "
                                   "(out of GPU memory?)")
            self._context = context
            self._stream = torch.cuda.Stream(device=self.device)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if not self.input_names or not self.output_names:
            raise ValueError(f"engine {source} has inputs {self.input_names} and outputs "
                             f"{self.output_names}; it needs at least one of each")
        self.input_name = pick_input_name(self.input_names, input_name)
        self.output_name = output_name if output_name in self.output_names else self.output_names[0]
        self.dtypes = {n: _torch_dtype(torch, engine.get_tensor_dtype(n)) for n in names}
        self.engine_shapes = {n: _dims(engine.get_tensor_shape(n)) for n in names}
        # Profile 0 (the only one we build): (min, opt, max) per input.
        self.profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        for n in self.input_names:
            lo, mid, hi = engine.get_tensor_profile_shape(n, 0)
            self.profiles[n] = (_dims(lo), _dims(mid), _dims(hi))

    def _as_device_tensor(self, name: str, value: Any) -> Any:
        torch = self._torch
        if isinstance(value, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
        elif isinstance(value, torch.Tensor):
            tensor = value.to(self.device)
        else:
            raise ValueError(f"{name} must be a numpy array or a torch tensor, "
                             f"got {type(value).__name__}")
        expected = self.engine_shapes[name]
        if tensor.dim() != len(expected) or any(
                e > 0 and e != s for e, s in zip(expected, tensor.shape)):
            wanted = "x".join(str(d) if d > 0 else "?" for d in expected)
            raise ValueError(f"{name} has shape {format_shape(tensor.shape)}; the engine "
                             f"{self.source.name} takes {wanted}")
        return tensor

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = self.profiles[name]
        if any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise ValueError(
                f"{name} of shape {format_shape(shape)} is outside the shape profile of engine "
                f"{self.source.name} (min {format_shape(lo)}, max {format_shape(hi)}): rebuild it "
                "with --min/--max covering this size")

    def _bind(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Set input shapes and (re)allocate every IO buffer; only called when a shape changes."""
        torch = self._torch
        context = self._require_context()
        for name, shape in shapes.items():
            self._check_profile(name, shape)
        self._stream.synchronize()  # the previous enqueue may still read the old buffers
        self._bound = {}
        self._buffers.clear()
        for name, shape in shapes.items():
            if not context.set_input_shape(name, shape):
                raise ValueError(f"TensorRT refused shape {format_shape(shape)} for {name} "
                                 f"of engine {self.source.name}")
        # Allocated on our stream: the caching allocator then never hands this memory to another
        # stream while our queued work may still use it.
        with torch.cuda.stream(self._stream):
            for name in self.input_names + self.output_names:
                shape = shapes[name] if name in shapes else _dims(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"output {name} of engine {self.source.name} has a "
                                       f"data-dependent shape ({format_shape(shape)}); unsupported")
                buffer = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
                if not context.set_tensor_address(name, int(buffer.data_ptr())):
                    raise RuntimeError(f"TensorRT refused the buffer for {name}")
                self._buffers[name] = buffer
        self._bound = dict(shapes)

    def _require_context(self) -> trt.IExecutionContext:
        if self._context is None:
            raise RuntimeError(f"the TensorRT engine {self.source.name} is closed")
        return self._context

    def buffer(self, name: str) -> Any:
        """The device buffer bound to ``name`` (for tests and zero-copy users); reused across calls."""
        return self._buffers[name]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs (numpy or torch, any device) -> every output as a new float32 CUDA tensor."""
        torch = self._torch
        context = self._require_context()
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise ValueError(f"engine {self.source.name} takes inputs {self.input_names}; "
                             f"missing {missing}, unknown {unknown}")
        with torch.cuda.device(self.device):
            tensors = {n: self._as_device_tensor(n, v) for n, v in feeds.items()}
            shapes = {n: tuple(int(d) for d in t.shape) for n, t in tensors.items()}
            if shapes != self._bound:
                self._bind(shapes)
            caller = torch.cuda.current_stream(self.device)
            stream = self._stream
            stream.wait_stream(caller)  # inputs may still be being written on the caller's stream
            with torch.cuda.stream(stream):
                for name, tensor in tensors.items():
                    self._buffers[name].copy_(tensor)
                    tensor.record_stream(stream)
                if not context.execute_async_v3(stream.cuda_stream):
                    raise RuntimeError(f"TensorRT failed to run engine {self.source.name} "
                                       "(its log messages say why)")
            caller.wait_stream(stream)
            # Copies on the caller's stream: the caller owns them, and our next call (which first
            # waits for the caller's stream) cannot overwrite them.
            return {n: self._buffers[n].to(torch.float32, copy=True) for n in self.output_names}

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.synchronize()
            except Exception:  # noqa: BLE001 - closing must not fail on a broken CUDA context
                pass
        self._buffers.clear()
        self._bound = {}
        # Context before engine before runtime: each depends on the next.
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None


def _torch_dtype(torch: Any, dtype: trt.DataType) -> Any:
    pairs = [("float32", "float32"), ("float16", "float16"), ("int32", "int32"), ("int8", "int8"),
             ("bool", "bool"), ("uint8", "uint8"), ("int64", "int64"), ("bfloat16", "bfloat16")]
    for trt_name, torch_name in pairs:
        # getattr: int64/bfloat16 are missing from TensorRT 8.x.
        if getattr(trt, trt_name, None) == dtype:
            return getattr(torch, torch_name)
    raise ValueError(f"TensorRT tensor type {dtype} has no torch equivalent")


# --------------------------------------------------------------------------------------------------
# Cache + build + validate


@dataclass
class EngineArtifact:
    """An engine ready to load: where it is, its bytes, key, and whether it was just built."""

    engine_path: Path
    engine_bytes: bytes
    key: EngineKey
    built: bool
    report: ValidationReport | None = None


def gpu_identity(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability) of a CUDA device, as the cache key records them."""
    torch = _import_torch()
    major, minor = torch.cuda.get_device_capability(device)
    return str(torch.cuda.get_device_name(device)), (int(major), int(minor))


def engine_key(onnx_path: Path | str, *, tensorrt_version: str, gpu_name: str,
               compute_capability: tuple[int, int], precision: str, profile: ShapeProfile,
               calibration_id: str = "", extra_profiles: Mapping[str, InputProfile] | None = None,
               onnx_sha256: str | None = None) -> EngineKey:
    """The cache key :func:`ensure_engine` files an engine under (pure: no TensorRT, no GPU)."""
    sha = onnx_sha256 if onnx_sha256 is not None else sha256_file(onnx_path)
    return EngineKey(sha, tensorrt_version, gpu_name, compute_capability, precision, profile,
                     calibration_id, tuple(sorted((extra_profiles or {}).items())))


def ensure_engine(onnx_path: Path | str, *, precision: Precision = "fp16",
                  profile: ShapeProfile | None = None, cache_dir: Path | str | None = None,
                  output: Path | str | None = None, device: int = 0,
                  workspace_mb: int | None = None, calibration: CalibrationData | None = None,
                  validate: bool = True, tolerance: float | None = None, validation_count: int = 3,
                  input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                  extra_profiles: Mapping[str, InputProfile] | None = None,
                  rebuild: bool = False, logger: logging.Logger | None = None,
                  validation_feeds: ValidationFeeds | None = None) -> EngineArtifact:
    """The engine for ``onnx_path``: from the cache (or ``output``) when its key matches, else built,
    checked against ONNX Runtime (unless ``validate`` is False) and stored atomically.

    A corrupt cached file is reported and rebuilt. A mismatch with ONNX Runtime raises
    :class:`~depth_perception.depth.engine_cache.EngineValidationError` and stores nothing.
    ``validation_feeds`` gives the further inputs of a multi-input graph for each validation input
    (default: noise at their opt shapes); it is not part of the key.
    """
    log = logger or _LOG
    trt_version = str(import_tensorrt().__version__)
    onnx = Path(onnx_path)
    if not onnx.is_file():
        raise ValueError(f"ONNX file {onnx} does not exist")
    profile = profile or DEFAULT_PROFILE
    extras = dict(extra_profiles or {})
    if precision == "int8" and calibration is None:
        raise ValueError("an int8 engine needs calibration images (--calib DIR)")
    images: list[Path] = []
    calib_id = ""
    if precision == "int8" and calibration is not None:
        images = list_calibration_images(calibration.directory, calibration.max_images)
        calib_id = calibration_id(images, calibration.preprocess_id)
    gpu_name, capability = gpu_identity(device)
    key = engine_key(onnx, tensorrt_version=trt_version, gpu_name=gpu_name,
                     compute_capability=capability, precision=precision, profile=profile,
                     calibration_id=calib_id, extra_profiles=extras)
    cache = EngineCache(cache_dir)
    engine_path = Path(output) if output is not None else cache.entry(key, onnx.stem).engine_path

    def cached(level: int) -> EngineArtifact | None:
        try:
            data = read_engine_file(engine_path, key, require_sidecar=True)
        except EngineKeyMismatchError as exc:
            log.log(level, "%s", exc)
            return None
        except CorruptEngineError as exc:
            log.log(level, "engine file %s is corrupt (%s): rebuilding it", exc.path, exc.reason)
            return None
        if data is None:
            return None
        log.info("using TensorRT engine %s", engine_path)
        return EngineArtifact(engine_path, data, key, built=False)

    found = None if rebuild else cached(logging.WARNING)
    if found is not None:
        return found
    # Cache entries are built under a lock (several nodes of one launch file build once); an
    # explicit --output is the user's own file and gets no lock file beside it.
    with build_lock(engine_path) if output is None else contextlib.nullcontext():
        # Another process may have built it while we waited for the lock.
        found = None if rebuild else cached(logging.DEBUG)
        if found is not None:
            return found
        job = _BuildJob(onnx, key, precision, profile, extras, engine_path, cache.directory,
                        output is not None, images, calibration, device, workspace_mb, validate,
                        tolerance, validation_count, input_name, output_name, validation_feeds)
        return _build_and_store(job, log)


@dataclass(frozen=True)
class _BuildJob:
    onnx: Path
    key: EngineKey
    precision: Precision
    profile: ShapeProfile
    extras: Mapping[str, InputProfile]
    engine_path: Path
    cache_dir: Path
    explicit_output: bool  # --output given: failing to write it is an error, not a warning
    images: Sequence[Path]
    calibration: CalibrationData | None
    device: int
    workspace_mb: int | None
    validate: bool
    tolerance: float | None
    validation_count: int
    input_name: str
    output_name: str
    validation_feeds: ValidationFeeds | None = None


def _build_and_store(job: _BuildJob, log: logging.Logger) -> EngineArtifact:
    key, profile = job.key, job.profile
    log.warning(
        "building a TensorRT %s engine from %s for input %s on %s (TensorRT %s): first run only, "
        "this can take several minutes; it will be cached as %s",
        job.precision, job.onnx, profile.describe(), key.gpu_name, key.tensorrt_version,
        job.engine_path)
    started = time.monotonic()
    calibrator: Any = None
    if job.precision == "int8" and job.calibration is not None:
        table = job.calibration.cache_file or calibration_cache_path(
            job.cache_dir, key.onnx_sha256, key.calibration_id, profile, job.onnx.stem)
        log.info("int8 calibration on %d images from %s (table %s)", len(job.images),
                 job.calibration.directory, table)
        calibrator = make_entropy_calibrator(job.images, job.calibration.preprocess,
                                             profile.nchw(profile.opt_hw), table, job.device, log)
    torch = _import_torch()
    try:
        with torch.cuda.device(job.device):
            engine_bytes = build_serialized_engine(
                job.onnx, precision=job.precision, profile=profile, workspace_mb=job.workspace_mb,
                calibrator=calibrator, input_name=job.input_name, extra_profiles=job.extras)
    except EngineBuildError:
        _raise_calibration_error(calibrator)  # the real cause, if calibration failed
        raise
    _raise_calibration_error(calibrator)
    log.warning("built the TensorRT engine in %.0f s (%.1f MB)", time.monotonic() - started,
                len(engine_bytes) / 1e6)

    report: ValidationReport | None = None
    if job.validate:
        report = _validate_built_engine(engine_bytes, job)
        log.info("TensorRT engine agrees with ONNX Runtime: worst %s", report.worst.describe())
    else:
        log.warning("the TensorRT engine was NOT checked against ONNX Runtime (validation off)")
    try:
        write_engine_file(job.engine_path, engine_bytes, key, report)
    except OSError as exc:
        if job.explicit_output:
            raise
        # A read-only home must not stop a robot: run from memory, rebuild next start.
        log.warning("could not cache the TensorRT engine at %s (%s); it will be rebuilt on the "
                    "next start: set %s to a writable folder", job.engine_path, exc, ENV_CACHE_DIR)
    return EngineArtifact(job.engine_path, engine_bytes, key, built=True, report=report)


def _raise_calibration_error(calibrator: Any) -> None:
    """The calibrator cannot raise into TensorRT, so it keeps its first error: raise it here."""
    error = getattr(calibrator, "error", None)
    if error is not None:
        raise ValueError(f"int8 calibration failed: {error}") from error


def _opt_shape(profile: InputProfile) -> tuple[int, ...]:
    if isinstance(profile, TensorProfile):
        return profile.opt_shape
    return profile.nchw(profile.opt_hw)


def _extra_validation_feeds(extras: Mapping[str, InputProfile]
                            ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Deterministic further inputs (e.g. a prompt depth in metres) at their profile's opt size."""
    def feeds(_: np.ndarray) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(1)
        return {n: rng.uniform(0.5, 5.0, _opt_shape(p)).astype(np.float32)
                for n, p in sorted(extras.items())}
    return feeds


def indexed_validation_feeds(feeds: ValidationFeeds
                             ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """:data:`ValidationFeeds` in the form :func:`validate_engine` takes (main input -> further
    inputs): distinct main inputs are numbered in the order first seen, and validation passes them
    to ONNX Runtime and to the engine in the same order, so both runs get the same further inputs."""
    seen: dict[bytes, int] = {}

    def extra(x: np.ndarray) -> dict[str, np.ndarray]:
        digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).digest()
        k = seen.setdefault(digest, len(seen))
        return {n: np.asarray(v) for n, v in feeds(k).items()}
    return extra


def _validate_built_engine(engine_bytes: bytes, job: _BuildJob) -> ValidationReport:
    runner = _EngineRunner(engine_bytes, job.engine_path, job.device, job.input_name,
                           job.output_name)
    extra_feeds: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
    if job.validation_feeds is not None:
        extra_feeds = indexed_validation_feeds(job.validation_feeds)
    elif job.extras:
        extra_feeds = _extra_validation_feeds(job.extras)
    try:
        def run(x: np.ndarray) -> np.ndarray:
            feeds: dict[str, Any] = {runner.input_name: x}
            if extra_feeds is not None:
                feeds.update(extra_feeds(x))
            out = runner.run(feeds)[runner.output_name]
            return np.asarray(out.cpu().numpy())

        return validate_engine(run, job.onnx, job.profile, job.precision, job.tolerance,
                               count=job.validation_count, input_name=job.input_name,
                               output_name=job.output_name, extra_inputs=extra_feeds)
    finally:
        runner.close()


# --------------------------------------------------------------------------------------------------
# The backend


class TensorRTBackend:
    """Depth network inference with TensorRT on one CUDA device.

    ``engine_or_onnx_path``: an ``.onnx`` file (an engine is built on first use, checked against
    ONNX Runtime and cached; see :func:`ensure_engine`) or a serialized engine (``.engine``,
    ``.plan``, ...) loaded as is.

    Use as a context manager, or call :meth:`close`; :meth:`infer` is thread-safe (one context,
    serialised by a lock).
    """

    def __init__(self, engine_or_onnx_path: Path | str, *, precision: Precision = "fp16",
                 profile: ShapeProfile | None = None, cache_dir: Path | str | None = None,
                 device: int = 0, logger: logging.Logger | None = None,
                 workspace_mb: int | None = None, calibration: CalibrationData | None = None,
                 validate: bool = True, tolerance: float | None = None,
                 input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                 extra_profiles: Mapping[str, InputProfile] | None = None,
                 validation_feeds: ValidationFeeds | None = None) -> None:
        self._log = logger or _LOG
        self._lock = threading.Lock()
        self._runner: _EngineRunner | None = None
        import_tensorrt()  # the clearest error first: no TensorRT
        _import_torch()
        path = Path(engine_or_onnx_path)
        if not path.exists():
            raise ValueError(f"{path} does not exist (expected an .onnx model or a TensorRT engine)")
        self.precision: str | None = precision
        self.artifact: EngineArtifact | None = None
        if path.suffix.lower() == ".onnx":
            self.artifact = ensure_engine(
                path, precision=precision, profile=profile, cache_dir=cache_dir, device=device,
                workspace_mb=workspace_mb, calibration=calibration, validate=validate,
                tolerance=tolerance, input_name=input_name, output_name=output_name,
                extra_profiles=extra_profiles, logger=self._log,
                validation_feeds=validation_feeds)
            self.engine_path = self.artifact.engine_path
            engine_bytes = self.artifact.engine_bytes
        else:
            data = read_engine_file(path)
            if data is None:
                raise ValueError(f"TensorRT engine {path} does not exist")
            engine_bytes, self.engine_path = data, path
            self.precision = _recorded_precision(path)
            self._log.info("loading TensorRT engine %s (not checked against ONNX Runtime here: "
                           "build it with `depth-perception build-engine` for that)", path)
        try:
            self._runner = _EngineRunner(engine_bytes, self.engine_path, device, input_name,
                                         output_name)
        except CorruptEngineError:
            if self.artifact is None or self.artifact.built:
                raise
            # A cached engine that passed its sidecar check but no longer deserializes (e.g. the
            # driver changed underneath it): rebuild once.
            self._log.warning("cached engine %s does not load: rebuilding it", self.engine_path)
            self.artifact = ensure_engine(
                path, precision=precision, profile=profile, cache_dir=cache_dir, device=device,
                workspace_mb=workspace_mb, calibration=calibration, validate=validate,
                tolerance=tolerance, input_name=input_name, output_name=output_name,
                extra_profiles=extra_profiles, rebuild=True, logger=self._log,
                validation_feeds=validation_feeds)
            self._runner = _EngineRunner(self.artifact.engine_bytes, self.engine_path, device,
                                         input_name, output_name)
        self.input_name = self._runner.input_name
        self.output_name = self._runner.output_name
        self.device = self._runner.device

    # -- introspection ---------------------------------------------------------------------------

    @property
    def input_names(self) -> list[str]:
        return list(self._require().input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._require().output_names)

    def profile_shapes(self, name: str | None = None
                       ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) N x C x H x W the engine accepts for an input (default: the main one)."""
        return self._require().profiles[name or self.input_name]

    def buffer(self, name: str) -> Any:
        """The persistent device buffer of an IO tensor (reused while shapes stay the same)."""
        return self._require().buffer(name)

    # -- inference -------------------------------------------------------------------------------

    def infer(self, pixel_values: Any) -> Any:
        """``pixel_values`` (torch tensor on any device, or numpy float32, N x 3 x H x W, normalised)
        -> the network's output as a float32 CUDA tensor N x H x W (stays on the GPU)."""
        depth = self.infer_all({self.input_name: pixel_values})[self.output_name]
        if depth.dim() == 4 and depth.shape[1] == 1:
            depth = depth[:, 0]
        return depth

    def infer_all(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Every input by name -> every output by name (float32 CUDA tensors)."""
        with self._lock:
            return self._require().run(feeds)

    # -- ownership -------------------------------------------------------------------------------

    def _require(self) -> _EngineRunner:
        if self._runner is None:
            raise RuntimeError("this TensorRTBackend is closed")
        return self._runner

    def close(self) -> None:
        """Free the execution context, engine, runtime, stream and buffers. Idempotent."""
        with self._lock:
            runner, self._runner = self._runner, None
            if runner is not None:
                runner.close()

    def __enter__(self) -> "TensorRTBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recorded_precision(engine_path: Path) -> str | None:
    """The precision an engine's sidecar records, if it has one."""
    try:
        key = read_sidecar(engine_path).get("key") or {}
    except CorruptEngineError:
        return None
    value = key.get("precision") if isinstance(key, dict) else None
    return str(value) if value else None
