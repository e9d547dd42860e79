"""Accuracy metrics: depth on the pixels where both prediction and ground truth are valid, and
instance masks matched one to one."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DepthMetrics:
    abs_rel: float  # mean |d - g| / g
    rmse_m: float  # sqrt(mean (d - g)^2), metres
    log_rmse: float  # sqrt(mean (log d - log g)^2)
    silog: float  # 100 * sqrt(var of log error), Eigen et al.
    delta1: float  # fraction with max(d/g, g/d) < 1.25
    delta2: float  # ... < 1.25^2
    delta3: float  # ... < 1.25^3
    coverage: float  # fraction of ground-truth pixels with a valid prediction
    n: int  # pixels compared

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def depth_metrics(depth_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> DepthMetrics:
    """Compare HxW predicted depth with HxW ground truth (metres; NaN/<=0 = invalid)."""
    if depth_m.shape != gt_m.shape:
        raise ValueError(f"prediction {depth_m.shape} and ground truth {gt_m.shape} differ in shape")
    with np.errstate(invalid="ignore"):
        gt_ok = np.isfinite(gt_m) & (gt_m > 0)
        if mask is not None:
            gt_ok &= mask
        both = gt_ok & np.isfinite(depth_m) & (depth_m > 0)
    n = int(both.sum())
    n_gt = int(gt_ok.sum())
    if n == 0:
        nan = float("nan")
        return DepthMetrics(nan, nan, nan, nan, 0.0, 0.0, 0.0, 0.0, 0)
    d = depth_m[both].astype(np.float64)
    g = gt_m[both].astype(np.float64)
    log_err = np.log(d) - np.log(g)
    ratio = np.maximum(d / g, g / d)
    return DepthMetrics(
        abs_rel=float(np.mean(np.abs(d - g) / g)),
        rmse_m=float(np.sqrt(np.mean((d - g) ** 2))),
        log_rmse=float(np.sqrt(np.mean(log_err**2))),
        silog=float(100.0 * np.sqrt(max(np.mean(log_err**2) - np.mean(log_err) ** 2, 0.0))),
        delta1=float(np.mean(ratio < 1.25)),
        delta2=float(np.mean(ratio < 1.25**2)),
        delta3=float(np.mean(ratio < 1.25**3)),
        coverage=n / max(n_gt, 1),
        n=n,
    )


# ------------------------------------------------------------------------------------------------
# Accuracy harness helpers: emulated network output and sparse metric signals with known truth
# ------------------------------------------------------------------------------------------------


def emulate_relative_prediction(depth_m: np.ndarray, scale: float, shift: float, *, noise: float = 0.02,
                                lowfreq: float = 0.03, blur_px: float = 1.5, seed: int = 0,
                                bias_seed: int | None = None) -> np.ndarray:
    """HxW float32 "relative network output" from true HxW depth (metres, NaN = none):
    pred = scale * blur(1/z) * (1 + lowfreq * smooth field) * (1 + noise * white) + shift.

    The errors mimic a real network's: ``blur_px`` (Gaussian sigma, pixels) smears object edges
    into flying pixels, the smooth field (a 4x4 Gaussian grid upsampled bicubically, unit std) is a
    low-frequency geometric bias, and ``noise`` is per-pixel multiplicative noise. NaN depth stays
    NaN. ``scale`` and ``shift`` are the unknown affine map that an alignment must recover.
    ``seed`` draws the white noise, ``bias_seed`` (default: ``seed``) the smooth field: a network
    sees a static scene with the same bias every frame, so a static sequence keeps ``bias_seed``.
    """
    import cv2

    z = np.asarray(depth_m, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"depth_m must be HxW, got shape {z.shape}")
    ok = np.isfinite(z) & (z > 0)
    inv = np.where(ok, 1.0 / np.where(ok, z, 1.0), 0.0)
    if blur_px > 0:  # normalised convolution so NaN holes do not drag neighbours towards 0
        num = cv2.GaussianBlur(inv, (0, 0), blur_px)
        den = cv2.GaussianBlur(ok.astype(np.float64), (0, 0), blur_px)
        inv = np.where(ok, num / np.maximum(den, 1e-12), 0.0)
    h, w = z.shape
    grid = np.random.default_rng(seed if bias_seed is None else bias_seed).normal(size=(4, 4))
    field = np.asarray(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), dtype=np.float64)
    rng = np.random.default_rng(seed)
    field = field / max(float(field.std()), 1e-12)
    white = rng.normal(size=z.shape)
    pred = scale * inv * (1.0 + lowfreq * field) * (1.0 + noise * white) + shift
    return np.where(ok, pred, np.nan).astype(np.float32)


def sparse_samples(depth_m: np.ndarray, n: int, outlier_fraction: float = 0.0, *, seed: int = 0,
                   max_outlier_factor: float = 3.0) -> np.ndarray:
    """HxW float32 with ``n`` metric samples of the true depth at random valid pixels (NaN elsewhere);
    a share ``outlier_fraction`` of them is wrong by a factor drawn log-uniformly from
    [1.25, max_outlier_factor], up or down (mixed pixels, multipath, LiDAR-camera parallax)."""
    z = np.asarray(depth_m, dtype=np.float32)
    if not 0.0 <= outlier_fraction < 1.0:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction!r}")
    rng = np.random.default_rng(seed)
    valid = np.flatnonzero(np.isfinite(z) & (z > 0))
    idx = rng.choice(valid, size=min(int(n), valid.size), replace=False)
    vals = z.reshape(-1)[idx].astype(np.float64)
    n_out = int(round(outlier_fraction * idx.size))
    if n_out:
        factor = np.exp(rng.uniform(np.log(1.25), np.log(max_outlier_factor), n_out))
        vals[:n_out] *= np.where(rng.random(n_out) < 0.5, factor, 1.0 / factor)
    out = np.full(z.shape, np.nan, dtype=np.float32)
    out.reshape(-1)[idx] = vals.astype(np.float32)
    return out


def oracle_inverse_affine(prediction: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None,
                          robust: bool = True) -> tuple[float, float]:
    """(scale, shift) of the best affine map in hindsight, 1/z ≈ scale * pred + shift, fitted on
    *every* pixel with ground truth; its AbsRel is the floor that an alignment from sparse, noisy
    samples is measured against. The residual is relative, r = (scale*pred + shift)*z - 1 (≈ the
    relative depth error). ``robust`` minimises mean |r| (IRLS from the least-squares start), which
    is nearly the AbsRel-optimal map; False gives the plain least-squares fit."""
    x = np.asarray(prediction, dtype=np.float64)
    z = np.asarray(gt_m, dtype=np.float64)
    if x.shape != z.shape:
        raise ValueError(f"prediction {x.shape} and ground truth {z.shape} differ in shape")
    ok = np.isfinite(x) & np.isfinite(z) & (z > 0)
    if mask is not None:
        ok &= mask
    if ok.sum() < 2:
        raise ValueError("the oracle fit needs at least 2 pixels with ground truth")
    A = np.column_stack([x[ok] * z[ok], z[ok]])
    b = np.ones(A.shape[0])
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    if robust:
        for _ in range(50):  # IRLS for the L1 norm: weights 1/|r|
            sw = 1.0 / np.sqrt(np.maximum(np.abs(A @ sol - b), 1e-6))
            new, *_ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
            if np.allclose(new, sol, rtol=1e-9, atol=1e-12):
                sol = new
                break
            sol = new
    return float(sol[0]), float(sol[1])


def matched_iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every true instance of an HxW id image (0 = background) with the predicted instance
    assigned to it (Hungarian on IoU); 0 for true instances left without a prediction."""
    from scipy.optimize import linear_sum_assignment

    t_ids = np.unique(true)
    t_ids = t_ids[t_ids != 0]
    p_ids = np.unique(pred)
    p_ids = p_ids[p_ids != 0]
    if len(p_ids) == 0:
        return np.zeros(len(t_ids))
    inter = np.zeros((int(true.max()) + 1, int(pred.max()) + 1))
    np.add.at(inter, (true.ravel().astype(np.int64), pred.ravel().astype(np.int64)), 1)
    area_t = np.bincount(true.ravel(), minlength=inter.shape[0])
    area_p = np.bincount(pred.ravel(), minlength=inter.shape[1])
    i = inter[np.ix_(t_ids, p_ids)]
    iou = i / (area_t[t_ids, None] + area_p[None, p_ids] - i)
    rows, cols = linear_sum_assignment(-iou)
    out = np.zeros(len(t_ids))
    out[rows] = iou[rows, cols]
    return out
