"""Weights: every supported format reloads to identical output; bad weights give one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depth_perception.depth.weights import (
    WeightsError, build_model, checkpoint_state_dict, save_weights, to_original_depth_anything,
)
from depth_perception.depth.zoo import get_spec

X = torch.randn(1, 3, 56, 84, generator=torch.Generator().manual_seed(0))


def depth(model, x=X) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).predicted_depth


@pytest.fixture(scope="module")
def tiny():
    return build_model("depth_anything_v2_metric_indoor_small_tiny", random_init=True, seed=3)


def test_random_init_is_seeded_and_not_flat(tiny) -> None:
    again = build_model("depth_anything_v2_metric_indoor_small_tiny", random_init=True, seed=3)
    other = build_model("depth_anything_v2_metric_indoor_small_tiny", random_init=True, seed=4)
    assert torch.equal(depth(tiny), depth(again))
    assert not torch.equal(depth(tiny), depth(other))
    assert depth(tiny).std() > 0.01  # transformers' own init would give a constant map


@pytest.mark.parametrize("fmt", ["folder", "model.safetensors", "model.pth"])
def test_saved_weights_reload_to_identical_output(tiny, tmp_path: Path, fmt: str) -> None:
    path = save_weights(tiny, tmp_path / fmt)
    again = build_model("depth_anything_v2_metric_indoor_small_tiny", weights=path)
    assert torch.equal(depth(tiny), depth(again))


@pytest.mark.parametrize("name", ["depth_anything_v2_metric_indoor_small_tiny", "depth_anything_small_tiny"])
def test_original_depth_anything_checkpoint_maps_onto_transformers(name: str, tmp_path: Path) -> None:
    """An original-layout checkpoint (pretrained.* / depth_head.* keys, fused qkv) loads exactly."""
    model = build_model(name, random_init=True, seed=5)
    original = to_original_depth_anything(checkpoint_state_dict(model), model.config)
    assert "pretrained.blocks.0.attn.qkv.weight" in original
    assert "depth_head.scratch.refinenet4.out_conv.weight" in original
    torch.save({"model": original}, tmp_path / "depth_anything_v2_vits.pth")
    again = build_model(name, weights=tmp_path / "depth_anything_v2_vits.pth")
    assert torch.equal(depth(model), depth(again))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"not found: .*nothing\.pth"):
        build_model("depth_anything_v2_small_tiny", weights=tmp_path / "nothing.pth")


def test_truncated_safetensors_is_named(tiny, tmp_path: Path) -> None:
    path = save_weights(tiny, tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"w\.safetensors: not a readable safetensors file"):
        build_model("depth_anything_v2_metric_indoor_small_tiny", weights=path)


def test_truncated_torch_checkpoint_is_named(tiny, tmp_path: Path) -> None:
    path = save_weights(tiny, tmp_path / "w.pth")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"w\.pth: not a readable torch checkpoint"):
        build_model("depth_anything_v2_metric_indoor_small_tiny", weights=path)


def test_empty_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match="w.safetensors: file is empty"):
        build_model("depth_anything_v2_small_tiny", weights=tmp_path / "w.safetensors")


def test_weights_of_another_model_list_what_does_not_match(tiny, tmp_path: Path) -> None:
    path = save_weights(tiny, tmp_path / "da.safetensors")
    with pytest.raises(WeightsError, match=r"da\.safetensors: weights do not match model dpt_large_tiny: "
                                           r"\d+ missing key"):
        build_model("dpt_large_tiny", weights=path)
    sd = checkpoint_state_dict(tiny)
    sd["head.conv3.weight"] = torch.zeros(1, 4, 1, 1)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"shape mismatch.*head\.conv3\.weight"):
        build_model("depth_anything_v2_metric_indoor_small_tiny", weights=tmp_path / "shape.pth")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": {"x": torch.zeros(1)}, "args": Path("/tmp")}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match=r"evil\.pth: refused to load"):
        build_model("depth_anything_v2_small_tiny", weights=tmp_path / "evil.pth")


def test_folder_without_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no config.json"):
        build_model("depth_anything_v2_small_tiny", weights=tmp_path)


def test_weights_or_random_init_is_required() -> None:
    with pytest.raises(ValueError, match="random_init"):
        build_model(get_spec("depth_anything_v2_small_tiny"))
