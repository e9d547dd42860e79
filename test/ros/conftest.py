"""Fixtures for tests that start rclpy / DDS.

These tests only ever run inside a loopback-only network namespace (``scripts/netns.sh``), so DDS
discovery and traffic cannot leave 127.0.0.1. Elsewhere they are skipped, or fail when
``DP_REQUIRE_ROS=1`` (for CI jobs that must run them).

    scripts/build_msgs.sh && scripts/netns.sh .venv/bin/python -m pytest test/ros -q
"""

from __future__ import annotations

import os

import pytest

from ros_checks import (
    TOOLS_HINT,
    in_loopback_only_netns,
    network_interfaces,
    require_module,
    skip_or_fail,
)


def require_rclpy():
    """Import rclpy and the standard messages, or skip with the reason."""
    try:
        import rclpy  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
    except ImportError as exc:
        skip_or_fail(f"rclpy not importable ({exc}); pip install -r requirements/ros.txt")


def require_ros_messages():
    """Import rclpy and depth_perception_msgs, or skip with the reason."""
    require_rclpy()
    try:
        import depth_perception_msgs.msg  # noqa: F401
    except ImportError as exc:
        skip_or_fail(
            f"depth_perception_msgs not importable ({exc}); "
            "run scripts/build_msgs.sh and source scripts/ros_env.sh"
        )


@pytest.fixture
def ros_msgs():
    """The depth_perception_msgs.msg module (skips when it or rclpy is missing)."""
    require_ros_messages()
    import depth_perception_msgs.msg

    return depth_perception_msgs.msg


@pytest.fixture
def loopback_netns():
    """Refuse to go on unless this process is in a loopback-only network namespace."""
    require_loopback_netns()


def require_loopback_netns() -> None:
    if not in_loopback_only_netns():
        skip_or_fail(
            "refusing to start DDS outside a loopback-only network namespace "
            f"(interfaces: {', '.join(network_interfaces()) or 'none'}); run it as: scripts/netns.sh .venv/bin/python -m pytest test/ros"
        )
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.fixture
def rclpy_context(loopback_netns):
    """A fresh, initialised rclpy Context; shut down after the test. Needs the standard messages
    and diagnostic_updater (the node publishes /diagnostics through it)."""
    yield from _context()


@pytest.fixture(scope="module")
def rclpy_module_context():
    """Like ``rclpy_context``, shared by the tests of one module (one node for many cases)."""
    require_loopback_netns()
    yield from _context()


def _context():
    require_rclpy()
    require_module("diagnostic_updater", TOOLS_HINT)
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)
