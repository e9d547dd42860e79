"""The model zoo: names, semantics and the tiny twins."""

from __future__ import annotations

import pytest

from depth_perception.depth import engine_keys, torch_backend
from depth_perception.depth.zoo import (
    BACKEND_PRECISIONS, ModelSpec, UnknownModelError, backends, get_spec, list_specs, metric_modes,
)
from depth_perception.metric import MODES, PREDICTION_KINDS

REQUIRED = [
    "depth_anything_v2_small", "depth_anything_v2_base", "depth_anything_v2_large",
    "depth_anything_v2_metric_indoor_small", "depth_anything_v2_metric_outdoor_large",
    "depth_anything_small", "dpt_large", "dpt_hybrid", "midas_beit_large_512", "zoedepth_nyu",
    "depth_pro", "prompt_depth_anything_small", "marigold_depth",
    "depth_anything_3_mono_large", "depth_anything_3_metric_large",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_models_are_listed_with_their_semantics(name: str) -> None:
    spec = get_spec(name)
    assert spec.output in PREDICTION_KINDS  # what the metric aligner takes
    assert spec.licence and spec.input_size > 0 and spec.patch_multiple >= 1
    assert len(spec.mean) == len(spec.std) == 3


def test_marigold_predicts_affine_invariant_depth_not_inverse_depth() -> None:
    assert get_spec("marigold_depth").output == get_spec("marigold_depth_tiny").output == "relative_depth"
    assert {s.output for s in list_specs()} <= set(PREDICTION_KINDS)


def test_every_family_has_a_tiny_twin_of_the_same_architecture() -> None:
    families = {s.family for s in list_specs(include_tiny=False)}
    tiny = {s.family: s for s in list_specs() if s.tiny}
    assert families == set(tiny)
    twin = get_spec("depth_anything_v2_metric_indoor_small_tiny")
    assert twin.model_class == get_spec("depth_anything_v2_metric_indoor_small").model_class
    assert twin.output == "metric" and twin.hub_id is None and "random" in twin.licence


def test_metric_models_state_their_range_and_licences_follow_the_model_cards() -> None:
    assert get_spec("depth_anything_v2_metric_indoor_base").max_depth_m == 20
    assert get_spec("depth_anything_v2_metric_outdoor_small").max_depth_m == 80
    assert get_spec("depth_anything_v2_small").licence == "Apache-2.0"
    assert "NC" in get_spec("depth_anything_v2_base").licence
    assert "NC" in get_spec("depth_anything_v2_large").licence
    # Depth Anything 3: the monocular Large models are Apache-2.0 (the any-view Large is not)
    assert get_spec("depth_anything_3_mono_large").licence == "Apache-2.0"
    assert get_spec("depth_anything_3_metric_large").licence == "Apache-2.0"


def test_depth_anything_3_outputs_depth_and_its_metric_model_takes_the_focal_length() -> None:
    mono, metric = get_spec("depth_anything_3_mono_large"), get_spec("depth_anything_3_metric_large")
    assert mono.output == "relative_depth" and metric.output == "metric"  # depth, not disparity
    assert metric.takes_focal and get_spec("depth_pro").takes_focal and not mono.takes_focal
    assert metric.max_depth_m is None  # exp head: unbounded
    assert get_spec("depth_anything_3_metric_large_tiny").takes_focal
    assert [s.name for s in list_specs() if s.takes_focal and not s.tiny] == [
        "depth_anything_3_metric_large", "depth_pro"]


def test_real_configs_have_the_published_sizes() -> None:
    cfg = get_spec("depth_anything_v2_base").make_config()
    assert (cfg.backbone_config.hidden_size, cfg.backbone_config.num_hidden_layers) == (768, 12)
    assert list(cfg.neck_hidden_sizes) == [96, 192, 384, 768] and cfg.fusion_hidden_size == 128
    metric = get_spec("depth_anything_v2_metric_outdoor_large").make_config()
    assert metric.depth_estimation_type == "metric" and metric.max_depth == 80
    assert list(metric.backbone_config.out_indices) == [5, 12, 18, 24]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="depth_anything_v2_small") as err:
        get_spec("depth_anything_v3")
    assert isinstance(err.value, ValueError)
    assert get_spec("Depth-Anything-V2-Small") is get_spec("depth_anything_v2_small")
    spec = get_spec("dpt_large")
    assert isinstance(spec, ModelSpec) and get_spec(spec) is spec


def test_backends_and_precisions_are_the_backends_own() -> None:
    assert BACKEND_PRECISIONS["torch"] == torch_backend.PRECISIONS
    assert BACKEND_PRECISIONS["tensorrt"] == engine_keys.PRECISIONS
    assert backends(get_spec("depth_anything_v2_small")) == {**BACKEND_PRECISIONS,
                                                             "openvino": ("fp32", "int8")}
    assert backends(get_spec("marigold_depth")) == {"torch": BACKEND_PRECISIONS["torch"]}


def test_metric_modes_follow_the_output_kind() -> None:
    for spec in list_specs():
        modes = metric_modes(spec)
        assert set(modes) <= set(MODES) and "auto" in modes
        # only a metric network has a scale of its own to publish as is
        assert ("model" in modes) == (spec.output == "metric")
    # a relative network needs a signal; a prompted one gets its depth from the prompt's topics
    assert "plane" in metric_modes(get_spec("marigold_depth"))
    assert set(metric_modes(get_spec("prompt_depth_anything_small"))) == {
        "auto", "model", "sparse_depth", "pointcloud"}
