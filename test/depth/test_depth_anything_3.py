"""Depth Anything 3 Mono/Metric: the reference checkpoint's key names load onto our network, the
head predicts depth through exp, and the metric model's scale follows fx at the network input.

The reference code (ByteDance-Seed/Depth-Anything-3) is not a dependency (it pins numpy<2), so its
checkpoint layout is written out here from its modules: ``DepthAnything3`` keeps the network as
``model``; ``DepthAnything3Net`` has ``backbone`` (``DinoV2`` wrapping the ViT as ``pretrained``) and
``head`` (``DPT``, with a sky head beside the depth head, and no first residual unit in
``refinenet4``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage import data

from depth_perception.camera import CameraModel
from depth_perception.depth.depth_anything_3 import CANONICAL_FOCAL_PX, metric_depth_m
from depth_perception.depth.estimator import DepthEstimator
from depth_perception.depth.processing import network_geometry
from depth_perception.depth.weights import (
    WeightsError, build_model, checkpoint_state_dict, convert_original_depth_anything_3,
    to_original_depth_anything, to_original_depth_anything_3,
)
from depth_perception.depth.zoo import get_spec
from depth_perception.metric import MetricConfig
from depth_perception.pipeline import Frame, Pipeline, PipelineConfig

MONO, METRIC = "depth_anything_3_mono_large_tiny", "depth_anything_3_metric_large_tiny"
X = torch.randn(1, 3, 56, 84, generator=torch.Generator().manual_seed(0))


def depth(model, x=X) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).predicted_depth


def reference_keys(layers: int) -> set[str]:
    """The parameter names of the reference's DA3 Mono/Metric checkpoint for a ViT of ``layers``
    blocks (DA3-Large: 24), as its modules name them."""
    vit = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
           "norm.weight", "norm.bias"]
    for i in range(layers):  # dinov2/layers/block.py: norm1, attn(qkv, proj), ls1, norm2, mlp, ls2
        vit += [f"blocks.{i}.{p}" for p in (
            "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
            "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
            "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma")]
    head = []
    for i in range(4):  # dpt.py: projects, resize_layers (2 is Identity), scratch.layerN_rn
        head += [f"projects.{i}.weight", f"projects.{i}.bias", f"scratch.layer{i + 1}_rn.weight"]
        if i != 2:
            head += [f"resize_layers.{i}.weight", f"resize_layers.{i}.bias"]
        units = ("resConfUnit2",) if i == 3 else ("resConfUnit1", "resConfUnit2")  # has_residual=False
        for t in ("weight", "bias"):
            head.append(f"scratch.refinenet{i + 1}.out_conv.{t}")
            head += [f"scratch.refinenet{i + 1}.{u}.conv{c}.{t}" for u in units for c in (1, 2)]
    for t in ("weight", "bias"):
        head += [f"scratch.output_conv1.{t}", f"scratch.output_conv2.0.{t}",
                 f"scratch.output_conv2.2.{t}", f"scratch.sky_output_conv2.0.{t}",
                 f"scratch.sky_output_conv2.2.{t}"]
    return {f"model.backbone.pretrained.{k}" for k in vit} | {f"model.head.{k}" for k in head}


@pytest.fixture(scope="module")
def mono():
    return build_model(MONO, random_init=True, seed=5)


def reference_checkpoint(model) -> dict[str, torch.Tensor]:
    """``model``'s weights in the reference's layout, sky head included (random: it must not
    matter)."""
    sd = to_original_depth_anything_3(checkpoint_state_dict(model), model.config)
    gen = torch.Generator().manual_seed(9)
    fusion = model.config.fusion_hidden_size
    for name, shape in (("0.weight", (32, fusion // 2, 3, 3)), ("0.bias", (32,)),
                        ("2.weight", (1, 32, 1, 1)), ("2.bias", (1,))):
        sd[f"model.head.scratch.sky_output_conv2.{name}"] = torch.randn(shape, generator=gen)
    return sd


def test_the_real_models_are_transformers_depth_anything_v2_large_with_an_exp_head() -> None:
    for name in ("depth_anything_3_mono_large", "depth_anything_3_metric_large"):
        cfg = get_spec(name).make_config()
        # the reference's out_layers [4, 11, 17, 23] are blocks; transformers counts the stem as 0
        assert list(cfg.backbone_config.out_indices) == [5, 12, 18, 24]
        assert (cfg.backbone_config.hidden_size, cfg.backbone_config.num_hidden_layers) == (1024, 24)
        assert list(cfg.neck_hidden_sizes) == [256, 512, 1024, 1024] and cfg.fusion_hidden_size == 256
        assert cfg.head_hidden_size == 32 and cfg.depth_estimation_type == "relative"


def test_the_head_ends_in_exp_so_depth_is_positive_and_unclipped(mono) -> None:
    assert isinstance(mono.head.activation2, torch.nn.Module)
    assert mono.backbone.layernorm.eps == 1e-5  # the reference's final nn.LayerNorm default
    out = depth(mono)
    assert (out > 0).all() and len(torch.unique(out)) > out.numel() // 2
    with torch.no_grad():  # the head's last convolution, through exp
        mono.head.conv3.bias += 1.0
        assert torch.allclose(depth(mono), out * np.e, rtol=1e-5)
        mono.head.conv3.bias -= 1.0


def test_reference_key_names_load_onto_our_network_exactly(mono, tmp_path: Path) -> None:
    sd = reference_checkpoint(mono)
    assert set(sd) == reference_keys(mono.config.backbone_config.num_hidden_layers)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    again = build_model(MONO, weights=tmp_path / "model.safetensors")
    assert torch.equal(depth(mono), depth(again))


def test_the_reference_hub_folder_loads_despite_its_non_transformers_config(mono, tmp_path: Path) -> None:
    """The hub repos hold the reference's model.safetensors and its own config.json."""
    folder = tmp_path / "DA3MONO-LARGE"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_name": "da3mono-large"}))
    save_file({k: v.contiguous() for k, v in reference_checkpoint(mono).items()},
              str(folder / "model.safetensors"))
    assert torch.equal(depth(mono), depth(build_model(MONO, weights=folder)))


