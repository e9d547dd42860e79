"""Stage 3, over time: per-frame :class:`~depth_perception.metric.fits.ScaleFit` s → one filtered
:class:`ScaleEstimate` per frame.

:class:`TemporalScaleFilter` is a 1-D Kalman filter on log(scale) (the shift rides along in
prediction units for inverse-depth fits). It rejects a fit whose depth map jumps more than a relative
threshold from the estimate, resets after a few consecutive fits agree on a new map, and holds (and
ages) the last estimate through frames without an accepted fit until it is stale. Ages are counted
in frames; scales are unitless in "depth" space and in 1/m per prediction unit in "inverse_depth".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fits import SPACES, ScaleFit

_NAN = float("nan")


@dataclass(frozen=True)
class ScaleEstimate:
    """The filtered scale a frame was converted with; every field is a diagnostic.

    scale/shift/space: as in :class:`ScaleFit` (NaN before the first accepted fit).
    age: frames since the last accepted measurement (0 = this frame); stale: age >= stale_after.
    source: what produced the scale ("sparse_depth", "pointcloud", "stereo", "plane", "model",
    "fixed", "none"); confidence in [0, 1]; reason: what the filter did with this frame.
    """

    scale: float = _NAN
    shift: float = _NAN
    space: str = ""
    inlier_ratio: float = 0.0
    residual: float = _NAN
    age: int = 0
    stale: bool = False
    source: str = "none"
    confidence: float = 0.0
    n_updates: int = 0
    n_rejected: int = 0
    reason: str = "no measurement yet"

    @property
    def has_scale(self) -> bool:
        return bool(np.isfinite(self.scale) and self.scale > 0 and self.space in SPACES)


def _shift_units(fit: ScaleFit) -> float:
    """The shift the filter carries: in prediction units (shift / scale) for inverse depth, where
    1/z = scale * (pred + u), so that smoothing the scale does not drag the shift; metres otherwise."""
    return fit.shift / fit.scale if fit.space == "inverse_depth" else fit.shift


class TemporalScaleFilter:
    """1-D Kalman filter on log(scale), with the shift carried along in prediction units (u =
    shift / scale, updated with the same gain) for inverse-depth fits.

    A measurement whose depth map differs from the estimate by more than ``jump_threshold``
    (relative, at the fit's reference prediction values) is rejected as an outlier; when
    ``reset_frames`` consecutive measurements agree with each other but not with the estimate, the
    scene (or the network's normalisation) really changed, and the filter resets to them. A refused
    fit or a frame without a signal leaves the estimate as is and ages it; after ``stale_after``
    frames without an accepted measurement the estimate is stale. ``smoothing=False`` takes every
    accepted measurement as is (no gating), but still holds it when fits are refused.
    One instance per camera stream; not thread-safe.
    """

    def __init__(self, process_noise: float = 0.003, measurement_noise: float = 0.02,
                 jump_threshold: float = 0.1, reset_frames: int = 3, stale_after: int = 30,
                 max_residual: float = 0.15, smoothing: bool = True) -> None:
        if not (process_noise >= 0 and measurement_noise > 0 and jump_threshold > 0):
            raise ValueError("need process_noise >= 0, measurement_noise > 0 and jump_threshold > 0, got "
                             f"{process_noise!r}, {measurement_noise!r}, {jump_threshold!r}")
        if reset_frames < 1 or stale_after < 1:
            raise ValueError(f"reset_frames and stale_after must be >= 1, got {reset_frames}, {stale_after}")
        self.q = float(process_noise) ** 2
        self.r = float(measurement_noise) ** 2
        self.jump_threshold = float(jump_threshold)
        self.reset_frames = int(reset_frames)
        self.stale_after = int(stale_after)
        self.max_residual = float(max_residual)
        self.smoothing = bool(smoothing)
        self.reset()

    def reset(self) -> None:
        """Forget everything (e.g. when the camera or the network changes)."""
        self._log_s = _NAN
        self._u = 0.0
        self._var = _NAN
        self._space = ""
        self._source = "none"
        self._inlier_ratio = 0.0
        self._residual = _NAN
        self._age = 0
        self._n_updates = 0
        self._n_rejected = 0
        self._pending: list[ScaleFit] = []
        self._reason = "no measurement yet"

    # -- state ------------------------------------------------------------------------------------

    @property
    def has_scale(self) -> bool:
        return bool(np.isfinite(self._log_s))

    @property
    def estimate(self) -> ScaleEstimate:
        if not self.has_scale:
            return ScaleEstimate(age=self._age, n_rejected=self._n_rejected, reason=self._reason)
        scale = math.exp(self._log_s)
        shift = scale * self._u if self._space == "inverse_depth" else self._u
        stale = self._age >= self.stale_after
        quality = self._inlier_ratio * (1.0 - 0.5 * min(1.0, (self._residual or 0.0) / self.max_residual)) \
            if np.isfinite(self._residual) else self._inlier_ratio
        freshness = max(0.0, 1.0 - self._age / self.stale_after)
        return ScaleEstimate(scale=scale, shift=shift, space=self._space, inlier_ratio=self._inlier_ratio,
                             residual=self._residual, age=self._age, stale=stale, source=self._source,
                             confidence=float(np.clip(quality * freshness, 0.0, 1.0)),
                             n_updates=self._n_updates, n_rejected=self._n_rejected, reason=self._reason)

    # -- updates ----------------------------------------------------------------------------------

    def miss(self, reason: str) -> ScaleEstimate:
        """A frame without a usable measurement: keep the estimate, age it."""
        self._age += 1
        if self.has_scale:
            self._var += self.q
        self._reason = reason
        return self.estimate

    def update(self, fit: ScaleFit) -> ScaleEstimate:
        """Feed one frame's fit (a refused fit counts as a miss, with its reason)."""
        if not fit.ok:
            return self.miss(f"fit refused: {fit.reason}")
        u = _shift_units(fit)
        if not self.has_scale or fit.space != self._space or not self.smoothing:
            why = ("initialised" if not self.has_scale else
                   "re-initialised (prediction kind changed)" if fit.space != self._space else "set")
            self._set(fit, math.log(fit.scale), u, self.r, f"{why} from {fit.source or 'fit'}")
            return self.estimate
        self._var += self.q
        jump = self._discrepancy(self._log_s, self._u, fit)
        if jump > self.jump_threshold:
            self._pending = (self._pending + [fit])[-self.reset_frames:]
            self._n_rejected += 1
            self._age += 1
            recent = self._pending
            last = recent[-1]
            agree = all(self._discrepancy(math.log(f.scale), _shift_units(f), last) <= self.jump_threshold
                        for f in recent)
            if len(recent) >= self.reset_frames and agree:
                log_s = float(np.mean([math.log(f.scale) for f in recent]))
                u_mean = float(np.mean([_shift_units(f) for f in recent]))
                self._set(last, log_s, u_mean, self.r / len(recent),
                          f"reset: depth map moved {100 * jump:.0f} % for {len(recent)} frames")
            else:
                self._reason = (f"measurement rejected: depth map {100 * jump:.0f} % from the estimate "
                                f"(> {100 * self.jump_threshold:.0f} %; {len(recent)}/{self.reset_frames} "
                                "before a reset)")
            return self.estimate
        self._pending.clear()
        gain = self._var / (self._var + self.r)
        self._log_s += gain * (math.log(fit.scale) - self._log_s)
        self._u += gain * (u - self._u)
        self._var *= 1.0 - gain
        self._inlier_ratio, self._residual = fit.inlier_ratio, fit.residual
        self._source = fit.source or self._source
        self._age = 0
        self._n_updates += 1
        self._reason = f"updated from {fit.source or 'fit'} (gain {gain:.2f})"
        return self.estimate

    def _set(self, fit: ScaleFit, log_s: float, u: float, var: float, reason: str) -> None:
        self._log_s, self._u, self._var, self._space = log_s, u, var, fit.space
        self._inlier_ratio, self._residual = fit.inlier_ratio, fit.residual
        self._source = fit.source or "fit"
        self._age = 0
        self._n_updates += 1
        self._pending.clear()
        self._reason = reason

    def _discrepancy(self, log_s: float, u: float, fit: ScaleFit) -> float:
        """Largest |log| ratio between the depths that the state and the fit give at the fit's
        reference prediction values (parametrisation-free: scale and shift trade off)."""
        if fit.space != "inverse_depth" or not fit.ref_pred:
            return abs(math.log(fit.scale) - log_s)
        p = np.asarray(fit.ref_pred, dtype=np.float64)
        a = np.exp(log_s) * (p + u)  # state's inverse depth
        b = fit.scale * p + fit.shift
        if not ((a > 0).all() and (b > 0).all()):
            return math.inf
        return float(np.max(np.abs(np.log(a / b))))
