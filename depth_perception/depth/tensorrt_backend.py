"""TensorRT backend: ONNX -> cached, validated engine -> inference on torch CUDA tensors.

:class:`TensorRTBackend` takes pixel values (N x 3 x H x W float32, normalised) and gives the
network's output as a float32 CUDA tensor (N x H x W: relative inverse depth or metres, per the
model), staying on the GPU. It owns its runtime, engine, execution context, stream and buffers, and
frees them in :meth:`TensorRTBackend.close` (or on leaving a ``with`` block).

The stages live in their own modules, and their public names are importable from here too:

- :mod:`.tensorrt_import`: importing TensorRT and torch on first use, supported versions (>= 8.5);
- :mod:`.tensorrt_build`: ONNX -> serialized engine (builder config, optimization profiles);
- :mod:`.tensorrt_calibration`: int8 calibration images and table;
- :mod:`.tensorrt_runtime`: a deserialized engine running on torch CUDA buffers and one stream;
- :mod:`.tensorrt_engines`: cache lookup, build, ONNX Runtime check and storage
  (:func:`ensure_engine`).

``import tensorrt`` and ``import torch`` happen on first use, so this module imports (and its pure
helpers run) where neither is installed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from .engine_files import CorruptEngineError, read_engine_file, read_sidecar
from .engine_profiles import InputProfile, ShapeProfile
from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .tensorrt_build import (
    DEFAULT_PROFILE,
    EngineBuildError,
    Precision,
    build_serialized_engine,
    input_profiles,
    pick_input_name,
    resolve_input_profile,
    resolve_profile,
)
from .tensorrt_calibration import (
    IMAGENET_PREPROCESS_ID,
    CalibrationData,
    PreprocessFn,
    imagenet_preprocess,
    make_entropy_calibrator,
    spec_preprocess,
)
from .tensorrt_engines import (
    EngineArtifact,
    ValidationFeeds,
    engine_key,
    ensure_engine,
    indexed_validation_feeds,
)
from .tensorrt_import import (
    BACKEND_LOG,
    MIN_TENSORRT,
    TensorRTUnavailableError,
    TensorRTVersionError,
    check_tensorrt_version,
    gpu_identity,
    import_tensorrt,
    import_torch_cuda,
    needs_explicit_batch_flag,
    parse_tensorrt_version,
    tensorrt_available,
)
from .tensorrt_runtime import EngineRunner, HostEngineRunner, make_runner

__all__ = [
    "TensorRTBackend",
    # tensorrt_build
    "DEFAULT_PROFILE", "EngineBuildError", "Precision", "build_serialized_engine",
    "input_profiles", "pick_input_name", "resolve_input_profile", "resolve_profile",
    # tensorrt_calibration
    "IMAGENET_PREPROCESS_ID", "CalibrationData", "PreprocessFn", "imagenet_preprocess",
    "make_entropy_calibrator", "spec_preprocess",
    # tensorrt_engines
    "EngineArtifact", "ValidationFeeds", "engine_key", "ensure_engine",
    "indexed_validation_feeds",
    # tensorrt_import
    "MIN_TENSORRT", "TensorRTUnavailableError", "TensorRTVersionError", "check_tensorrt_version",
    "gpu_identity", "import_tensorrt", "needs_explicit_batch_flag", "parse_tensorrt_version",
    "tensorrt_available",
]


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
        self._log = logger or BACKEND_LOG
        self._lock = threading.Lock()
        self._runner: EngineRunner | HostEngineRunner | None = None
        import_tensorrt()  # the clearest error first: no TensorRT
        path = Path(engine_or_onnx_path)
        if not path.exists():
            raise ValueError(f"{path} does not exist (expected an .onnx model or a TensorRT engine)")
        self.precision: str | None = precision
        self.artifact: EngineArtifact | None = None
        if path.suffix.lower() == ".onnx":
            # building, calibrating and checking an engine use torch's CUDA tensors; running a
            # built one does not (make_runner: cuda-python buffers when torch is not imported)
            import_torch_cuda()
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
            self._runner = make_runner(engine_bytes, self.engine_path, device, input_name,
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
            self._runner = make_runner(self.artifact.engine_bytes, self.engine_path, device,
                                       input_name, output_name)
        self.input_name = self._runner.input_name
        self.output_name = self._runner.output_name
        self.device = self._runner.device

    # -- introspection ---------------------------------------------------------------------------

    @property
    def host_arrays(self) -> bool:
        """Whether inputs and outputs are numpy host arrays (the torch-free runner) rather than
        torch CUDA tensors."""
        return isinstance(self._require(), HostEngineRunner)

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
        -> the network's output, float32 N x H x W: a CUDA tensor (stays on the GPU), or a numpy
        array from the torch-free runner (:attr:`host_arrays`)."""
        depth = self.infer_all({self.input_name: pixel_values})[self.output_name]
        if depth.ndim == 4 and depth.shape[1] == 1:
            depth = depth[:, 0]
        return depth

    def infer_all(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Every input by name -> every output by name (float32 CUDA tensors, or numpy arrays when
        :attr:`host_arrays`)."""
        with self._lock:
            return self._require().run(feeds)

    def execute_bound(self) -> Any:
        """Run the engine once on the device buffers the last :meth:`infer` filled, without copies;
        returns the torch CUDA stream it is queued on (:meth:`EngineRunner.execute`). For measuring
        the engine's own time; the torch runner only."""
        with self._lock:
            runner = self._require()
            if not isinstance(runner, EngineRunner):
                raise RuntimeError("execute_bound needs the torch runner (import torch before "
                                   "loading the engine)")
            return runner.execute()

    # -- ownership -------------------------------------------------------------------------------

    def _require(self) -> EngineRunner | HostEngineRunner:
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