def test_the_mapping_fills_only_what_transformers_has_and_never_uses(mono) -> None:
    converted = convert_original_depth_anything_3(reference_checkpoint(mono), mono.config)
    assert not any("sky" in k for k in converted)
    assert torch.count_nonzero(converted["backbone.embeddings.mask_token"]) == 0
    assert torch.count_nonzero(converted["neck.fusion_stage.layers.0.residual_layer1.convolution1.weight"]) == 0


def test_other_checkpoints_are_refused_by_name(mono, tmp_path: Path) -> None:
    da3 = reference_checkpoint(mono)
    torch.save(da3, tmp_path / "da3.pth")
    with pytest.raises(WeightsError, match=r"da3\.pth: a Depth Anything 3 checkpoint, but model "
                                           r"depth_anything_v2_small_tiny"):
        build_model("depth_anything_v2_small_tiny", weights=tmp_path / "da3.pth")
    v2 = build_model("depth_anything_v2_small_tiny", random_init=True)
    torch.save(to_original_depth_anything(checkpoint_state_dict(v2), v2.config), tmp_path / "v2.pth")
    with pytest.raises(WeightsError, match="not a Depth Anything model"):
        build_model(MONO, weights=tmp_path / "v2.pth")
    # an any-view DA3 model carries a camera decoder: not a monocular model
    da3["model.cam_dec.backbone.0.weight"] = torch.zeros(4, 4)
    torch.save(da3, tmp_path / "anyview.pth")
    with pytest.raises(WeightsError, match=r"unexpected key.*cam_dec"):
        build_model(MONO, weights=tmp_path / "anyview.pth")


RGB = cv2.resize(data.astronaut(), (80, 60), interpolation=cv2.INTER_AREA)  # 4:3


