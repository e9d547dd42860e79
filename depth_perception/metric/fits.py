"""Stage 2, fits: one frame's prediction against its sparse metric samples → a :class:`ScaleFit`.

Inputs are a prediction and samples of the same shape (HxW grids with NaN where there is no sample,
or N vectors); samples are depths in metres. Two models:

- :func:`fit_inverse_affine` for relative networks (Depth Anything, MiDaS/DPT), whose output is
  affine-invariant inverse depth: ``1/z = scale * pred + shift`` (shift in 1/m), and its depth-space
  twin :func:`fit_depth_affine` for affine-invariant depth (Marigold): ``z = scale * pred + shift``
  (shift in m). Both are :func:`fit_affine`: RANSAC on sample pairs finds the consensus, Huber IRLS
  on its inliers refines it.
- :func:`fit_scale` for metric networks: ``z = scale * pred`` (or ``1/z = scale * pred``), a
  constant in log space; one-sample MSAC, then Huber IRLS.

Residuals are relative depth errors (0.05 = 5 %), so thresholds do not depend on range. A fit is
gated by minimum inliers, minimum inlier ratio and maximum residual; a refused fit has ``ok`` False
and says why in ``reason``. :func:`apply_scale` turns a prediction and a (scale, shift) into HxW
float32 metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: "inverse_depth": 1/z = scale * pred + shift (shift in 1/m); "depth": z = scale * pred + shift (m).
SPACES = ("inverse_depth", "depth")

_NAN = float("nan")


@dataclass(frozen=True)
class ScaleFit:
    """One frame's fit of the prediction to metric samples.

    space "inverse_depth": 1/z = scale * pred + shift; "depth": z = scale * pred + shift.
    inlier_ratio: inliers / n_points; residual: RMS relative depth error of the inliers (0.05 = 5 %);
    n_points: usable samples; ok: passed the gates (else ``reason`` says which failed; scale/shift
    may still hold the rejected values, or NaN when nothing could be computed).
    ref_pred: prediction values (10/50/90 % quantiles of the inliers) at which two fits are compared.
    threshold: the relative inlier threshold finally used (adaptive, see :func:`fit_affine`).
    """

    scale: float
    shift: float
    space: str
    inlier_ratio: float
    residual: float
    n_points: int
    ok: bool
    reason: str
    n_inliers: int = 0
    source: str = ""
    ref_pred: tuple[float, ...] = ()
    threshold: float = _NAN

    def apply(self, prediction: np.ndarray) -> np.ndarray:
        """Metric depth HxW float32 from the prediction; NaN where the map is non-positive."""
        return apply_scale(prediction, self.scale, self.shift, self.space)


def apply_scale(prediction: np.ndarray, scale: float, shift: float, space: str) -> np.ndarray:
    """Depth float32 (metres, NaN where the mapped value is non-positive or non-finite) from a
    prediction and a (scale, shift) in ``space`` (see :data:`SPACES`)."""
    p = np.asarray(prediction, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = np.float32(scale) * p + np.float32(shift)
        if space == "inverse_depth":
            out = np.where(v > 0, np.float32(1.0) / v, np.float32(np.nan))
        elif space == "depth":
            out = np.where(v > 0, v, np.float32(np.nan))
        else:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    out = out.astype(np.float32, copy=False)
    out[~np.isfinite(out)] = np.nan
    return out


def fit_inverse_affine(prediction: np.ndarray, depth_m: np.ndarray, **kwargs: Any) -> ScaleFit:
    """Fit 1/z ≈ scale * pred + shift (a relative network's affine-invariant inverse depth: Depth
    Anything, MiDaS/DPT); shift in 1/m. :func:`fit_affine` in ``space="inverse_depth"``, which
    documents the keywords and the gates."""
    return fit_affine(prediction, depth_m, space="inverse_depth", **kwargs)


def fit_depth_affine(prediction: np.ndarray, depth_m: np.ndarray, **kwargs: Any) -> ScaleFit:
    """Fit z ≈ scale * pred + shift (affine-invariant *depth*, far = large: Marigold); shift in
    metres. :func:`fit_affine` in ``space="depth"``, which documents the keywords and the gates."""
    return fit_affine(prediction, depth_m, space="depth", **kwargs)


def fit_affine(prediction: np.ndarray, depth_m: np.ndarray, *, space: str = "inverse_depth",
               inlier_threshold: float = 0.1, adaptive: bool = True, min_inliers: int = 20,
               min_inlier_ratio: float = 0.3, max_residual: float = 0.15, min_spread: float = 0.02,
               max_explained: float = 0.8, iterations: int = 256, max_points: int = 5000, seed: int = 0,
               source: str = "") -> ScaleFit:
    """Fit y ≈ scale * pred + shift with y = 1/z (``space="inverse_depth"``) or y = z (``"depth"``).

    ``prediction`` and ``depth_m`` have the same shape (HxW grids with NaN where there is no sample,
    or N vectors). The residual of a sample is relative, r = (scale*pred + shift) / y - 1 (the
    relative depth error in depth space, ≈ it in inverse depth), so minimising it is linear in
    (scale, shift). RANSAC on random pairs (MSAC cost truncated at ``inlier_threshold``) finds the
    consensus, then Huber IRLS on the inliers refines it. With ``adaptive`` the inlier threshold then
    follows the inliers' own spread (3x their RMS residual, within 0.5-2.5x ``inlier_threshold``):
    tight for a sharp network, so mild outliers go, and loose for a blurry one, so its true samples
    are not discarded as outliers.

    Refused (``ok`` False, ``reason`` set) with fewer than ``min_inliers`` inliers, an inlier ratio
    below ``min_inlier_ratio``, an inlier RMS residual above ``max_residual``, a non-positive scale,
    samples whose y values span less than ``min_spread`` (then the shift is not observable), or an
    inlier residual above ``max_explained`` times that of the best constant depth (the prediction
    does not explain the samples: a signal unrelated to the image).
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    x, z, n = _pairs(prediction, depth_m, max_points, seed)
    y = 1.0 / z if space == "inverse_depth" else z
    why = _unfittable_affine(x, z, y, n, min_inliers, min_spread, space)
    if why:
        return _refused(space, why, n, source)
    x_span = float(np.ptp(x))
    start = _ransac_affine(x, y, x_span, iterations, inlier_threshold, seed)
    if start is None:
        return _refused(space, "no sample pair gives a positive scale (prediction anti-correlated "
                               f"with {space.replace('_', ' ')}?)", n, source)
    A = np.column_stack([x / y, 1.0 / y])
    scale, shift, thr = _irls_affine(A, *start, inlier_threshold, adaptive, x_span)
    r = A @ [scale, shift] - 1.0
    inl = np.abs(r) < thr
    n_in = int(inl.sum())
    res = float(np.sqrt(np.mean(r[inl] ** 2))) if n_in else _NAN
    values = _inlier_values(x, inl, n, scale=scale, shift=shift, residual=res, threshold=thr)
    ok, reason = _gate(values, x.size, n_in, min(min_inliers, x.size), min_inlier_ratio, max_residual)
    if ok:
        why = _unexplained_reason(y[inl], res, max_explained)
        if why:
            ok, reason = False, why
    return ScaleFit(space=space, n_points=n, ok=ok, reason=reason, source=source, **values)


