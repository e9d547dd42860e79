"""TensorRT engine cache: keys, file names, atomic writes, sidecars and the ONNX Runtime check.

Nothing here imports TensorRT, so all of it runs (and is tested) on machines without a GPU.

An engine is only valid for the exact ONNX graph, TensorRT version, GPU model, precision and input
shape range it was built for, so the cache key is all of them::

    key = (sha256 of the ONNX bytes, TensorRT version, GPU name, compute capability,
           precision, shape profile[, calibration data id for int8])

Layout of a cache directory (default ``~/.cache/depth_perception/engines``, or
``$DEPTH_PERCEPTION_CACHE``)::

    <onnx stem>.<precision>.<profile>.<16 hex of the key digest>.engine   serialized engine
    <same name>.json                                                       sidecar: key fields,
                                                                           engine size + sha256,
                                                                           validation results

Both files are written atomically (temporary file in the same directory, fsync, rename), the engine
first: an entry without its sidecar is an interrupted write and is reported as corrupt, never used.

Every newly built engine is compared with ONNX Runtime on a few random inputs inside its shape
profile before it is stored (:func:`validate_engine`); peers have shipped engines that give wrong
depth on some TensorRT versions, and the only reliable defence is to measure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np

ENV_CACHE_DIR = "DEPTH_PERCEPTION_CACHE"
PRECISIONS = ("fp32", "fp16", "int8")
# Relative error (max |TensorRT - ONNX Runtime| over the reference output's range) accepted per
# precision. fp32 engines still use TF32 matmuls on Ampere+ (TensorRT's default), hence not 1e-5;
# broken engines seen in the wild are off by tens of percent, far above all of these.
DEFAULT_TOLERANCE = {"fp32": 1e-2, "fp16": 5e-2, "int8": 0.15}
SIDECAR_VERSION = 1
_CHUNK = 1 << 20


class EngineCacheError(ValueError):
    """A cache entry or a cache argument is unusable."""


class CorruptEngineError(EngineCacheError):
    """An engine file is truncated, altered, or not loadable; it names the file and the defect."""

    def __init__(self, path: Path | str, reason: str, message: str | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(message or f"engine file {self.path} is corrupt: {reason}; delete it to "
                         "rebuild (the TensorRT backend rebuilds cache entries by itself)")


class EngineKeyMismatchError(CorruptEngineError):
    """An engine file's sidecar records another configuration (model, GPU, TensorRT, precision...)."""

    def __init__(self, path: Path | str, recorded: object) -> None:
        self.recorded = recorded
        super().__init__(path, "built for another configuration",
                         f"engine file {path} was built for another configuration ({recorded!r}); "
                         "it will be rebuilt for this one")


class EngineValidationError(ValueError):
    """A built engine disagrees with ONNX Runtime beyond the tolerance; carries the measurements."""

    def __init__(self, message: str, results: Sequence["ValidationResult"]) -> None:
        self.results = list(results)
        super().__init__(message)


# --------------------------------------------------------------------------------------------------
# Shape profiles


