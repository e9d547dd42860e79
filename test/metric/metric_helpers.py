"""Shared scene for the metric tests (imported as a plain module; pytest puts this folder on sys.path).

A "relative network" is emulated from the true inverse depth through an unknown affine map plus the
errors networks make (blurred edges, smooth bias, pixel noise): metrics.emulate_relative_prediction.
"""
from __future__ import annotations

import numpy as np

from depth_perception.camera import CameraModel
from depth_perception.metric import apply_scale
from depth_perception.metrics import (depth_metrics, emulate_relative_prediction, oracle_inverse_affine,
                                      sparse_samples)
from depth_perception.scene import generate_tabletop

W, H = 320, 240
SCENE = generate_tabletop(seed=2, width=W, height=H)
GT = SCENE.depth_m
CAM = CameraModel.from_intrinsics(SCENE.K[0, 0], SCENE.K[1, 1], SCENE.K[0, 2], SCENE.K[1, 2], W, H)
# the network's unknown map: pred = 3.0 / z + 0.7, so 1/z = pred / 3 - 0.7 / 3
A_TRUE, B_TRUE = 3.0, 0.7
PRED = emulate_relative_prediction(GT, A_TRUE, B_TRUE, seed=1)


def abs_rel(depth_m: np.ndarray) -> float:
    return depth_metrics(depth_m, GT).abs_rel


ORACLE_ABS_REL = abs_rel(apply_scale(PRED, *oracle_inverse_affine(PRED, GT), "inverse_depth"))


def static_frame(k: int, n: int = 200, outliers: float = 0.3, gain: float = 1.0):
    """Frame k of a static scene: same network bias, new pixel noise and new sparse samples.
    ``gain`` multiplies the network's output (a renormalisation of the prediction)."""
    pred = emulate_relative_prediction(GT, A_TRUE * gain, B_TRUE * gain, seed=100 + k, bias_seed=1)
    return pred, sparse_samples(GT, n, outliers, seed=200 + k)
