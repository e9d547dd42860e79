"""The engine for an ONNX file: found in the cache, or built, checked against ONNX Runtime and stored.

:func:`ensure_engine` computes the cache key (ONNX sha256, TensorRT version, GPU, precision, shape
profiles), loads a matching engine, and otherwise builds one under a lock
(several processes started together build it once), compares it with ONNX Runtime on random
inputs inside the profile (:mod:`.engine_validation`) and writes it with its sidecar
(:mod:`.engine_files`). A corrupt cached entry is reported and rebuilt; an engine that disagrees
with ONNX Runtime is refused with the measured error and nothing is stored.

int8: the calibration images are recorded in the sidecar, not in the key, so an int8 engine built
by ``build-engine --int8 --calib DIR`` is found by anyone asking for int8 with the same graph and
profiles (the node gives no images); a build with other images replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .engine_cache import EngineCache
from .engine_files import (
    CalibrationRecord,
    CorruptEngineError,
    EngineKeyMismatchError,
    build_lock,
    read_engine_file,
    recorded_calibration,
    write_engine_file,
)
from .engine_keys import (
    ENV_CACHE_DIR,
    EngineKey,
    calibration_cache_path,
    calibration_id,
    list_calibration_images,
    sha256_file,
)
from .engine_profiles import InputProfile, ShapeProfile, TensorProfile
from .engine_validation import ValidationReport, validate_engine
from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .tensorrt_build import DEFAULT_PROFILE, EngineBuildError, Precision, build_serialized_engine
from .tensorrt_calibration import CalibrationData, make_entropy_calibrator, raise_calibration_error
from .tensorrt_import import BACKEND_LOG, gpu_identity, import_tensorrt, import_torch_cuda
from .tensorrt_runtime import EngineRunner

# k (0, 1, 2, ...: the k-th validation input) -> the further inputs of a multi-input graph to run it
# with. Deterministic in k. For graphs whose further inputs need meaningful values and several
# shapes (SAM's decoder: prompt points and labels over the prompt/point profile); the default is
# uniform noise at each further input's opt shape.
ValidationFeeds = Callable[[int], Mapping[str, np.ndarray]]


@dataclass
class EngineArtifact:
    """An engine ready to load: where it is, its bytes, key, and whether it was just built."""

    engine_path: Path
    engine_bytes: bytes
    key: EngineKey
    built: bool
    report: ValidationReport | None = None
    # int8: the calibration images it was built with (from its sidecar when found in the cache)
    calibration: CalibrationRecord | None = None


def engine_key(onnx_path: Path | str, *, tensorrt_version: str, gpu_name: str,
               compute_capability: tuple[int, int], precision: str, profile: ShapeProfile,
               extra_profiles: Mapping[str, InputProfile] | None = None,
               onnx_sha256: str | None = None) -> EngineKey:
    """The cache key :func:`ensure_engine` files an engine under and looks it up with (pure: no
    TensorRT, no GPU). The same for an int8 engine whatever its calibration images."""
    sha = onnx_sha256 if onnx_sha256 is not None else sha256_file(onnx_path)
    return EngineKey(sha, tensorrt_version, gpu_name, compute_capability, precision, profile,
                     tuple(sorted((extra_profiles or {}).items())))


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
    int8 without ``calibration`` uses the cached int8 engine (whatever images calibrated it) and
    cannot build one; with ``calibration``, a cached engine calibrated on other images is rebuilt.
    ``validation_feeds`` gives the further inputs of a multi-input graph for each validation input
    (default: noise at their opt shapes); it is not part of the key.
    """
    log = logger or BACKEND_LOG
    trt_version = str(import_tensorrt().__version__)
    onnx = Path(onnx_path)
    if not onnx.is_file():
        raise ValueError(f"ONNX file {onnx} does not exist")
    profile = profile or DEFAULT_PROFILE
    extras = dict(extra_profiles or {})
    images: list[Path] = []
    wanted: CalibrationRecord | None = None
    if precision == "int8" and calibration is not None:
        images = list_calibration_images(calibration.directory, calibration.max_images)
        wanted = CalibrationRecord(calibration_id(images, calibration.preprocess_id), len(images),
                                   str(calibration.directory), calibration.preprocess_id)
    gpu_name, capability = gpu_identity(device)
    key = engine_key(onnx, tensorrt_version=trt_version, gpu_name=gpu_name,
                     compute_capability=capability, precision=precision, profile=profile,
                     extra_profiles=extras)
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
        record = recorded_calibration(engine_path) if precision == "int8" else None
        if wanted is not None and (record is None or record.calibration_id != wanted.calibration_id):
            log.log(level, "int8 engine %s was %s: recalibrating on %d images from %s", engine_path,
                    record.describe() if record else "not calibrated by this package",
                    wanted.images, wanted.directory)
            return None
        log.info("using TensorRT engine %s%s", engine_path, f" ({record.describe()})" if record else "")
        return EngineArtifact(engine_path, data, key, built=False, calibration=record)

    found = None if rebuild else cached(logging.WARNING)
    if found is not None:
        return found
    if precision == "int8" and calibration is None:
        raise ValueError(
            f"no int8 TensorRT engine for {onnx} at input {profile.describe()} on {gpu_name} "
            f"(TensorRT {trt_version}) in {engine_path.parent}: build it once with "
            f"`depth-perception build-engine --onnx {onnx} --model MODEL --int8 --calib DIR` "
            "(same model and --input-size as this node), or use fp16")
    # Cache entries are built under a lock (several nodes of one launch file build once); an
    # explicit --output is the user's own file and gets no lock file beside it.
    with build_lock(engine_path) if output is None else contextlib.nullcontext():
        # Another process may have built it while we waited for the lock.
        found = None if rebuild else cached(logging.DEBUG)
        if found is not None:
            return found
        job = _BuildJob(onnx, key, precision, profile, extras, engine_path, cache.directory,
                        output is not None, images, calibration, device, workspace_mb, validate,
                        tolerance, validation_count, input_name, output_name, validation_feeds,
                        wanted)
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
    calibration_record: CalibrationRecord | None = None