def parse_hw(text: str) -> tuple[int, int]:
    """``"518x392"`` -> ``(518, 392)`` (height, width in pixels); ``"518"`` means 518x518."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", text)
    if not match:
        raise ValueError(f"bad size {text!r}: expected HxW in pixels, e.g. 518x518 or 364x644")
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) is not None else h
    if h <= 0 or w <= 0:
        raise ValueError(f"bad size {text!r}: height and width must be > 0")
    return h, w


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


@dataclass(frozen=True)
class ShapeProfile:
    """The range of input sizes an engine accepts: N x C x H x W with min <= opt <= max per axis.

    TensorRT tunes kernels for ``opt_hw`` and refuses sizes outside ``[min_hw, max_hw]``.
    """

    min_hw: tuple[int, int]
    opt_hw: tuple[int, int]
    max_hw: tuple[int, int]
    batch: int = 1
    channels: int = 3

    def __post_init__(self) -> None:
        for label, hw in (("min", self.min_hw), ("opt", self.opt_hw), ("max", self.max_hw)):
            if len(hw) != 2 or any(int(v) != v or v <= 0 for v in hw):
                raise ValueError(f"shape profile {label} size {hw!r} must be two positive ints (H, W)")
        for axis, name in ((0, "height"), (1, "width")):
            lo, mid, hi = self.min_hw[axis], self.opt_hw[axis], self.max_hw[axis]
            if not lo <= mid <= hi:
                raise ValueError(f"shape profile {self.describe()}: {name} needs min <= opt <= max, "
                                 f"got {lo}, {mid}, {hi}")
        if self.batch <= 0 or self.channels <= 0:
            raise ValueError(f"shape profile batch ({self.batch}) and channels ({self.channels}) "
                             "must be > 0")

    @classmethod
    def fixed(cls, height: int, width: int, batch: int = 1, channels: int = 3) -> "ShapeProfile":
        return cls((height, width), (height, width), (height, width), batch, channels)

    @classmethod
    def from_text(cls, min_hw: str | None, opt_hw: str | None, max_hw: str | None,
                  default_hw: tuple[int, int] = (518, 518)) -> "ShapeProfile":
        """Profile from ``HxW`` strings: opt defaults to ``default_hw``, min and max to opt."""
        opt = parse_hw(opt_hw) if opt_hw else default_hw
        return cls(parse_hw(min_hw) if min_hw else opt, opt, parse_hw(max_hw) if max_hw else opt)

    @property
    def is_fixed(self) -> bool:
        return self.min_hw == self.max_hw

    def nchw(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, hw[0], hw[1])

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) N x C x H x W shapes, as TensorRT's optimization profile wants them."""
        return self.nchw(self.min_hw), self.nchw(self.opt_hw), self.nchw(self.max_hw)

    def contains(self, height: int, width: int) -> bool:
        return (self.min_hw[0] <= height <= self.max_hw[0]
                and self.min_hw[1] <= width <= self.max_hw[1])

    def describe(self) -> str:
        """``518x518`` when fixed, else ``min 266x266 / opt 518x518 / max 784x784``."""
        if self.is_fixed:
            return format_hw(self.opt_hw)
        return (f"min {format_hw(self.min_hw)} / opt {format_hw(self.opt_hw)} / "
                f"max {format_hw(self.max_hw)}")

    def token(self) -> str:
        """File-name-safe text: ``518x518`` or ``266x266-518x518-784x784`` (batch if not 1)."""
        text = format_hw(self.opt_hw) if self.is_fixed else "-".join(
            format_hw(hw) for hw in (self.min_hw, self.opt_hw, self.max_hw))
        return text if self.batch == 1 else f"b{self.batch}-{text}"

    def as_dict(self) -> dict[str, Any]:
        return {"min_hw": list(self.min_hw), "opt_hw": list(self.opt_hw),
                "max_hw": list(self.max_hw), "batch": self.batch, "channels": self.channels}


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


@dataclass(frozen=True)
class TensorProfile:
    """The range of shapes of an input of any rank (e.g. SAM's point_coords B x P x 2), for the
    further inputs of a graph that :class:`ShapeProfile` (N x C x H x W) does not describe.

    TensorRT tunes kernels for ``opt_shape`` and refuses shapes outside ``[min_shape, max_shape]``.
    """

    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shapes = (("min", self.min_shape), ("opt", self.opt_shape), ("max", self.max_shape))
        for label, shape in shapes:
            if not shape or any(isinstance(d, bool) or int(d) != d or d <= 0 for d in shape):
                raise ValueError(f"tensor profile {label} shape {shape!r} must be positive ints")
        if not len(self.min_shape) == len(self.opt_shape) == len(self.max_shape):
            raise ValueError(f"tensor profile {self.describe()}: min, opt and max need the same rank")
        for axis, (lo, mid, hi) in enumerate(zip(self.min_shape, self.opt_shape, self.max_shape)):
            if not lo <= mid <= hi:
                raise ValueError(f"tensor profile {self.describe()}: axis {axis} needs "
                                 f"min <= opt <= max, got {lo}, {mid}, {hi}")

    @classmethod
    def fixed(cls, shape: Sequence[int]) -> "TensorProfile":
        s = tuple(int(d) for d in shape)
        return cls(s, s, s)

    @property
    def is_fixed(self) -> bool:
        return self.min_shape == self.max_shape

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max), as TensorRT's optimization profile wants them."""
        return self.min_shape, self.opt_shape, self.max_shape

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min_shape) and all(
            lo <= int(s) <= hi for lo, s, hi in zip(self.min_shape, shape, self.max_shape))

    def describe(self) -> str:
        """``1x2x2`` when fixed, else ``min 1x1x2 / opt 4x2x2 / max 16x8x2``."""
        if self.min_shape == self.opt_shape == self.max_shape:
            return format_shape(self.opt_shape)
        return (f"min {format_shape(self.min_shape)} / opt {format_shape(self.opt_shape)} / "
                f"max {format_shape(self.max_shape)}")

    def as_dict(self) -> dict[str, Any]:
        return {"min_shape": list(self.min_shape), "opt_shape": list(self.opt_shape),
                "max_shape": list(self.max_shape)}


