"""config/*.yaml and the launch file agree with the parameters the node declares."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def config_parameters(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    (section,) = doc.values()  # one node section ("/**")
    return section["ros__parameters"]


def test_there_are_config_profiles():
    assert {"default.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_parameter_is_declared_and_accepted(rclpy_context, path):
    from rclpy.parameter import Parameter

    from depth_perception.ros.node import DepthPerceptionNode

    values = config_parameters(path)
    node = DepthPerceptionNode(context=rclpy_context, parameter_overrides=[
        Parameter(k, value=v) for k, v in values.items()])
    try:
        for name, value in values.items():
            assert node.has_parameter(name), f"{path.name}: {name} is not declared by the node"
            assert node.get_parameter(name).value == value
    finally:
        node.destroy_node()


def test_launch_file_names_the_installed_executable_and_remaps_declared_inputs():
    """launch/launch_ros are not installable here, so read the launch file's syntax tree."""
    source = (REPO / "launch" / "depth_perception.launch.py").read_text()
    tree = ast.parse(source)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert "depth_perception_node" in strings
    setup = (REPO / "setup.py").read_text()
    assert "depth_perception_node = depth_perception.ros.node:main" in setup
    assert {"image", "camera_info", "right/image", "right/camera_info"} <= strings
    assert {"model", "backend", "precision", "use_rviz", "config", "namespace"} <= strings


def test_parameters_the_launch_file_sets_are_declared():
    from depth_perception.config import DEFAULTS

    tree = ast.parse((REPO / "launch" / "depth_perception.launch.py").read_text())
    overrides = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                     and any(getattr(t, "id", "") == "OVERRIDES" for t in n.targets))
    params = {v.value for v in overrides.values} | {"stereo"}
    assert params <= set(DEFAULTS), sorted(params - set(DEFAULTS))


def test_launch_file_runs_on_a_robot():
    pytest.importorskip("launch", reason="ROS 2 launch is not installable here (robot-only test)")
    pytest.importorskip("launch_ros", reason="launch_ros is not installable here (robot-only test)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("dp_launch", REPO / "launch/depth_perception.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities


def rviz_topics() -> set[str]:
    doc = yaml.safe_load((REPO / "config/depth_perception.rviz").read_text())
    displays = doc["Visualization Manager"]["Displays"]
    return {d["Topic"]["Value"] for d in displays if isinstance(d.get("Topic"), dict)}


def test_every_topic_rviz_shows_is_published_by_the_node(rclpy_context):
    from depth_perception.ros.node import DepthPerceptionNode

    node = DepthPerceptionNode(context=rclpy_context, namespace="depth_perception")
    try:
        published = {name for name, _ in node.get_publisher_names_and_types_by_node(
            "depth_perception", "/depth_perception")}
        shown = {t for t in rviz_topics() if t.startswith("/depth_perception/")}
        assert shown, "the RViz config shows none of the node's outputs"
        assert shown <= published, f"shown but not published: {sorted(shown - published)}"
        assert {"/depth_perception/depth", "/depth_perception/points",
                "/depth_perception/regions/markers"} <= published
    finally:
        node.destroy_node()
