"""Node parameters, defined once in depth_perception.config and read from config/*.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from depth_perception.config import DEFAULTS, load_parameters, pipeline_config, validate_parameters

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_profiles_load_and_make_a_pipeline_config(path):
    params = load_parameters(path)
    config = pipeline_config(params)
    assert config.min_depth_m == params.get("min_depth", DEFAULTS["min_depth"])


def test_nested_groups_become_dotted_names(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("depth_perception:\n  ros__parameters:\n    stereo:\n      block_size: 7\n")
    assert load_parameters(f) == {"stereo.block_size": 7}


@pytest.mark.parametrize(
    "values, reason",
    [
        ({"min_depth": 3.0, "max_depth": 2.0}, "min_depth < max_depth"),
        ({"depth_encoding": "8UC1"}, "depth_encoding"),
        ({"stereo.num_disparities": 40}, "multiple of 16"),
        ({"stereo.block_size": 4}, "odd"),
        ({"max_depht": 3.0}, "unknown parameter"),
        ({"queue_size": 0}, "queue_size must be in"),
        ({"stereo": "yes"}, "stereo must be a bool"),
        ({"regions.implementation": "fast"}, "regions.implementation must be one of auto, compiled, numpy"),
    ],
)
def test_invalid_values_are_named(values, reason):
    assert reason in validate_parameters(values)
    with pytest.raises(ValueError, match=reason.split()[0]):
        pipeline_config(values)


def test_regions_implementation_reaches_the_region_params(monkeypatch):
    from depth_perception import config

    assert pipeline_config({"regions.implementation": "numpy"}).region_params.implementation == "numpy"
    monkeypatch.setattr(config, "kernel_available", lambda: False)
    assert "not built" in validate_parameters({"regions.implementation": "compiled"})
    assert validate_parameters({"regions.implementation": "auto"}) is None


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such parameter file"):
        load_parameters(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_parameters(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("node:\n  other: 1\n")
    with pytest.raises(ValueError, match="no ros__parameters"):
        load_parameters(empty)


def test_readme_parameter_table_is_the_generated_one():
    from depth_perception.config import parameters_markdown

    readme = (REPO / "README.md").read_text()
    assert parameters_markdown() + "\n" in readme, \
        "README's parameter table is stale: paste depth_perception.config.parameters_markdown()"


def test_default_profile_is_the_generated_one():
    from depth_perception.config import DEFAULTS, default_yaml

    assert (REPO / "config" / "default.yaml").read_text() == default_yaml(), \
        "config/default.yaml is stale: write depth_perception.config.default_yaml() to it"
    assert load_parameters(REPO / "config" / "default.yaml") == DEFAULTS


def test_every_rule_lives_on_a_dataclass_field():
    """The ROS ranges and choices are the fields' own: a library user constructing the dataclass
    meets the same rule as `ros2 param set`."""
    from depth_perception.config import PARAMETERS
    from depth_perception.metric import MetricConfig
    from depth_perception.regions import RegionError, RegionParams

    assert all(p.section is not None for p in PARAMETERS)
    assert "metric.mode must be one of" in validate_parameters({"metric.mode": "lidar"})
    with pytest.raises(ValueError, match="metric mode must be one of"):
        MetricConfig(mode="lidar")
    assert "regions.erosion_px must be in [0, 50]" in validate_parameters({"regions.erosion_px": 99})
    with pytest.raises(RegionError, match="regions erosion_px must be in"):
        RegionParams(erosion_px=99)


@pytest.mark.parametrize("values,reason", [
    ({"metric.max_residual": 0.0}, "metric.max_residual must be > 0"),
    ({"metric.mode": "fixed", "metric.fixed_scale": 0.0}, "metric.fixed_scale > 0"),
    ({"metric.mode": "fixed", "metric.fixed_scale": -1.0}, "metric.fixed_scale > 0"),
    ({"gripper.min_range": 3.0}, "gripper.min_range < gripper.max_range"),
    ({"min_depth": 5.0, "max_depth": 1.0}, "min_depth < max_depth"),
])
def test_values_the_pipeline_would_refuse_are_refused_by_validation(values, reason):
    assert reason in validate_parameters(values)
    with pytest.raises(ValueError, match=reason.replace("[", r"\[")):
        pipeline_config(values)