# Either kind of profile, for the further inputs of a multi-input graph.
InputProfile = Union[ShapeProfile, TensorProfile]


# --------------------------------------------------------------------------------------------------
# Keys and file names


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (ONNX files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on; equal keys mean interchangeable engines."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    profile: ShapeProfile
    # int8 only: identifies the calibration images (see calibration_id); "" otherwise.
    calibration_id: str = ""
    # Shape profiles of further dynamic inputs (e.g. Prompt Depth Anything's prompt_depth, SAM's
    # point_coords / point_labels).
    extra_profiles: tuple[tuple[str, InputProfile], ...] = ()

    def __post_init__(self) -> None:
        _check_precision(self.precision)
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")

    def fields(self) -> dict[str, Any]:
        """JSON-ready key fields (what the sidecar records and the digest covers)."""
        return {
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "precision": self.precision,
            "profile": self.profile.as_dict(),
            "calibration_id": self.calibration_id,
            "extra_profiles": {name: p.as_dict() for name, p in self.extra_profiles},
        }

    def digest(self) -> str:
        """sha256 of the canonical JSON of :meth:`fields`: stable across runs, machines, Pythons."""
        canonical = json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def file_name(self, stem: str = "model") -> str:
        """``<stem>.<precision>.<profile>.<digest16>.engine``: readable and collision-safe."""
        return f"{_safe_stem(stem)}.{self.precision}.{self.profile.token()}.{self.digest()[:16]}.engine"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_calibration_images(directory: Path | str, limit: int | None = None) -> list[Path]:
    """Image files directly in ``directory``, sorted by name, at most ``limit`` (evenly spread)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"calibration folder {root} does not exist or is not a folder")
    images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"calibration folder {root} has no images ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None and 0 < limit < len(images):
        # Evenly spaced rather than the first N: folders are often consecutive video frames.
        picks = np.linspace(0, len(images) - 1, limit).round().astype(int)
        images = [images[i] for i in sorted(set(picks.tolist()))]
    return images


def calibration_id(images: Sequence[Path | str], preprocess_id: str = "") -> str:
    """Hex sha256 over the calibration images' names and bytes (and the pre-processing's id):
    int8 engines and calibration tables depend on exactly these."""
    digest = hashlib.sha256(preprocess_id.encode("utf-8"))
    for p in images:
        digest.update(Path(p).name.encode("utf-8") + b"\0")
        digest.update(bytes.fromhex(sha256_file(p)))
    return digest.hexdigest()


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$DEPTH_PERCEPTION_CACHE`` if set, else ``~/.cache/depth_perception/engines``."""
    env = os.environ if environ is None else environ
    override = env.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "depth_perception" / "engines"


def sidecar_path(engine_path: Path | str) -> Path:
    """``foo.engine`` -> ``foo.json`` (``foo.plan`` -> ``foo.json``; other names get ``.json`` added)."""
    p = Path(engine_path)
    return p.with_suffix(".json") if p.suffix in (".engine", ".plan", ".trt") else Path(f"{p}.json")


