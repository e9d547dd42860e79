"""Checking a built engine against ONNX Runtime before it is trusted.

The engine and ONNX Runtime (CPU, the slow trusted path) run the same random float32 inputs,
N x C x H x W ~ N(0, 1) (the statistics of ImageNet-normalised pixels), at the profile's opt, min
and max sizes and then random sizes in range. The measure is the relative error: max |engine - ONNX
Runtime| over the reference output's range (max - min), so 0.05 means the worst pixel is off by 5 %
of the depth range the network predicted. Peers have shipped engines that give wrong depth on some
TensorRT versions; the only reliable defence is to measure.

No TensorRT import: the engine is passed in as a function.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .engine_keys import EngineCacheError, check_precision
from .engine_profiles import ShapeProfile, format_shape

# Relative error (max |TensorRT - ONNX Runtime| over the reference output's range) accepted per
# precision. fp32 engines still use TF32 matmuls on Ampere+ (TensorRT's default), hence not 1e-5;
# broken engines seen in the wild are off by tens of percent, far above all of these.
DEFAULT_TOLERANCE = {"fp32": 1e-2, "fp16": 5e-2, "int8": 0.15}


class EngineValidationError(ValueError):
    """A built engine disagrees with ONNX Runtime beyond the tolerance; carries the measurements."""

    def __init__(self, message: str, results: Sequence["ValidationResult"]) -> None:
        self.results = list(results)
        super().__init__(message)


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
    tol = DEFAULT_TOLERANCE[check_precision(precision)] if tolerance is None else float(tolerance)
    shapes = validation_input_shapes(profile, count=count, seed=seed, multiple=multiple)
    inputs = make_validation_inputs(shapes, seed=seed)
    references = onnxruntime_reference(onnx_path, inputs, input_name, output_name, extra_inputs)
    hint = ("Try fp32 precision or another TensorRT version." if precision != "fp32" else
            "Try another TensorRT version, or export the model with another opset.")
    return check_against_reference(run_candidate, inputs, references, tol,
                                   what=f"the {precision} TensorRT engine for {Path(onnx_path).name}",
                                   hint=hint)
