#!/usr/bin/env bash
# Install the ROS 2 tools that PyPI does not serve (launch, launch_ros, launch_testing, ros2cli,
# sensor_msgs_py, cv_bridge, vision_msgs, message_filters, diagnostic_updater, …) from their upstream
# sources, into this repository's virtual environment and install/ prefixes. `make test` runs it.
#
#   scripts/install_ros_tools.sh [SRC_DIR]
#
# SRC_DIR (default: ../shared/ros2-src next to the repository, or $DP_ROS2_SRC) holds the upstream
# archives listed in its SOURCES.tsv. Without it this prints why and exits 0: the tests that need
# these tools then skip with that reason. On a robot none of this is needed: the same packages come
# from the ROS 2 install (apt install ros-$ROS_DISTRO-launch-testing-ros ros-$ROS_DISTRO-cv-bridge …).
#
# What goes where:
#   pure-Python packages with a setup.py        pip install --no-deps into $PYTHON's environment
#   message_filters, diagnostic_updater         copied into install/ros_tools (no setup.py upstream)
#   vision_msgs, composition_interfaces         built with scripts/build_msgs.sh into install/<name>
#   cv_bridge (Python + Boost.Python module)    built with scripts/build_cv_bridge.sh (needs Debian's
#                                               libboost-python-dev and libopencv-*-dev)
# scripts/ros_env.sh (sourced by scripts/netns.sh) puts the install/ prefixes on the paths.
# Quick no-op when nothing changed (a stamp per archive); FORCE=1 reinstalls.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${1:-${DP_ROS2_SRC:-$REPO/../shared/ros2-src}}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
WORK="$REPO/build/ros2-src"
STAMPS="$REPO/install/ros_tools/stamps"
PURE="$REPO/install/ros_tools"

if [ ! -f "$SRC/SOURCES.tsv" ]; then
  echo "install_ros_tools: no ROS 2 tool sources at $SRC (SOURCES.tsv missing): launch_testing," \
    "ros2cli, colcon, sensor_msgs_py, cv_bridge and vision_msgs tests will skip" >&2
  exit 0
fi
SRC="$(cd "$SRC" && pwd)"
PYVER="$("$PYTHON" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
SITE="$PURE/lib/$PYVER/site-packages"
mkdir -p "$WORK" "$STAMPS" "$SITE"
export PYTHON

# changed NAME: true when archive NAME is newer than its stamp (or FORCE=1); extracts it then.
changed() {
  local name="$1" archive="$SRC/$1.tar.gz" want
  want="$(cksum <"$archive")|$PYTHON"
  if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMPS/$name" ] && [ "$(cat "$STAMPS/$name")" = "$want" ]; then
    return 1
  fi
  rm -rf "${WORK:?}/$name"
  tar -xzf "$archive" -C "$WORK"
  [ -d "$WORK/$name" ] || { echo "install_ros_tools: $archive has no top folder $name" >&2; exit 1; }
  return 0
}
done_with() { printf '%s\n' "$(cksum <"$SRC/$1.tar.gz")|$PYTHON" >"$STAMPS/$1"; }
pip_install() { "$PYTHON" -m pip --disable-pip-version-check -q install --no-deps --no-build-isolation "$@"; }

# Third-party Python dependencies of these tools (pinned; setuptools < 80 for colcon).
"$PYTHON" -m pip --disable-pip-version-check -q install -r "$REPO/requirements/ros-tools.txt"

# Pure-Python packages, in dependency order (archive: sub-folders).
for spec in \
  "osrf_pycommon:." \
  "rosidl_runtime_py:." \
  "launch:launch launch_xml launch_yaml launch_testing" \
  "ros2cli:ros2cli ros2pkg ros2run ros2node ros2topic ros2param ros2service ros2interface" \
  "launch_ros:launch_ros ros2launch launch_testing_ros" \
  "sensor_msgs_py:sensor_msgs_py"; do
  name="${spec%%:*}"
  changed "$name" || continue
  dirs=()
  for sub in ${spec#*:}; do dirs+=("$WORK/$name/$sub"); done
  pip_install "${dirs[@]}"
  done_with "$name"
  echo "install_ros_tools: $name"
done

# Python packages without a setup.py: copied as they are.
copy_module() {  # NAME PACKAGE-ROOT-IN-ARCHIVE MODULE-PATH-IN-ROOT (+ package.xml, ament index marker)
  changed "$1" || return 0
  local module
  module="$(basename "$3")"
  rm -rf "${SITE:?}/$module"
  cp -r "$WORK/$2/$3" "$SITE/$module"
  mkdir -p "$PURE/share/$1" "$PURE/share/ament_index/resource_index/packages"
  cp "$WORK/$2/package.xml" "$PURE/share/$1/package.xml"
  touch "$PURE/share/ament_index/resource_index/packages/$1"
  done_with "$1"
  echo "install_ros_tools: $1"
}
copy_module message_filters message_filters src/message_filters
copy_module diagnostic_updater diagnostic_updater/diagnostic_updater diagnostic_updater

# Interface packages, built like msg/.
for name in composition_interfaces vision_msgs; do
  if changed "$name"; then
    rm -rf "${REPO:?}/build/$name"
    FORCE=1 "$REPO/scripts/build_msgs.sh" "$REPO/build/$name" "$REPO/install/$name" "$WORK/$name/$name"
    done_with "$name"
  fi
done

# cv_bridge's Boost.Python module needs Debian's Boost.Python and OpenCV headers: installed here
# when running as root (CI), otherwise the command is printed and cv_bridge is left out.
DEBS=(libboost-python-dev libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)
missing=()
for deb in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "ok installed" || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install_ros_tools: apt-get install ${missing[*]} (for cv_bridge)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
      >"$WORK/apt.log" 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
           --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1; } \
      || { tail -20 "$WORK/apt.log" >&2; echo "install_ros_tools: apt-get failed" >&2; exit 1; }
  else
    echo "install_ros_tools: cv_bridge not built: sudo apt-get install ${missing[*]}" >&2
    exit 0
  fi
fi
"$REPO/scripts/build_cv_bridge.sh" "$SRC/cv_bridge.tar.gz" "$REPO/install/cv_bridge"
