"""Benchmarks that start DDS run inside a loopback-only network namespace (scripts/netns.sh)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loopback_only() -> bool:
    """Whether this process sees only the `lo` interface."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def ensure_loopback_only(script: str) -> None:
    """Re-execute ``script`` with this process's arguments inside scripts/netns.sh unless it is
    already in a loopback-only namespace (DDS must never reach another machine)."""
    if not loopback_only():
        netns = str(REPO / "scripts/netns.sh")
        os.execvp(netns, [netns, sys.executable, script, *sys.argv[1:]])
