"""Pre/post-processing: aspect kept, patch multiples, output at the input resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from depth_perception.depth.processing import (
    PROMPT_MAX_SIDE, network_geometry, postprocess, preprocess, preprocess_numpy, prompt_from_depth,
)
from depth_perception.depth.zoo import get_spec

DA = get_spec("depth_anything_v2_small")


@pytest.mark.parametrize("hw", [(480, 640), (720, 1280), (640, 480), (518, 518)])
def test_short_side_resize_keeps_aspect_on_patch_multiples(hw: tuple[int, int]) -> None:
    geo = network_geometry(*hw, DA)
    h, w = geo.net_hw
    assert h % 14 == 0 and w % 14 == 0 and min(h, w) == 518
    assert abs(w / h - hw[1] / hw[0]) < 14 / min(h, w)  # rounding to 14 px is the only change
    assert geo.offset_yx == (0, 0)


def test_fixed_size_models_are_letterboxed_not_squashed() -> None:
    geo = network_geometry(480, 640, get_spec("depth_pro"))
    assert geo.net_hw == (1536, 1536) and geo.content_hw == (1152, 1536)
    assert geo.offset_yx == (192, 0)


def test_preprocess_normalises_and_postprocess_returns_input_resolution() -> None:
    rgb = data.astronaut()[:300, :450]  # 2:3, real image
    x, geo = preprocess(rgb, DA)
    assert x.shape == (1, 3, *geo.net_hw) and x.dtype == torch.float32
    mean = torch.tensor(DA.mean).view(3, 1, 1)
    std = torch.tensor(DA.std).view(3, 1, 1)
    img = (x[0] * std + mean).permute(1, 2, 0).numpy()
    assert abs(img.mean() - rgb.mean() / 255) < 0.01  # same picture, just resized
    # a horizontal ramp through the network's resolution comes back as the same ramp
    ramp = torch.linspace(0, 1, geo.net_hw[1]).expand(1, *geo.net_hw)
    out = postprocess(ramp, geo)
    assert out.shape == rgb.shape[:2] and out.dtype == np.float32
    np.testing.assert_allclose(out[0], np.linspace(0, 1, rgb.shape[1]), atol=0.01)


def test_letterbox_border_is_cropped_away() -> None:
    spec = get_spec("dpt_large")
    rgb = np.zeros((100, 200, 3), np.uint8)
    x, geo = preprocess(rgb, spec)
    pred = torch.full((1, *geo.net_hw), -1.0)
    (top, left), (ch, cw) = geo.offset_yx, geo.content_hw
    pred[:, top:top + ch, left:left + cw] = 5.0
    out = postprocess(pred, geo)
    assert out.shape == (100, 200) and np.all(out == 5.0)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 4), np.uint8)])
def test_bad_images_are_rejected_with_a_clear_error(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image must be"):
        preprocess(bad, DA)


def test_input_size_must_be_a_patch_multiple() -> None:
    with pytest.raises(ValueError, match="multiple of 14"):
        network_geometry(480, 640, DA, input_size=500)


@pytest.mark.parametrize("hw", [(2, 600), (600, 2), (1, 5)])
def test_a_thin_image_is_refused_before_the_network_input_grows_with_it(hw) -> None:
    spec = get_spec("depth_anything_v2_small_tiny")
    with pytest.raises(ValueError, match=rf"image {hw[1]}x{hw[0]} has an aspect ratio of .* more "
                                         r"than max_aspect_ratio 4 allows"):
        network_geometry(*hw, spec)
    assert network_geometry(100, 400, spec).net_hw[1] <= 4 * network_geometry(100, 400, spec).net_hw[0]
    wide = network_geometry(*hw, spec, max_aspect_ratio=1000)  # a user may raise the limit
    assert max(wide.net_hw) > 4 * min(wide.net_hw)


def test_a_letterboxed_model_takes_any_aspect_ratio() -> None:
    spec = get_spec("dpt_large_tiny")
    assert network_geometry(2, 600, spec).net_hw == (spec.input_size, spec.input_size)


def test_the_estimator_refuses_a_thin_image_without_allocating_its_input() -> None:
    from depth_perception.depth.estimator import DepthEstimator

    est = DepthEstimator("depth_anything_v2_small_tiny", random_init=True, backend="torch", log=None)
    with pytest.raises(ValueError, match="aspect ratio of 300.0"):
        est.predict(np.zeros((2, 600, 3), np.uint8))
    assert est.predict(np.zeros((60, 80, 3), np.uint8)).values.shape == (60, 80)


def test_sparse_samples_become_a_dense_low_resolution_prompt() -> None:
    # LiDAR-like samples on a 480x640 image: 1 m left of column 318, 3 m right of it, 2 % coverage
    rng = np.random.default_rng(0)
    depth = np.where(np.arange(640) < 318, 1.0, 3.0)[None, :].repeat(480, axis=0).astype(np.float32)
    sparse = np.where(rng.random(depth.shape) < 0.02, depth, np.nan).astype(np.float32)
    prompt = prompt_from_depth(sparse)
    assert prompt.dtype == np.float32 and max(prompt.shape) <= PROMPT_MAX_SIDE
    assert prompt.shape == (160, 214)  # pooled by 3, aspect kept
    assert np.isfinite(prompt).all()  # holes take their nearest sample, never 0
    assert set(np.unique(prompt)) == {1.0, 3.0}
    np.testing.assert_array_equal(prompt[:, :100], 1.0)
    np.testing.assert_array_equal(prompt[:, 110:], 3.0)


def test_a_small_prompt_keeps_its_samples_and_an_empty_one_is_refused() -> None:
    small = np.array([[1.0, np.nan, np.nan, 2.0], [0.0, np.nan, np.inf, -1.0]], np.float32)
    np.testing.assert_array_equal(prompt_from_depth(small), [[1, 1, 2, 2], [1, 1, 2, 2]])
    with pytest.raises(ValueError, match="no valid"):
        prompt_from_depth(np.full((8, 8), np.nan, np.float32))


# the torch-free path (ONNX Runtime) must feed the network what the torch path feeds it: shrinking
# (antialiased), enlarging, square, and letterboxed inputs, on a real photo
@pytest.mark.parametrize("name, hw", [("depth_anything_v2_small", (300, 450)),  # enlarged
                                      ("depth_anything_v2_small", (1080, 1440)),  # shrunk
                                      ("depth_anything_v2_small", (518, 518)),  # as is
                                      ("dpt_large", (480, 640)),  # letterboxed
                                      ("student_tabletop", (480, 640))])
def test_numpy_preprocessing_matches_the_torch_path(name: str, hw: tuple[int, int]) -> None:
    spec = get_spec(name)
    big = np.tile(data.astronaut(), (3, 3, 1))
    rgb = np.ascontiguousarray(big[:hw[0], :hw[1]])
    x_torch, geo = preprocess(rgb, spec)
    x_numpy, geo_numpy = preprocess_numpy(rgb, spec)
    assert geo_numpy == geo
    assert isinstance(x_numpy, np.ndarray) and x_numpy.dtype == np.float32
    assert x_numpy.shape == tuple(x_torch.shape)
    # normalised units (1 = one std, ~57 grey levels): 1e-3 is far below one grey level
    np.testing.assert_allclose(x_numpy, x_torch.numpy(), atol=1e-3)
    assert np.abs(x_numpy - x_torch.numpy()).mean() < 1e-5


@pytest.mark.parametrize("src, dst", [((480, 640), (144, 192)), ((1080, 1440), (518, 690)),
                                      ((97, 301), (13, 300)), ((480, 640), (479, 120))])
def test_shrinking_is_pillows_antialiased_bicubic(src, dst) -> None:
    """The separable sparse resampling the torch-free path uses equals Pillow's float-mode bicubic
    (what torch's antialias=True computes) channel by channel."""
    from PIL import Image

    from depth_perception.depth.processing import _resize_bicubic

    img = np.random.default_rng(0).random((*src, 3), dtype=np.float32)
    got = _resize_bicubic(img, dst)
    assert got.shape == (*dst, 3) and got.dtype == np.float32
    for c in range(3):
        ref = np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c]), mode="F")
                         .resize(dst[::-1], Image.Resampling.BICUBIC))
        np.testing.assert_allclose(got[..., c], ref, atol=2e-6)