def _unfittable_affine(x: np.ndarray, z: np.ndarray, y: np.ndarray, n: int, min_inliers: int,
                       min_spread: float, space: str) -> str | None:
    """Why the usable samples (``x`` prediction, ``z`` metres, ``y`` the fitted quantity of ``z``;
    ``n`` of them before subsampling) cannot determine an affine map, or None when they can."""
    if n < max(min_inliers, 2):
        return f"{n} usable samples, need at least {max(min_inliers, 2)}"
    why = _constant_depth_reason(z)
    if why:
        return why
    q10, q50, q90 = np.quantile(y, [0.1, 0.5, 0.9])
    if (q90 - q10) < min_spread * q50:
        what = "inverse depths" if space == "inverse_depth" else "depths"
        return (f"sample {what} span only {100 * (q90 - q10) / q50:.1f} % "
                f"(need {100 * min_spread:.0f} %): scale and shift are not separable")
    if not float(np.ptp(x)) > 0:
        return "the prediction is constant at the sample pixels"
    return None


def _ransac_affine(x: np.ndarray, y: np.ndarray, x_span: float, iterations: int,
                   inlier_threshold: float, seed: int) -> tuple[float, float] | None:
    """RANSAC on ``iterations`` random sample pairs: the (scale, shift) of y = scale * x + shift
    through a pair with the lowest MSAC cost (squared relative residuals truncated at
    ``inlier_threshold``), or None when no pair gives a positive scale."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, x.size, size=(2, iterations))
    dx = x[i] - x[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (y[i] - y[j]) / dx
    t = y[i] - s * x[i]
    good = (np.abs(dx) > 1e-9 * x_span) & np.isfinite(s) & (s > 0)
    if not good.any():
        return None
    s, t = s[good], t[good]
    r = (s[:, None] * x[None, :] + t[:, None]) / y[None, :] - 1.0
    cost = np.minimum(r * r, inlier_threshold**2).sum(axis=1)
    best = int(np.argmin(cost))
    return float(s[best]), float(t[best])


def _irls_affine(A: np.ndarray, scale: float, shift: float, inlier_threshold: float,
                 adaptive: bool, x_span: float) -> tuple[float, float, float]:
    """Huber IRLS of the relative residual ``A @ [scale, shift] - 1`` (A = [pred/y, 1/y]) from a
    RANSAC start, with the adaptive inlier threshold: (scale, shift, final threshold)."""
    thr = inlier_threshold
    for _ in range(30):
        r = A @ [scale, shift] - 1.0
        inl = np.abs(r) < thr
        if inl.sum() < 2:
            break
        new_thr = _adapted_threshold(r, inl, inlier_threshold) if adaptive else thr
        sw = np.sqrt(_huber_weights(r, inl))
        sol, *_ = np.linalg.lstsq(A * sw[:, None], sw, rcond=None)
        done = (abs(sol[0] - scale) <= 1e-7 * abs(scale) and abs(sol[1] - shift) <= 1e-7 * abs(scale) * x_span
                and abs(new_thr - thr) <= 1e-4 * thr)
        scale, shift, thr = float(sol[0]), float(sol[1]), new_thr
        if done:
            break
    return scale, shift, thr


def _unexplained_reason(y_inliers: np.ndarray, residual: float, max_explained: float) -> str | None:
    """Why the prediction does not explain the inliers' fitted values ``y_inliers`` (depths or
    inverse depths), or None.

    A signal unrelated to the image (wrong topic, garbage) still finds a near-constant map with many
    "inliers": demand that the prediction explain the samples clearly better than the best constant
    on the same inliers (``residual`` at most ``max_explained`` times that constant's, both relative
    residuals c / y - 1)."""
    u = 1.0 / y_inliers
    const = float(np.sqrt(np.mean((u * (u.sum() / (u * u).sum()) - 1.0) ** 2)))
    if not residual <= max_explained * const:
        return (f"the prediction hardly explains the sample depths: residual {residual:.3f} vs "
                f"{const:.3f} for a constant depth (signal unrelated to the image?)")
    return None


def fit_scale(prediction: np.ndarray, depth_m: np.ndarray, *, inlier_threshold: float = 0.1,
              adaptive: bool = True, min_inliers: int = 20, min_inlier_ratio: float = 0.3,
              max_residual: float = 0.15,
              iterations: int = 128, max_points: int = 5000, seed: int = 0, source: str = "",
              space: str = "depth") -> ScaleFit:
    """Fit z ≈ scale * pred (a metric network, or any prediction proportional to depth).

    Works on log ratios log(z / pred), where a scale is a constant: one-sample MSAC picks the
    consensus, Huber IRLS refines its mean (``adaptive`` threshold as there). Same gates as
    :func:`fit_inverse_affine` except spread and explanation: a flat wall is fine for a scale.
    Predictions <= 0 are not usable samples.
    ``space="inverse_depth"`` fits 1/z ≈ scale * pred instead (zero shift), for relative predictions
    whose shift is known to be 0.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    x, z, n = _pairs(prediction, depth_m, max_points, seed, positive_pred=True)
    if n < max(min_inliers, 1):
        return _refused(space, f"{n} usable samples (positive prediction and depth), need at least "
                               f"{max(min_inliers, 1)}", n, source)
    why = _constant_depth_reason(z)
    if why:
        return _refused(space, why, n, source)
    # depth: z = k*x → log k = log z - log x; inverse: 1/z = k*x → log k = -log z - log x
    lk = (np.log(z) if space == "depth" else -np.log(z)) - np.log(x)
    thr = math.log1p(inlier_threshold)
    rng = np.random.default_rng(seed)
    cand = lk if lk.size <= iterations else lk[rng.choice(lk.size, size=iterations, replace=False)]
    cost = np.minimum((cand[:, None] - lk[None, :]) ** 2, thr**2).sum(axis=1)
    m = float(cand[int(np.argmin(cost))])
    thr0 = thr
    for _ in range(30):
        r = lk - m
        inl = np.abs(r) < thr
        if not inl.any():
            break
        new_thr = _adapted_threshold(r, inl, thr0) if adaptive else thr
        w = _huber_weights(r, inl)
        m_new = float(np.sum(w * lk) / np.sum(w))
        done = abs(m_new - m) < 1e-9 and abs(new_thr - thr) <= 1e-4 * thr
        m, thr = m_new, new_thr
        if done:
            break
    r = lk - m
    inl = np.abs(r) < thr
    n_in = int(inl.sum())
    rel = np.expm1(np.abs(r[inl]))  # relative depth error of the inliers
    res = float(np.sqrt(np.mean(rel**2))) if n_in else _NAN
    values = _inlier_values(x, inl, n, scale=math.exp(m), shift=0.0, residual=res, threshold=math.expm1(thr))
    ok, reason = _gate(values, x.size, n_in, min(min_inliers, x.size), min_inlier_ratio, max_residual)
    return ScaleFit(space=space, n_points=n, ok=ok, reason=reason, source=source, **values)


