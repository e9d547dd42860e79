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
        ({"regions.implementation": "fast"}, "regions.implementation must be auto, compiled or numpy"),
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


def test_readme_documents_every_parameter():
    from depth_perception.config import PARAMETERS

    readme = (REPO / "README.md").read_text()
    missing = [p.name for p in PARAMETERS if f"`{p.name}`" not in readme]
    assert not missing, f"README lacks {missing}; paste config.parameters_markdown()"
