"""The content check before depth: black, saturated, flat and pure-noise frames are refused with the
reason; real photographs and rendered scenes, darkened or brightened, never are."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from depth_perception.image_check import (
    ImageCheckError,
    ImageCheckParams,
    check_image_content,
)
from depth_perception.scene import generate_tabletop

H, W = 240, 320


def _rgb(image: np.ndarray) -> np.ndarray:
    """A scikit-image sample as HxWx3 uint8 RGB (grey images repeated, alpha dropped)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def photographs() -> dict[str, np.ndarray]:
    left, right, _ = data.stereo_motorcycle()
    photos = {name: _rgb(getattr(data, name)()) for name in
              ("astronaut", "coffee", "chelsea", "rocket", "camera", "moon", "grass", "gravel", "brick")}
    photos.update(motorcycle_left=left, motorcycle_right=right)
    return photos


def _scaled(rgb: np.ndarray, gain: float, noise: float = 0.0) -> np.ndarray:
    """``rgb`` with its light multiplied by ``gain``, plus Gaussian sensor noise of ``noise`` levels."""
    out = rgb.astype(np.float64) * gain
    if noise:
        out += np.random.default_rng(0).normal(0.0, noise, rgb.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_real_photographs_dim_or_bright_are_accepted():
    for name, rgb in photographs().items():
        for how, image in {"as shot": rgb, "darkened x0.1": _scaled(rgb, 0.1),
                           "darkened x0.1 + noise": _scaled(rgb, 0.1, noise=2.0),
                           "brightened x2": _scaled(rgb, 2.0)}.items():
            check = check_image_content(image)
            assert check.ok and check.reason == "", (name, how, check)
            assert check.correlation > 0.35, (name, how, check)


@pytest.mark.parametrize("size", [(64, 48), (320, 240)])
def test_rendered_scenes_dim_or_bright_are_accepted(size):
    for seed in range(12):
        scene = generate_tabletop(seed, width=size[0], height=size[1])
        for how, image in {"as rendered": scene.rgb, "right image": scene.right_rgb,
                           "darkened x0.1": _scaled(scene.rgb, 0.1),
                           "brightened x1.5": _scaled(scene.rgb, 1.5)}.items():
            check = check_image_content(image)
            assert check.ok, (seed, how, check)


def degenerate_frames(shape=(H, W, 3)) -> dict[str, np.ndarray]:
    """One frame of every kind the check refuses, as a camera would deliver it (with sensor noise)."""
    rng = np.random.default_rng(1)
    return {
        "black": np.clip(rng.normal(2.0, 2.0, shape), 0, 255).astype(np.uint8),  # lens cap on
        "saturated": np.clip(rng.normal(262.0, 6.0, shape), 0, 255).astype(np.uint8),  # blinded by a lamp
        "flat": np.full(shape, 128, np.uint8),  # a blank test pattern
        "noise": rng.integers(0, 256, shape, dtype=np.uint8),  # no spatial structure
    }


@pytest.mark.parametrize("kind", ["black", "saturated", "flat", "noise"])
def test_degenerate_frames_are_refused_with_the_reason(kind):
    check = check_image_content(degenerate_frames()[kind])
    assert not check.ok and check.reason.startswith(f"{kind} frame: ")


def test_measurements_explain_the_reasons():
    frames = degenerate_frames()
    black = check_image_content(frames["black"])
    assert black.brightness_p99 < 10 and "below black_level 10" in black.reason
    saturated = check_image_content(frames["saturated"])
    assert saturated.clipped_fraction > 0.95 and "more than max_clipped_fraction 0.95" in saturated.reason
    flat = check_image_content(frames["flat"])
    assert flat.contrast == 0.0 and np.isnan(flat.correlation) and "below min_contrast 0.5" in flat.reason
    noise = check_image_content(frames["noise"])
    assert abs(noise.correlation) < 0.05 and noise.contrast > 40
    assert "correlation 0.0" in noise.reason and "no spatial structure" in noise.reason
    # a noisy grey frame is not flat (the noise has contrast) but still refused, as noise
    grey_noise = np.clip(np.random.default_rng(2).normal(128.0, 3.0, (H, W, 3)), 0, 255).astype(np.uint8)
    assert check_image_content(grey_noise).reason.startswith("noise frame: ")


def test_thresholds_are_parameters():
    frames = degenerate_frames()
    assert check_image_content(frames["black"], ImageCheckParams(black_level=0.0)).reason.startswith(
        "noise frame")  # no longer black, and still no structure
    assert check_image_content(frames["noise"], ImageCheckParams(min_correlation=0.0)).ok
    assert check_image_content(frames["flat"], ImageCheckParams(min_contrast=0.0)).ok
    dim = (_rgb(data.astronaut()) * 0.1).astype(np.uint8)
    assert check_image_content(dim, ImageCheckParams(black_level=100.0)).reason.startswith("black frame")


def test_large_images_are_measured_shrunk_with_the_same_verdicts():
    big = np.kron(_rgb(data.coffee()), np.ones((4, 4, 1), np.uint8))  # 1600 x 2400
    assert check_image_content(big).ok
    noise = degenerate_frames((1200, 1600, 3))["noise"]
    assert check_image_content(noise).reason.startswith("noise frame")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_image_content(np.zeros((4, 4), np.uint8)), "HxWx3 uint8"),
        (lambda: check_image_content(np.zeros((4, 4, 3), np.float32)), "HxWx3 uint8"),
        (lambda: check_image_content(np.zeros((1, 4, 3), np.uint8)), "at least 2x2"),
        (lambda: ImageCheckParams(max_clipped_fraction=1.5), "max_clipped_fraction"),
        (lambda: ImageCheckParams(black_level=-1.0), "black_level"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ImageCheckError, match=message):
        call()