def test_metric_depth_is_fx_at_the_network_input_over_300() -> None:
    geo = network_geometry(480, 640, get_spec("depth_anything_3_metric_large"))
    assert geo.net_hw == (378, 504)  # the reference's 504-pixel longer side for a 4:3 camera
    canonical = np.full((480, 640), 2.0, np.float32)
    # fx = 600 px in the 640-wide image is 472.5 px in the 504-wide network input
    np.testing.assert_allclose(metric_depth_m(canonical, geo, 600.0), 2.0 * 472.5 / CANONICAL_FOCAL_PX)
    with pytest.raises(ValueError, match="needs the focal length"):
        metric_depth_m(canonical, geo, None)
    with pytest.raises(ValueError, match="> 0"):
        metric_depth_m(canonical, geo, -1.0)


def test_the_metric_estimator_scales_with_fx_and_the_mono_one_ignores_it() -> None:
    est = DepthEstimator(METRIC, random_init=True, backend="torch", log=None)
    near = est.predict(RGB, fx_px=50.0).values
    np.testing.assert_allclose(est.predict(RGB, fx_px=100.0).values, 2.0 * near, rtol=1e-6)
    with pytest.raises(ValueError, match="needs the focal length"):
        est.predict(RGB)
    mono = DepthEstimator(MONO, random_init=True, backend="torch", log=None)
    assert mono.kind == "relative_depth" and est.kind == "metric"
    np.testing.assert_array_equal(mono.predict(RGB).values, mono.predict(RGB, fx_px=50.0).values)


def test_the_pipeline_takes_the_focal_length_from_camera_info() -> None:
    est = DepthEstimator(METRIC, random_init=True, backend="torch", log=None)
    config = PipelineConfig(min_depth_m=0.001, max_depth_m=1000.0, flying_threshold=0.0, regions=False,
                            segmentation=(), metric=MetricConfig(mode="model", temporal=False))
    depths = []
    for fx in (40.0, 80.0):
        cam = CameraModel.from_intrinsics(fx, fx, 40.0, 30.0, 80, 60)
        result = Pipeline(config, est).process(Frame(rgb=RGB, camera=cam))
        assert result.depth_source == "model"
        depths.append(result.depth_m)
    np.testing.assert_allclose(depths[1], 2.0 * depths[0], rtol=1e-5)
    np.testing.assert_allclose(depths[0], est.predict(RGB, fx_px=40.0).values, rtol=1e-6)


def test_tensorrt_profiles_cover_the_reference_input_of_a_4_3_camera() -> None:
    from depth_perception.depth.estimator import engine_profiles_for

    for name in ("depth_anything_3_mono_large", "depth_anything_3_metric_large"):
        main, extra = engine_profiles_for(get_spec(name))
        # 504 x 378: the reference's default input for a 4:3 image is the optimum
        assert (main.min_hw, main.opt_hw, main.max_hw) == ((378, 378), (378, 504), (756, 756))
        assert extra == {}  # the focal length scales the output on the host, not in the engine


def test_a_hub_id_fetches_the_reference_checkpoint_file(mono, tmp_path: Path, monkeypatch) -> None:
    """The reference's hub repos are not transformers folders: their model.safetensors is fetched
    and mapped. (The download is the only stand-in here: tests never touch the network.)"""
    import huggingface_hub

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference_checkpoint(mono).items()}, str(path))
    asked = []

    def download(repo_id: str, filename: str) -> str:
        asked.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    again = build_model(MONO, weights="depth-anything/DA3MONO-LARGE")
    assert asked == [("depth-anything/DA3MONO-LARGE", "model.safetensors")]
    assert torch.equal(depth(mono), depth(again))

    def offline(repo_id: str, filename: str) -> str:
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsError, match="hub id depth-anything/DA3MONO-LARGE: could not download"):
        build_model(MONO, weights="depth-anything/DA3MONO-LARGE")
