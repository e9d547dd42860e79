#!/usr/bin/env bash
# Build the interface package msg/ (depth_perception_msgs) with plain CMake, no colcon.
#
#   scripts/build_msgs.sh [BUILD_DIR] [INSTALL_PREFIX]
#
# Defaults: build/msgs and install/msgs under the repository root (both gitignored).
# Uses the ament/rosidl CMake packages of $PYTHON's prefix (default: .venv/bin/python with
# requirements/ros.txt installed) plus any ROS 2 prefixes already in AMENT_PREFIX_PATH
# (e.g. a sourced /opt/ros/jazzy). Quick no-op when the install is newer than msg/.
# Afterwards `source scripts/ros_env.sh` (or DP_MSGS_PREFIX=INSTALL_PREFIX for a custom prefix).
# Set FORCE=1 to rebuild anyway.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/msg"
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
BUILD_DIR="$(abspath "${1:-$REPO/build/msgs}")"
INSTALL_PREFIX="$(abspath "${2:-$REPO/install/msgs}")"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PYTHON" ] && ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "build_msgs: no Python at '$PYTHON' (set PYTHON=...)" >&2
  exit 2
fi
PYTHON="$(command -v "$PYTHON")"
STAMP="$INSTALL_PREFIX/share/depth_perception_msgs/.build_stamp"

# Up to date? The stamp records the sources' newest mtime, the Python and the prefixes used.
newest="$(find "$SRC" -type f \( -name '*.msg' -o -name 'CMakeLists.txt' -o -name 'package.xml' \) \
  -printf '%T@\n' | sort -n | tail -1)"
want="$newest|$PYTHON|$BUILD_DIR"
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
  && [ -f "$INSTALL_PREFIX/share/depth_perception_msgs/cmake/depth_perception_msgsConfig.cmake" ]; then
  echo "build_msgs: $INSTALL_PREFIX is up to date"
  exit 0
fi

command -v cmake >/dev/null || { echo "build_msgs: cmake not found (apt-get install cmake g++)" >&2; exit 2; }
PY_PREFIX="$("$PYTHON" -c 'import sys; print(sys.prefix)')"
if [ ! -f "$PY_PREFIX/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ] \
  && [ -z "${AMENT_PREFIX_PATH:-}" ]; then
  echo "build_msgs: rosidl_default_generators not found in $PY_PREFIX and no ROS 2 sourced." >&2
  echo "  install the ROS 2 wheels: $PYTHON -m pip install -r $REPO/requirements/ros.txt" >&2
  exit 2
fi

# find_package() looks in CMAKE_PREFIX_PATH; rosidl's typesupport discovery reads AMENT_PREFIX_PATH.
# Our own install prefix (present when ros_env.sh was sourced) is left out of both.
without_own() { printf '%s' "${1:-}" | tr ':' '\n' | { grep -vxF -e "$INSTALL_PREFIX" -e '' || true; } | paste -sd: -; }
AMENT_PREFIX_PATH="$(without_own "${AMENT_PREFIX_PATH:-}")"
CMAKE_PREFIX_PATH="$(without_own "${CMAKE_PREFIX_PATH:-}")"
export AMENT_PREFIX_PATH="$PY_PREFIX${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$PY_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$(dirname "$PYTHON"):$PATH"

jobs="$(nproc 2>/dev/null || echo 2)"
start=$(date +%s)
mkdir -p "$BUILD_DIR"
cmake -S "$SRC" -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$INSTALL_PREFIX" \
  -DPython3_EXECUTABLE="$PYTHON" \
  -DBUILD_TESTING=OFF >"$BUILD_DIR/configure.log" 2>&1 \
  || { tail -40 "$BUILD_DIR/configure.log" >&2; echo "build_msgs: configure failed (log: $BUILD_DIR/configure.log)" >&2; exit 1; }
cmake --build "$BUILD_DIR" -j "$jobs" >"$BUILD_DIR/build.log" 2>&1 \
  || { tail -40 "$BUILD_DIR/build.log" >&2; echo "build_msgs: build failed (log: $BUILD_DIR/build.log)" >&2; exit 1; }
cmake --install "$BUILD_DIR" >"$BUILD_DIR/install.log" 2>&1 \
  || { tail -40 "$BUILD_DIR/install.log" >&2; echo "build_msgs: install failed" >&2; exit 1; }
printf '%s\n' "$want" >"$STAMP"
echo "build_msgs: built depth_perception_msgs into $INSTALL_PREFIX in $(( $(date +%s) - start )) s"
