"""Shared helpers (imported as a plain module; pytest puts this folder on sys.path) for the segmentation tests: generator scenes as organised clouds, IoU matching."""

from __future__ import annotations

import functools

import numpy as np
from scipy.optimize import linear_sum_assignment

from depth_perception.camera import CameraModel
from depth_perception.scene import generate_tabletop


@functools.lru_cache(maxsize=None)
def tabletop(seed: int, separated: bool = True, width: int = 320, height: int = 240):
    """(scene, organised cloud HxWx3 float32) of a generator scene; cached across tests."""
    scene = generate_tabletop(seed=seed, width=width, height=height, separated=separated)
    K = scene.K
    cam = CameraModel.from_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height)
    return scene, cam.backproject(scene.depth_m)


def matched_iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every true instance with the predicted instance assigned to it (Hungarian on IoU);
    0 for true instances left without a prediction."""
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
