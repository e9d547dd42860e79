"""An ament prefix for the package as it is in this source tree, so that `ros2 launch`,
launch_ros and ament_index find it without a colcon build (test/ros/test_install_space.py checks the
real colcon install spaces).

The prefix holds what `colcon build --symlink-install` would install: the package marker, package.xml,
launch/ and config/ (symlinks into the source tree) and the node's console script under
lib/depth_perception/.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "depth_perception"


def source_tree_prefix(root: Path | None = None) -> Path:
    """Create (idempotently) the prefix under ``build/ament_dev`` and return it."""
    prefix = root or REPO / "build" / "ament_dev"
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    share = prefix / "share" / PACKAGE
    share.mkdir(parents=True, exist_ok=True)
    for name in ("package.xml", "launch", "config"):
        link = share / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(REPO / name)
    node = shutil.which("depth_perception_node", path=str(Path(sys.executable).parent))
    if node is None:
        raise FileNotFoundError("depth_perception_node is not installed next to "
                                f"{sys.executable}: pip install -e {REPO}")
    lib = prefix / "lib" / PACKAGE
    lib.mkdir(parents=True, exist_ok=True)
    script = lib / "depth_perception_node"
    if not script.is_symlink() or script.resolve() != Path(node).resolve():
        script.unlink(missing_ok=True)
        script.symlink_to(node)
    return prefix


def use_source_tree_prefix() -> Path:
    """Put the source-tree prefix first on AMENT_PREFIX_PATH of this process (and its children)."""
    prefix = source_tree_prefix()
    paths = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if str(prefix) not in paths:
        os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), *paths])
    return prefix
