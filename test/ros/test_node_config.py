"""config/*.yaml and the launch file agree with the parameters the node declares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ament_prefix import use_source_tree_prefix
from ros_checks import TOOLS_HINT, require_module

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


def load_launch_file():
    """The launch file as a module, imported with the real launch / launch_ros."""
    require_module("launch_ros", TOOLS_HINT)
    import importlib.util

    use_source_tree_prefix()
    spec = importlib.util.spec_from_file_location("dp_launch", REPO / "launch/depth_perception.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_file_declares_an_argument_for_every_input_and_override():
    module = load_launch_file()
    declared = {a.name for a in module.generate_launch_description().get_launch_arguments()}
    assert set(module.OVERRIDES) <= declared
    assert set(module.INPUTS.values()) <= declared
    assert {"camera", "right_camera", "image", "namespace", "config", "use_rviz"} <= declared
    # every subscription the node can make is reachable from an argument
    assert set(module.INPUTS) == {"sparse_depth", "lidar_points", "odometry", "masks", "detections",
                                  "prompt"}


def test_parameters_the_launch_file_sets_are_declared():
    from depth_perception.config import DEFAULTS

    module = load_launch_file()
    assert set(module.OVERRIDES.values()) <= set(DEFAULTS), \
        sorted(set(module.OVERRIDES.values()) - set(DEFAULTS))
    assert module._parameter("input_size", "364") == 364
    assert module._parameter("segmentation.source", "topic, geometric") == ["topic", "geometric"]
    assert module._parameter("stereo", "True") is True
    with pytest.raises(ValueError, match="input_size"):
        module._parameter("input_size", "big")


@pytest.mark.parametrize("namespace,outputs", [("depth_perception", "/depth_perception/"),
                                               ("robot1/perception", "/robot1/perception/"),
                                               ("", "/")])
def test_rviz_topics_follow_the_namespace_and_camera(namespace, outputs, tmp_path):
    module = load_launch_file()
    path = Path(module._rviz_config(str(REPO), namespace, "/cam/left/image_rect"))
    try:
        doc = yaml.safe_load(path.read_text())
    finally:
        path.unlink()
    displays = doc["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if isinstance(d.get("Topic"), dict)}
    assert "/cam/left/image_rect" in topics
    node_topics = topics - {"/cam/left/image_rect"}
    assert node_topics == {outputs + t.split("/depth_perception/", 1)[1]
                           for t in rviz_topics() if t.startswith("/depth_perception/")}


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


def test_the_launch_file_gives_the_node_the_large_data_dds_profile_unless_one_is_set(tmp_path):
    """auto: the packaged Fast DDS profile (config/fastdds_large_data.xml) for the node alone,
    unless the user's environment names one; none: the environment as it is; or a file."""
    module = load_launch_file()
    share = str(REPO)  # the source tree has the share folder's config/
    packaged = str(REPO / "config" / "fastdds_large_data.xml")
    assert module._dds_environment("auto", share, {}) == {
        "FASTRTPS_DEFAULT_PROFILES_FILE": packaged, "FASTDDS_DEFAULT_PROFILES_FILE": packaged}
    assert module._dds_environment("auto", share,
                                   {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}) == {}
    assert module._dds_environment("none", share, {}) == {}
    own = tmp_path / "own.xml"
    own.write_text("<profiles/>")
    assert set(module._dds_environment(str(own), share, {}).values()) == {str(own)}
    with pytest.raises(FileNotFoundError, match="dds_profile"):
        module._dds_environment(str(tmp_path / "missing.xml"), share, {})
    declared = {a.name for a in module.generate_launch_description().get_launch_arguments()}
    assert "dds_profile" in declared
