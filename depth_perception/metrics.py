"""Depth accuracy metrics on the pixels where both prediction and ground truth are valid."""

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
