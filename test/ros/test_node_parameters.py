"""Parameters of a running node: bad values are refused with the reason and change nothing, a
pipeline that cannot be built leaves the running one in place, the value accepted last wins even
while the model loads, and bad start-up parameters end the process with one line each."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest


@pytest.fixture
def node(rclpy_context):
    from depth_perception.ros.node import DepthPerceptionNode

    n = DepthPerceptionNode(context=rclpy_context)
    assert n._ready.wait(timeout=30.0), n.last_error
    try:
        yield n
    finally:
        n.destroy_node()


def _set(node, **values):
    from rclpy.parameter import Parameter

    return node.set_parameters([Parameter(name.replace("__", "."), value=v)
                                for name, v in values.items()])


@pytest.mark.parametrize("name,value,reason", [
    ("metric.max_residual", 0.0, "metric.max_residual must be > 0"),
    ("gripper.min_range", 5.0, "gripper.min_range < gripper.max_range"),
    ("regions.implementation", "fast", "regions.implementation must be one of"),
    ("depth_encoding", "8UC1", "depth_encoding must be one of"),
])
def test_a_bad_value_at_run_time_is_refused_with_the_reason(node, name, value, reason):
    from rclpy.parameter import Parameter

    before = node._pipeline
    (result,) = node.set_parameters([Parameter(name, value=value)])
    assert not result.successful and reason in result.reason
    assert node._pipeline is before and node.get_parameter(name).value != value
    (ok,) = node.set_parameters([Parameter("max_depth", value=4.0)])  # still takes good values
    assert ok.successful and node._pipeline.config.max_depth_m == 4.0


def test_a_pipeline_that_cannot_be_built_keeps_the_running_one(node, monkeypatch):
    before = node._pipeline

    def fails(config):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(node._models, "pipeline", fails)
    (result,) = _set(node, max_depth=3.0)
    assert not result.successful and "out of memory" in result.reason
    assert node._pipeline is before and node.get_parameter("max_depth").value == 20.0


def test_the_value_set_while_the_model_loads_wins(rclpy_context, monkeypatch):
    from depth_perception.ros import node as node_module

    loading, release = threading.Event(), threading.Event()
    real = node_module.load_models

    def slow_load(values, **kwargs):
        loading.set()
        release.wait(timeout=10.0)
        return real(values, **kwargs)

    monkeypatch.setattr(node_module, "load_models", slow_load)
    n = node_module.DepthPerceptionNode(context=rclpy_context)
    try:
        assert loading.wait(timeout=10.0)
        (result,) = _set(n, max_depth=2.5)
        assert result.successful
        release.set()
        assert n._ready.wait(timeout=30.0), n.last_error
        assert n._pipeline.config.max_depth_m == 2.5
    finally:
        release.set()
        n.destroy_node()


def test_bad_start_up_parameters_print_one_line_each_and_exit_2(loopback_netns):
    proc = subprocess.run(
        [sys.executable, "-m", "depth_perception.ros.node", "--ros-args",
         "-p", "queue_size:=0", "-p", "metric.mode:=lidar", "-p", "depth_encoding:=8UC1"],
        capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if "invalid parameter:" in line]
    assert len(lines) == 3, text
    for name in ("queue_size", "metric.mode", "depth_encoding"):
        assert any(name in line for line in lines), text


def test_diagnostic_values_are_capped(node):
    from diagnostic_updater import DiagnosticStatusWrapper

    from depth_perception.ros.node import MAX_TEXT

    node.last_error = "x" * 1_000_000
    node._last_segmentation = "mask 'id 1' dropped: no depth; " * 50_000
    stat = node._depth_status(DiagnosticStatusWrapper())
    assert max(len(kv.value) for kv in stat.values) < MAX_TEXT + 100
    assert any(kv.value.endswith("more characters)") for kv in stat.values if kv.key == "last error")


def test_an_empty_list_on_the_command_line_means_an_empty_list(loopback_netns):
    """`-p segmentation.source:=[]` reaches rclpy untyped (rcl cannot type an empty array)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "depth_perception.ros.node", "--ros-args", "-p", "stereo:=true",
         "-p", "segmentation.source:=[]"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "ready" in line or "invalid parameter" in line:
                break
        assert any("ready" in line for line in lines), "".join(lines)
    finally:
        proc.send_signal(2)
        proc.wait(timeout=20)
    assert proc.returncode == 0