def _safe_stem(stem: str) -> str:
    """A file-name-safe, bounded form of a model name for cache file names."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:64] or "model"


def calibration_cache_path(cache_dir: Path | str, onnx_sha256: str, calibration_id: str,
                           profile: ShapeProfile, stem: str = "model") -> Path:
    """Where TensorRT's int8 calibration table for (ONNX, images, input size) is kept."""
    return Path(cache_dir) / (f"{_safe_stem(stem)}.{onnx_sha256[:16]}.{calibration_id[:16]}."
                              f"{format_hw(profile.opt_hw)}.calib")


# --------------------------------------------------------------------------------------------------
# Atomic file writes


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part.

    The temporary file lives in the target directory (rename is only atomic within a filesystem)
    and is fsynced before the rename, so a power cut cannot leave a renamed-but-empty engine.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return target


@contextlib.contextmanager
def build_lock(engine_path: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``<engine>.lock`` while building, so that processes started
    together (several nodes of one launch file) build an engine once; the others wait, then find
    it in the cache. Advisory (flock), released when the process dies."""
    import fcntl  # POSIX only; imported here so the module still imports elsewhere

    lock_path = Path(f"{engine_path}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a+b")
    except OSError:
        yield  # a read-only cache: nothing will be stored anyway, so nothing to serialise
        return
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def atomic_write_json(path: Path | str, obj: Mapping[str, Any]) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# Validation against ONNX Runtime


@dataclass(frozen=True)
class ValidationResult:
    """One input's comparison of a candidate output (TensorRT) with the reference (ONNX Runtime).

    ``relative_error`` = max |candidate - reference| / (max - min of reference): an error of 0.05
    means the worst pixel is off by 5 % of the depth range the network predicted.
    """

    input_shape: tuple[int, ...]
    max_abs_error: float
    output_range: float
    relative_error: float
    tolerance: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return math.isfinite(self.relative_error) and self.relative_error <= self.tolerance

    def describe(self) -> str:
        text = (f"input {format_shape(self.input_shape)}: relative error {self.relative_error:.3g} "
                f"(max |diff| {self.max_abs_error:.3g} over output range {self.output_range:.3g}), "
                f"tolerance {self.tolerance:.3g}")
        return f"{text}; {self.detail}" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        for k in ("max_abs_error", "relative_error"):  # JSON has no inf/nan
            d[k] = d[k] if math.isfinite(d[k]) else None
        return d


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, tolerance: float,
                    input_shape: Sequence[int] = ()) -> ValidationResult:
    """Compare a candidate output with the reference (any equal shapes, float).

    Non-finite candidate values or a shape mismatch give an infinite error (never ``ok``).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    shape = tuple(int(d) for d in input_shape)
    finite_ref = ref[np.isfinite(ref)]
    output_range = float(finite_ref.max() - finite_ref.min()) if finite_ref.size else 0.0
    if ref.shape != cand.shape:
        return ValidationResult(shape, math.inf, output_range, math.inf, tolerance,
                                f"output shape {cand.shape} != ONNX Runtime's {ref.shape}")
    bad = int(np.count_nonzero(~np.isfinite(cand)))
    if bad:
        return ValidationResult(shape, math.inf, output_range, math.inf, tolerance,
                                f"{bad} non-finite values (NaN/Inf) in the engine's output")
    max_abs = float(np.max(np.abs(cand - ref))) if ref.size else 0.0
    # A constant reference has no range: fall back to its magnitude so the ratio stays meaningful.
    scale = output_range if output_range > 0 else max(float(np.max(np.abs(finite_ref), initial=0.0)),
                                                     1e-12)
    return ValidationResult(shape, max_abs, output_range, max_abs / scale, tolerance)


def validation_input_shapes(profile: ShapeProfile, count: int = 3, seed: int = 0,
                            multiple: int = 1) -> list[tuple[int, int, int, int]]:
    """``count`` input shapes to check an engine at: opt, min and max first, then random sizes in
    range (a fixed profile repeats its one size; the random inputs still differ).

    ``multiple`` snaps random sizes to a multiple (e.g. a ViT patch size) inside the profile.
    """
    if count <= 0:
        raise ValueError(f"validation needs at least one input, got count={count}")
    shapes: list[tuple[int, int, int, int]] = []
    for hw in (profile.opt_hw, profile.min_hw, profile.max_hw):
        s = profile.nchw(hw)
        if s not in shapes:
            shapes.append(s)
    rng = np.random.default_rng(seed)
    attempts = 0
    while len(shapes) < count and attempts < 100 * count:
        attempts += 1
        size: list[int] = []
        for axis in (0, 1):
            lo = -(-profile.min_hw[axis] // multiple) * multiple
            hi = (profile.max_hw[axis] // multiple) * multiple
            size.append(int(rng.integers(lo // multiple, hi // multiple + 1)) * multiple
                        if lo <= hi else profile.opt_hw[axis])
        s = profile.nchw((size[0], size[1]))
        if s not in shapes:
            shapes.append(s)
    while len(shapes) < count:
        shapes.append(profile.nchw(profile.opt_hw))
    return shapes[:count]


def make_validation_inputs(shapes: Sequence[Sequence[int]], seed: int = 0) -> list[np.ndarray]:
    """Random float32 inputs ~ N(0, 1): the statistics of ImageNet-normalised pixels."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(s), dtype=np.float32) for s in shapes]


def onnxruntime_reference(onnx_path: Path | str, inputs: Sequence[np.ndarray],
                          input_name: str = "pixel_values",
                          output_name: str | None = "predicted_depth",
                          extra_inputs: Callable[[np.ndarray], Mapping[str, np.ndarray]] | None = None,
                          ) -> list[np.ndarray]:
    """Reference outputs from ONNX Runtime on the CPU (the slow, trusted path).

    ``output_name`` None takes the graph's first output. ``extra_inputs`` maps the main input to any
    further feeds the graph needs (e.g. a prompt depth).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EngineCacheError(
            "validating a TensorRT engine needs onnxruntime (pip install onnxruntime), or turn "
            "validation off explicitly") from exc
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = output_name if output_name in names else names[0]
    outputs: list[np.ndarray] = []
    for x in inputs:
        feeds: dict[str, np.ndarray] = {input_name: x}
        if extra_inputs is not None:
            feeds.update(extra_inputs(x))
        outputs.append(np.asarray(session.run([wanted], feeds)[0]))
    return outputs


@dataclass
class ValidationReport:
    """All comparisons of one engine; ``worst`` is the one with the largest relative error."""

    results: list[ValidationResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def worst(self) -> ValidationResult:
        if not self.results:
            raise ValueError("no validation results")
        return max(self.results, key=lambda r: (not math.isfinite(r.relative_error),
                                                r.relative_error))

    def summary(self) -> str:
        return "; ".join(r.describe() for r in self.results)


def check_against_reference(run_candidate: Callable[[np.ndarray], np.ndarray],
                            inputs: Sequence[np.ndarray], references: Sequence[np.ndarray],
                            tolerance: float, what: str = "engine",
                            hint: str = "Try fp32 precision or another TensorRT version."
                            ) -> ValidationReport:
    """Run ``run_candidate`` on each input, compare with ``references``; raise on any mismatch.

    Raises :class:`EngineValidationError` whose message gives the measured error, so a user sees
    *how* wrong the engine is, not just that it was refused.
    """
    if len(inputs) != len(references):
        raise ValueError(f"{len(inputs)} inputs but {len(references)} reference outputs")
    report = ValidationReport()
    for x, ref in zip(inputs, references):
        try:
            out = np.asarray(run_candidate(x))
        except ValueError as exc:  # e.g. a shape the engine refuses: a mismatch, with its reason
            report.results.append(ValidationResult(tuple(x.shape), math.inf, 0.0, math.inf,
                                                   tolerance, f"failed: {exc}"))
            continue
        report.results.append(compare_outputs(ref, out, tolerance, x.shape))
    if not report.ok:
        bad = [r for r in report.results if not r.ok]
        raise EngineValidationError(
            f"{what} disagrees with ONNX Runtime, refusing to use it: worst "
            f"{report.worst.describe()} ({len(bad)} of {len(report.results)} inputs over "
            f"tolerance). {hint}", report.results)
    return report


def validate_engine(run_candidate: Callable[[np.ndarray], np.ndarray], onnx_path: Path | str,
                    profile: ShapeProfile, precision: str, tolerance: float | None = None,
                    count: int = 3, seed: int = 0, multiple: int = 1,
                    input_name: str = "pixel_values", output_name: str = "predicted_depth",
                    extra_inputs: Callable[[np.ndarray], Mapping[str, np.ndarray]] | None = None,
                    ) -> ValidationReport:
    """Check a built engine (``run_candidate``: N x C x H x W float32 -> output) against ONNX Runtime
    on ``count`` random inputs within ``profile``; raise :class:`EngineValidationError` on mismatch.

    ``extra_inputs`` (deterministic) gives ONNX Runtime the further feeds a multi-input graph needs;
    ``run_candidate`` is expected to feed the engine the same ones.
    """
    tol = DEFAULT_TOLERANCE[_check_precision(precision)] if tolerance is None else float(tolerance)
    shapes = validation_input_shapes(profile, count=count, seed=seed, multiple=multiple)
    inputs = make_validation_inputs(shapes, seed=seed)
    references = onnxruntime_reference(onnx_path, inputs, input_name, output_name, extra_inputs)
    hint = ("Try fp32 precision or another TensorRT version." if precision != "fp32" else
            "Try another TensorRT version, or export the model with another opset.")
    return check_against_reference(run_candidate, inputs, references, tol,
                                   what=f"the {precision} TensorRT engine for {Path(onnx_path).name}",
                                   hint=hint)


# --------------------------------------------------------------------------------------------------
# The cache


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
              report: ValidationReport | None = None) -> Path:
        write_engine_file(entry.engine_path, engine, key, report)
        return entry.engine_path

    def remove(self, entry: CacheEntry) -> None:
        for p in (entry.engine_path, entry.sidecar_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def write_engine_file(path: Path | str, engine: bytes, key: EngineKey | None = None,
                      report: ValidationReport | None = None) -> Path:
    """Write an engine and its JSON sidecar (engine first, both atomic)."""
    if not engine:
        raise ValueError("refusing to write an empty engine")
    target = atomic_write_bytes(path, engine)
    sidecar: dict[str, Any] = {
        "sidecar_version": SIDECAR_VERSION,
        "engine_file": target.name,
        "engine_bytes": len(engine),
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
        "created_unix": round(time.time(), 3),
        "key": key.fields() if key is not None else None,
        "key_digest": key.digest() if key is not None else None,
        "validation": [r.as_dict() for r in report.results] if report is not None else None,
    }
    atomic_write_json(sidecar_path(target), sidecar)
    return target


def read_sidecar(path: Path | str) -> dict[str, Any]:
    """The sidecar of an engine file (``CorruptEngineError`` naming the engine if unreadable)."""
    engine_path = Path(path)
    side = sidecar_path(engine_path)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptEngineError(engine_path, f"its sidecar {side.name} is missing "
                                 "(an interrupted write?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptEngineError(engine_path, f"its sidecar {side.name} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CorruptEngineError(engine_path, f"its sidecar {side.name} is not a JSON object")
    return data


def read_engine_file(path: Path | str, key: EngineKey | None = None,
                     require_sidecar: bool = False) -> bytes | None:
    """Read a serialized engine, checking it against its sidecar when there is one.

    Returns ``None`` when the engine file does not exist. A user-supplied engine without sidecar is
    accepted unless ``require_sidecar``; with a sidecar, its size and sha256 must match (a truncated
    copy or a partial download is caught here, with a message naming the file, before TensorRT
    gets to crash on it), and so must the key when one is given.
    """
    engine_path = Path(path)
    try:
        data = engine_path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        raise CorruptEngineError(engine_path, "it is empty (0 bytes)")
    side = sidecar_path(engine_path)
    if not side.exists() and not require_sidecar:
        return data
    meta = read_sidecar(engine_path)
    expected = meta.get("engine_bytes")
    if isinstance(expected, int) and expected != len(data):
        how = "truncated" if len(data) < expected else "longer than recorded"
        raise CorruptEngineError(engine_path, f"it is {how}: {len(data)} bytes, the sidecar "
                                 f"records {expected}")
    if meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
        raise CorruptEngineError(engine_path, "its sha256 differs from the one in its sidecar")
    if key is not None and meta.get("key_digest") != key.digest():
        raise EngineKeyMismatchError(engine_path, meta.get("key"))
    return data