def unparseable_ops_note(onnx_path: Path, tensorrt_version: str) -> str | None:
    """A line naming the operators of ``onnx_path`` that onnx-tensorrt's tables
    (:mod:`.engine_onnx_ops`) say TensorRT ``tensorrt_version`` cannot import, and what to do; None
    when there are none, or when the ``onnx`` package cannot read the file (TensorRT will say so).
    Advice, not a verdict: the tables lag TensorRT releases, so TensorRT's parser decides."""
    from .engine_onnx_ops import describe_unsupported, unsupported_ops

    try:
        found = unsupported_ops(onnx_path, tensorrt_version)
    except Exception:  # noqa: BLE001 - onnx absent or the file not ONNX
        return None
    if not found:
        return None
    return (f"{describe_unsupported(found, tensorrt_version)} in {onnx_path}: re-export it with "
            f"`depth-perception export --tensorrt {tensorrt_version}` (or on this machine), or run "
            "the model on the onnxruntime or torch backend")


def _build_and_store(job: _BuildJob, log: logging.Logger) -> EngineArtifact:
    key, profile = job.key, job.profile
    ops_note = unparseable_ops_note(job.onnx, key.tensorrt_version)
    if ops_note:
        log.warning("%s", ops_note)
    log.warning(
        "building a TensorRT %s engine from %s for input %s on %s (TensorRT %s): first run only, "
        "this can take several minutes; it will be cached as %s",
        job.precision, job.onnx, profile.describe(), key.gpu_name, key.tensorrt_version,
        job.engine_path)
    started = time.monotonic()
    calibrator: Any = None
    if job.precision == "int8" and job.calibration is not None and job.calibration_record is not None:
        table = job.calibration.cache_file or calibration_cache_path(
            job.cache_dir, key.onnx_sha256, job.calibration_record.calibration_id, profile,
            job.onnx.stem)
        log.info("int8 calibration on %d images from %s (table %s)", len(job.images),
                 job.calibration.directory, table)
        calibrator = make_entropy_calibrator(job.images, job.calibration.preprocess,
                                             profile.nchw(profile.opt_hw), table, job.device, log)
    torch = import_torch_cuda()
    try:
        with torch.cuda.device(job.device):
            engine_bytes = build_serialized_engine(
                job.onnx, precision=job.precision, profile=profile, workspace_mb=job.workspace_mb,
                calibrator=calibrator, input_name=job.input_name, extra_profiles=job.extras)
    except EngineBuildError as exc:
        raise_calibration_error(calibrator)  # the real cause, if calibration failed
        if ops_note:
            raise EngineBuildError(f"{exc}; {ops_note}") from exc
        raise
    raise_calibration_error(calibrator)
    log.warning("built the TensorRT engine in %.0f s (%.1f MB)", time.monotonic() - started,
                len(engine_bytes) / 1e6)

    report: ValidationReport | None = None
    if job.validate:
        report = _validate_built_engine(engine_bytes, job)
        log.info("TensorRT engine agrees with ONNX Runtime: worst %s", report.worst.describe())
    else:
        log.warning("the TensorRT engine was NOT checked against ONNX Runtime (validation off)")
    try:
        write_engine_file(job.engine_path, engine_bytes, key, report, job.calibration_record)
    except OSError as exc:
        if job.explicit_output:
            raise
        # A read-only home must not stop a robot: run from memory, rebuild next start.
        log.warning("could not cache the TensorRT engine at %s (%s); it will be rebuilt on the "
                    "next start: set %s to a writable folder", job.engine_path, exc, ENV_CACHE_DIR)
    return EngineArtifact(job.engine_path, engine_bytes, key, built=True, report=report,
                          calibration=job.calibration_record)


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
    runner = EngineRunner(engine_bytes, job.engine_path, job.device, job.input_name,
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
