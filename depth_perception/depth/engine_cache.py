"""TensorRT engine cache: engines on disk under a directory, found by their key.

Nothing here (nor in the modules below) imports TensorRT, so all of it runs and is tested without
a GPU. The cache is made of four parts, each in its own module and all importable from here:

- :mod:`.engine_profiles`: the input shape ranges an engine accepts (:class:`ShapeProfile`,
  N x C x H x W pixels; :class:`TensorProfile`, any rank);
- :mod:`.engine_keys`: what an engine depends on (:class:`EngineKey`: ONNX sha256, TensorRT
  version, GPU, precision, profiles) and the file names derived from it;
- :mod:`.engine_files`: atomic writes, JSON sidecars (with an int8 engine's calibration set),
  integrity checks, the build lock;
- :mod:`.engine_validation`: the comparison of a built engine with ONNX Runtime.

Layout of a cache directory (default ``~/.cache/depth_perception/engines``, or
``$DEPTH_PERCEPTION_CACHE``)::

    <onnx stem>.<precision>.<profile>.<16 hex of the key digest>.engine   serialized engine
    <same name>.json                                                       sidecar: key fields,
                                                                           engine size + sha256,
                                                                           validation results
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engine_files import (
    SIDECAR_VERSION,
    CalibrationRecord,
    CorruptEngineError,
    EngineKeyMismatchError,
    atomic_write_bytes,
    atomic_write_json,
    build_lock,
    read_engine_file,
    read_sidecar,
    recorded_calibration,
    write_engine_file,
)
from .engine_keys import (
    ENV_CACHE_DIR,
    IMAGE_SUFFIXES,
    PRECISIONS,
    EngineCacheError,
    EngineKey,
    calibration_cache_path,
    calibration_id,
    check_precision,
    default_cache_dir,
    list_calibration_images,
    sha256_file,
    sidecar_path,
)
from .engine_profiles import (
    InputProfile,
    ShapeProfile,
    TensorProfile,
    format_hw,
    format_shape,
    parse_hw,
)
from .engine_validation import (
    DEFAULT_TOLERANCE,
    EngineValidationError,
    ValidationReport,
    ValidationResult,
    check_against_reference,
    compare_outputs,
    make_validation_inputs,
    onnxruntime_reference,
    validate_engine,
    validation_input_shapes,
)

__all__ = [
    "CacheEntry", "EngineCache",
    # engine_files
    "SIDECAR_VERSION", "CalibrationRecord", "CorruptEngineError", "EngineKeyMismatchError",
    "atomic_write_bytes", "atomic_write_json", "build_lock", "read_engine_file", "read_sidecar",
    "recorded_calibration", "write_engine_file",
    # engine_keys
    "ENV_CACHE_DIR", "IMAGE_SUFFIXES", "PRECISIONS", "EngineCacheError", "EngineKey",
    "calibration_cache_path", "calibration_id", "check_precision", "default_cache_dir",
    "list_calibration_images", "sha256_file", "sidecar_path",
    # engine_profiles
    "InputProfile", "ShapeProfile", "TensorProfile", "format_hw", "format_shape", "parse_hw",
    # engine_validation
    "DEFAULT_TOLERANCE", "EngineValidationError", "ValidationReport", "ValidationResult",
    "check_against_reference", "compare_outputs", "make_validation_inputs",
    "onnxruntime_reference", "validate_engine", "validation_input_shapes",
]


@dataclass(frozen=True)
class CacheEntry:
    engine_path: Path

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.engine_path)

    def exists(self) -> bool:
        return self.engine_path.exists()


class EngineCache:
    """Engines on disk under a directory, found by :class:`EngineKey`. Holds no open files."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()

    def entry(self, key: EngineKey, stem: str = "model") -> CacheEntry:
        return CacheEntry(self.directory / key.file_name(stem))

    def load(self, entry: CacheEntry, key: EngineKey | None = None) -> bytes | None:
        """The engine's bytes, ``None`` if there is no entry; :class:`CorruptEngineError` if the
        file is truncated, altered, lacks its sidecar, or was recorded under another key."""
        return read_engine_file(entry.engine_path, key, require_sidecar=True)

    def store(self, entry: CacheEntry, key: EngineKey, engine: bytes,
              report: ValidationReport | None = None,
              calibration: CalibrationRecord | None = None) -> Path:
        write_engine_file(entry.engine_path, engine, key, report, calibration)
        return entry.engine_path

    def remove(self, entry: CacheEntry) -> None:
        for p in (entry.engine_path, entry.sidecar_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

