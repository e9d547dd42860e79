"""Held-out evaluation: AbsRel and delta1 of a predictor against ground-truth depth.

A predictor maps an HxWx3 uint8 RGB image to an HxW output of some kind; :func:`aligned_depth` turns
that output into depth in metres (metric as is, relative outputs through the per-image oracle
alignment to the ground truth), and :func:`evaluate` averages the per-image metrics over a dataset
and reports the median milliseconds per image.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from .dataset import DataError, DepthDataset
from .trainee import Trainee


@dataclass
class EvalSummary:
    """Mean per-image metrics on held-out images (relative models after the oracle inverse-affine
    alignment to ground truth), and CPU milliseconds per image."""

    abs_rel: float
    delta1: float
    n_images: int
    ms_per_image: float
    aligned: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def aligned_depth(prediction: np.ndarray, kind: str, gt_m: np.ndarray) -> np.ndarray:
    """Depth in metres from a prediction of ``kind``: metric as is; relative inverse depth through
    the oracle inverse-affine fit to ``gt_m`` (metric.oracle_inverse_affine); affine-invariant depth
    (``relative_depth``) through a least-squares affine fit in depth."""
    from ..metrics import oracle_inverse_affine

    pred = np.asarray(prediction, np.float64)
    if kind == "metric":
        return pred.astype(np.float32)
    if kind == "relative_depth":
        ok = np.isfinite(pred) & np.isfinite(gt_m) & (gt_m > 0)
        A = np.column_stack([pred[ok], np.ones(ok.sum())])
        (a, b), *_ = np.linalg.lstsq(A, gt_m[ok].astype(np.float64), rcond=None)
        d = a * pred + b
        return np.where(d > 0, d, np.nan).astype(np.float32)
    s, t = oracle_inverse_affine(pred, gt_m)
    inv = s * pred + t
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inv > 0, 1.0 / inv, np.nan).astype(np.float32)


def evaluate(predict: Callable[[np.ndarray], np.ndarray], kind: str, dataset: DepthDataset,
             progress: bool = False, desc: str = "evaluating") -> EvalSummary:
    """AbsRel and delta1 of ``predict`` (HxWx3 uint8 → HxW) over a dataset with depth."""
    from tqdm import tqdm

    from ..metrics import depth_metrics

    if not dataset.has_depth:
        raise DataError(f"{dataset.description}: no ground-truth depth to evaluate against")
    rel, d1, ms = [], [], []
    for sample in tqdm(dataset, total=len(dataset), desc=desc, leave=False, disable=not progress or None):
        t0 = time.perf_counter()
        pred = predict(sample.rgb)
        ms.append((time.perf_counter() - t0) * 1e3)
        m = depth_metrics(aligned_depth(pred, kind, sample.depth_m), sample.depth_m)
        if m.n:
            rel.append(m.abs_rel)
            d1.append(m.delta1)
    if not rel:
        return EvalSummary(float("nan"), float("nan"), 0, float(np.median(ms)) if ms else 0.0, kind != "metric")
    return EvalSummary(float(np.mean(rel)), float(np.mean(d1)), len(rel), float(np.median(ms)),
                       kind != "metric")


def make_predictor(trainee: Trainee, input_size: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """HxWx3 uint8 → HxW output of the trainee (the depth engine's pre/post-processing)."""
    import torch

    from ..depth.processing import postprocess, preprocess

    spec = trainee.spec
    size = input_size or spec.input_size

    def predict(rgb: np.ndarray) -> np.ndarray:
        device = next(trainee.net.parameters()).device  # wherever training put it
        x, geo = preprocess(rgb, spec, size, device=device)
        was_training = trainee.net.training
        trainee.train(False)
        with torch.inference_mode():
            out = trainee.forward(x)
        trainee.train(was_training)
        return postprocess(out.float(), geo)

    return predict


__all__ = ["EvalSummary", "aligned_depth", "evaluate", "make_predictor"]
