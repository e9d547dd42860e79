"""config/fastdds_large_data.xml, the Fast DDS profile for camera-sized messages: Fast DDS reads
it and sends through a shared-memory segment that holds them. With the default 512 KiB segment,
reliable VGA images published back to back with their CameraInfo reach a subscriber in another
process late, in steps of the writer's heartbeat period, or not at all (bench/soak.py shows it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ament_prefix import REPO
from ros_checks import require_module

PROFILE = REPO / "config" / "fastdds_large_data.xml"

#: a participant with one publisher; prints "ready" and waits for a line on stdin
PARTICIPANT = """
import sys
import rclpy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("dp_profile_probe")
node.create_publisher(Image, "probe", 10)
print("ready", flush=True)
sys.stdin.readline()
rclpy.shutdown()
"""


def own_segment_bytes(env: dict[str, str]) -> tuple[int, str]:
    """(size of the largest shared-memory segment a fresh rclpy process maps, its stderr). The
    process is alone in this network namespace, so the participant segments it maps are its own."""
    proc = subprocess.Popen([sys.executable, "-c", PARTICIPANT], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sizes: dict[str, int] = {}
    try:
        line = proc.stdout.readline().strip()
        if line == "ready":
            # fastrtps_<id>: a participant's segment; fastrtps_port<n>: receive ports, shared
            for entry in Path(f"/proc/{proc.pid}/maps").read_text().splitlines():
                path = Path(entry.split()[-1])
                if path.name.startswith("fastrtps_") and not path.name.startswith("fastrtps_port") \
                        and not path.name.endswith("_el"):
                    sizes[path.name] = path.stat().st_size  # removed when the process ends
    finally:
        _, err = proc.communicate("\n", timeout=60)
    assert line == "ready", err
    assert sizes, err
    # with the profile Fast DDS still opens a default-sized segment beside the profile's
    return max(sizes.values()), err


@pytest.fixture
def fastdds_env(loopback_netns):
    """The environment of a child rclpy process, without any Fast DDS profile."""
    require_module("rclpy", "pip install -r requirements/ros.txt")
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm: Fast DDS has no shared-memory transport here")
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                        "FASTDDS_BUILTIN_TRANSPORTS")}
    return env


def test_the_profile_gives_a_shared_memory_segment_that_holds_camera_sized_messages(fastdds_env):
    default, _ = own_segment_bytes(fastdds_env)
    large, err = own_segment_bytes({**fastdds_env, "FASTRTPS_DEFAULT_PROFILES_FILE": str(PROFILE)})
    vga_cloud_bytes = 640 * 480 * 16  # organised xyz + rgb, 16 bytes a point
    assert default < 640 * 480 * 3 < vga_cloud_bytes  # why the profile exists: not even an image
    assert large >= 3 * vga_cloud_bytes
    assert "XML" not in err and "Error" not in err, err  # Fast DDS parsed it without complaint
