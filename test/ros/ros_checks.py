"""Checks shared by the ROS tests: the loopback-only network namespace, and skip-or-fail for a
missing ROS package (skip with the reason; fail where DP_REQUIRE_ROS=1, as in CI)."""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from types import ModuleType

import pytest


def network_interfaces() -> list[str]:
    """Names of the interfaces in this process's network namespace.

    Read from /proc/self/net/dev and socket.if_nameindex(), both of which follow the process's
    namespace. /sys/class/net does not: after ``unshare -n`` it still lists the host's interfaces
    until sysfs is remounted, so it is not used.
    """
    names: set[str] = set()
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
        names.update(line.split(":", 1)[0].strip() for line in lines if ":" in line)
    except OSError:
        pass
    try:
        names.update(name for _, name in socket.if_nameindex())
    except OSError:
        pass
    return sorted(names)


def in_loopback_only_netns() -> bool:
    """True when the only network interface this process can see is ``lo``."""
    return network_interfaces() == ["lo"]


def skip_or_fail(reason: str, required_by: str = "DP_REQUIRE_ROS") -> None:
    """Skip with the reason, or fail where the environment variable ``required_by`` is 1."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} ({required_by}=1)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, hint: str) -> ModuleType:
    """Import ``name`` (a ROS 2 tool such as launch_testing or cv_bridge) or skip naming it; fail
    instead where DP_REQUIRE_ROS_TOOLS=1 (make test sets it when ../shared/ros2-src exists)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(f"{name} not importable ({exc}); {hint}", "DP_REQUIRE_ROS_TOOLS")
        raise  # not reached: skip_or_fail raises


TOOLS_HINT = ("install the ROS 2 tools from ../shared/ros2-src with scripts/install_ros_tools.sh "
              "(make test does) and run under scripts/netns.sh")