@pytest.mark.parametrize("name, hw", [("depth_anything_v2_small", (300, 450)),
                                      ("depth_anything_v2_small", (1080, 1440)),
                                      ("dpt_large", (480, 640))])
def test_numpy_postprocessing_matches_the_torch_path(name: str, hw: tuple[int, int]) -> None:
    geo = network_geometry(*hw, get_spec(name))
    pred = np.random.default_rng(0).random((1, *geo.net_hw), dtype=np.float32)
    from_numpy = postprocess(pred, geo)  # OpenCV
    from_torch = postprocess(torch.from_numpy(pred), geo)
    assert from_numpy.shape == hw and from_numpy.dtype == np.float32
    np.testing.assert_allclose(from_numpy, from_torch, atol=1e-4)


# ------------------------------------------------------------------------ images uploaded ahead


def test_preprocess_takes_an_image_already_on_the_device_as_a_tensor() -> None:
    rgb = data.astronaut()[::4, ::3]
    x_np, geo_np = preprocess(rgb, DA)
    x_t, geo_t = preprocess(torch.from_numpy(np.ascontiguousarray(rgb)), DA)
    assert geo_t == geo_np
    torch.testing.assert_close(x_t, x_np, rtol=0, atol=0)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(torch.zeros(10, 10, 3), DA)


def test_the_pinned_uploader_is_for_cuda_devices_only() -> None:
    from depth_perception.depth.processing import ImageUploader

    with pytest.raises(ValueError, match="CUDA"):
        ImageUploader("cpu")


def _cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


@pytest.mark.gpu
def test_uploaded_images_arrive_intact_while_the_next_is_being_copied() -> None:
    from depth_perception.depth.processing import ImageUploader

    _cuda()
    up = ImageUploader("cuda", slots=2)
    frames = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8)
              for i in range(5)]
    staged = up.upload(frames[0])
    for i in range(len(frames)):
        nxt = up.upload(frames[i + 1]) if i + 1 < len(frames) else None  # queued ahead
        got = up.take(staged)
        assert got.is_cuda
        np.testing.assert_array_equal(got.cpu().numpy(), frames[i])
        up.release(staged)
        staged = nxt


@pytest.mark.gpu
def test_an_upload_overwritten_before_use_is_refused() -> None:
    from depth_perception.depth.processing import ImageUploader

    _cuda()
    up = ImageUploader("cuda", slots=2)
    rgb = np.zeros((8, 8, 3), np.uint8)
    first = up.upload(rgb)
    up.upload(rgb)
    up.upload(rgb)  # the third wraps onto the first's slot
    with pytest.raises(ValueError, match="overwritten"):
        up.take(first)