# -- helpers shared by both fits; _refused also serves plane.py and aligner.py ----------------------


def _pairs(prediction: np.ndarray, depth_m: np.ndarray, max_points: int, seed: int,
           positive_pred: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(pred, depth) float64 vectors of the usable samples, at most ``max_points`` of them (a seeded
    random subset: RANSAC cost grows with the count, accuracy barely), and the usable count."""
    x = np.asarray(prediction, dtype=np.float64).reshape(-1)
    z = np.asarray(depth_m, dtype=np.float64).reshape(-1)
    if x.shape != z.shape:
        raise ValueError(f"prediction ({np.shape(prediction)}) and samples ({np.shape(depth_m)}) differ in shape")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(z) & (z > 0)
        if positive_pred:
            ok &= x > 0
    idx = np.flatnonzero(ok)
    n = idx.size
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_points, replace=False))
    return x[idx], z[idx], n


def _constant_depth_reason(z: np.ndarray) -> str | None:
    if z.size >= 2 and np.ptp(z) == 0:
        return (f"all {z.size} sample depths equal {z[0]:.4g} m: a sensor fault or a placeholder value, "
                "not a measurement")
    return None


def _huber_weights(r: np.ndarray, inl: np.ndarray) -> np.ndarray:
    """Huber weights with the tuning constant 1.345 sigma, sigma from the MAD of the inliers."""
    sigma = 1.4826 * float(np.median(np.abs(r[inl]))) if inl.any() else 0.0
    k = max(1.345 * sigma, 1e-6)
    return np.where(inl, np.minimum(1.0, k / np.maximum(np.abs(r), 1e-12)), 0.0)


def _adapted_threshold(r: np.ndarray, inl: np.ndarray, base: float) -> float:
    """3x the RMS residual of the current inliers, within [0.5, 2.5] x base. Iterated, this settles
    near 2.9 sigma of Gaussian inlier noise (the truncated RMS underestimates sigma; the fixed point
    absorbs that)."""
    return float(np.clip(3.0 * np.sqrt(np.mean(r[inl] ** 2)), 0.5 * base, 2.5 * base))


def _inlier_values(x: np.ndarray, inl: np.ndarray, n: int, **values: Any) -> dict[str, Any]:
    """The :class:`ScaleFit` fields of a fit to the ``x.size`` fitted predictions ``x`` (a subset of the
    ``n`` usable samples) with inliers ``inl``: the inlier count scaled back to all usable samples,
    the inlier ratio, the reference predictions, and ``values`` (scale, shift, residual, threshold)."""
    n_in = int(inl.sum())
    return dict(values, n_inliers=int(round(n_in * n / x.size)), inlier_ratio=n_in / x.size,
                ref_pred=tuple(np.quantile(x[inl], [0.1, 0.5, 0.9]).tolist()) if n_in else ())


def _gate(fit: dict[str, Any], n: int, n_in: int, min_inliers: int, min_inlier_ratio: float,
          max_residual: float) -> tuple[bool, str]:
    ratio = n_in / max(n, 1)
    if not (np.isfinite(fit["scale"]) and fit["scale"] > 0):
        return False, f"fitted scale {fit['scale']:.4g} is not positive (prediction and samples disagree)"
    if n_in < min_inliers:
        return False, f"{n_in} inliers of {n} samples, need at least {min_inliers}"
    if ratio < min_inlier_ratio:
        return False, f"inlier ratio {ratio:.2f} below {min_inlier_ratio:.2f} ({n_in} of {n} samples)"
    if not fit["residual"] <= max_residual:
        return False, f"inlier residual {fit['residual']:.3f} above {max_residual:.3f}"
    return True, "ok"


def _refused(space: str, reason: str, n: int = 0, source: str = "", **values) -> ScaleFit:
    """A refused fit (``ok`` False) that says why; scale, shift and residual NaN unless ``values`` say."""
    base: dict[str, Any] = dict(scale=_NAN, shift=_NAN, inlier_ratio=0.0, residual=_NAN, n_inliers=0,
                                ref_pred=())
    base.update(values)
    return ScaleFit(space=space, n_points=n, ok=False, reason=reason, source=source, **base)
