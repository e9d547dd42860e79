"""Every tiny twin of the model zoo, the metric mode the ROS drivers run it in and the metric depth
they must publish: shared by the node and the bag tool tests.

* a relative network (inverse depth or depth): ``sparse_depth`` mode, with a registered depth image
  built from the network's own prediction through a known map in the space of its output kind;
  the published depth must be that map applied to the prediction. Where the random weights leave
  the prediction at its floor over most of the image (a ReLU head: too little spread to fit a
  scale and shift, which the aligner rightly refuses) the same map is given as ``fixed`` mode;
* a metric network: ``model`` mode, its own metres published as they are; for the networks whose
  scale comes from the focal length (``spec.takes_focal``) the fx of the published CameraInfo;
* Prompt Depth Anything: ``sparse_depth``, whose image is also its prompt; a prompt close to 2 m
  pins its output there whatever the weights.

Random weights make the predictions arbitrary: the maps are chosen from each prediction's range so
that every metric depth lies between 1 and 4 m.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data

from depth_perception.camera import CameraModel
from depth_perception.depth.zoo import list_specs, missing_requirements

TINY = [s.name for s in list_specs() if s.tiny and not missing_requirements(s)]
RGB = cv2.resize(data.astronaut(), (64, 48), interpolation=cv2.INTER_AREA)  # a real image, 4:3
CAMERA = CameraModel.from_intrinsics(60.0, 60.0, 32.0, 24.0, 64, 48)
#: node / bag parameters besides the model and its mode: random weights (the drivers and this
#: test build the same seed-0 weights), no clipping of the 1-4 m depths or of random metric output,
#: no flying-pixel filter or temporal smoothing, no mask sources
PARAMETERS = {"random_init": True, "backend": "torch", "min_depth": 0.001, "max_depth": 1000.0,
              "flying_threshold": 0.0, "metric.temporal": False, "segmentation.source": []}
NEAR_M, FAR_M = 1.0, 4.0
#: pixels whose prediction must vary: the seed-0 weights the drivers build leave some twins' ReLU
#: heads at 0 over most of this image (dpt_hybrid_tiny: 94 %); the scale is checked where it varies
MIN_VARIED = 100
PROMPT_M = (2.0 + 0.01 * np.random.default_rng(0).random(RGB.shape[:2])).astype(np.float32)


@dataclass(frozen=True)
class ZooCase:
    """What to give the driver with ``RGB`` and ``CAMERA`` and what it must publish."""

    parameters: dict  # metric.mode and what it takes
    sparse_m: np.ndarray | None  # HxW float32 metres, NaN = none: the `sparse_depth` image
    expected_m: np.ndarray  # HxW float32 metres
    varied: np.ndarray  # HxW bool: where the network's prediction is above its floor

    @property
    def mode(self) -> str:
        return self.parameters["metric.mode"]


def sparse(depth_m: np.ndarray) -> np.ndarray:
    """One sample in four pixels (NaN elsewhere), like a registered RGB-D or LiDAR image."""
    out = np.full(depth_m.shape, np.nan, np.float32)
    out[::2, ::2] = depth_m[::2, ::2]
    return out


def known_map(prediction: np.ndarray, kind: str) -> tuple[np.ndarray, float, float]:
    """(HxW metres, scale, shift): a relative ``prediction`` mapped onto 1-4 m by a scale and shift
    in the space of ``kind`` (inverse depth: 1/z = scale * p + shift; depth: z = scale * p + shift)."""
    p = prediction.astype(np.float64)
    assert len(np.unique(p)) >= MIN_VARIED, "a (nearly) constant prediction cannot carry a scale"
    lo, hi = float(p.min()), float(p.max())
    if kind == "relative_inverse":  # near = large: 1/z from 1/FAR_M to 1/NEAR_M
        scale = (1.0 / NEAR_M - 1.0 / FAR_M) / (hi - lo)
        shift = 1.0 / FAR_M - scale * lo
        return (1.0 / (scale * p + shift)).astype(np.float32), scale, shift
    scale = (FAR_M - NEAR_M) / (hi - lo)  # relative_depth: far = large
    return (scale * p + NEAR_M - scale * lo).astype(np.float32), scale, NEAR_M - scale * lo


def zoo_case(estimator) -> ZooCase:
    """The case of ``estimator``: a network with the weights the driver builds (the same seed)."""
    spec = estimator.spec
    if "prompt_depth" in spec.extra_inputs:
        # metric, but its prompt (the registered depth) arrives on sparse_depth
        return ZooCase({"metric.mode": "sparse_depth"}, sparse(PROMPT_M), PROMPT_M,
                       np.ones(PROMPT_M.shape, bool))
    inputs = {"fx_px": CAMERA.fx} if spec.takes_focal else {}
    pred = estimator.predict(RGB, **inputs).values
    varied = pred > pred.min()
    if spec.output == "metric":
        return ZooCase({"metric.mode": "model"}, None, pred, varied)
    expected, scale, shift = known_map(pred, spec.output)
    if varied.mean() < 0.5:
        return ZooCase({"metric.mode": "fixed", "metric.fixed_scale": scale,
                        "metric.fixed_shift": shift}, None, expected, varied)
    return ZooCase({"metric.mode": "sparse_depth"}, sparse(expected), expected, varied)


def assert_metric(depth_m: np.ndarray, case: ZooCase, name: str) -> None:
    """The published depth is the case's metric depth (median relative error under 1 %), over the
    image and over the pixels where the prediction varies (a fit that flattened those would still
    match a mostly-floored image)."""
    assert depth_m.shape == case.expected_m.shape, name
    valid = np.isfinite(depth_m) & np.isfinite(case.expected_m)
    assert valid.mean() > 0.9, f"{name} ({case.mode}): {valid.mean():.0%} valid"
    for where, pixels in (("image", valid), ("varied pixels", valid & case.varied)):
        assert pixels.sum() >= MIN_VARIED, f"{name}: only {pixels.sum()} {where}"
        got, want = depth_m[pixels], case.expected_m[pixels]
        error = np.median(np.abs(got - want) / want)
        assert error < 0.01, f"{name} ({case.mode}): median relative error {error:.3%} over the {where}"
