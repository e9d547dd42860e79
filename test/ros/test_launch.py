"""launch/depth_perception.launch.py run by launch_testing, as `ros2 launch` runs it, for the
profiles users start: stereo (default.yaml + stereo:=true), the bundled model (default.yaml +
model:=student_tabletop) and the CPU profile (config/cpu.yaml). A tester node feeds a rendered
tabletop scene into the remapped inputs and reads every output back the way consumers do:
depth with cv_bridge, clouds with sensor_msgs_py.point_cloud2, regions as
depth_perception_msgs, and /diagnostics. After shutdown: exit codes 0 and no traceback.

Runs inside the loopback-only network namespace only (scripts/netns.sh; make test does).
"""

from __future__ import annotations

import importlib.util

from ros_checks import TOOLS_HINT, in_loopback_only_netns, skip_or_fail

NEEDED = ("launch_testing", "launch_ros", "cv_bridge", "sensor_msgs_py", "depth_perception_msgs")


def _missing() -> tuple[str, str] | None:
    """Why the launch tests cannot run here, and the variable that makes that a failure."""
    if not in_loopback_only_netns():
        return ("launch tests start DDS: run them inside scripts/netns.sh (loopback only)",
                "DP_REQUIRE_ROS")
    absent = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if absent:
        return f"{', '.join(absent)} not importable; {TOOLS_HINT}", "DP_REQUIRE_ROS_TOOLS"
    return None


MISSING = _missing()
if MISSING is None:
    # launch_testing's pytest plugin collects this module's generate_test_description
    from launch_profiles import TestOutputs, TestShutdown, generate_test_description  # noqa: F401
else:
    def test_launch_profiles():
        skip_or_fail(*MISSING)
