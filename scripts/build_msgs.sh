#!/usr/bin/env bash
# Build a ROS 2 interface package with plain CMake, no colcon; by default msg/
# (depth_perception_msgs).
#
#   scripts/build_msgs.sh [BUILD_DIR] [INSTALL_PREFIX] [SOURCE_DIR]
#
# Defaults: build/msgs and install/msgs under the repository root (both gitignored), source msg/.
# SOURCE_DIR is any ament_cmake interface package (package.xml + CMakeLists.txt + msg/); its name is
# read from package.xml (scripts/install_ros_tools.sh builds vision_msgs and composition_interfaces
# with it). scripts/cmake/drop_missing_include_dirs.cmake is injected so that the PyPI wheels'
# exported CMake targets work (a no-op on a normal ROS 2 install).
# Uses the ament/rosidl CMake packages of $PYTHON's prefix (default: .venv/bin/python with
# requirements/ros.txt installed) plus any ROS 2 prefixes already in AMENT_PREFIX_PATH
# (e.g. a sourced /opt/ros/jazzy). Quick no-op when the install is newer than SOURCE_DIR.
# Afterwards `source scripts/ros_env.sh` (or DP_MSGS_PREFIX=INSTALL_PREFIX for a custom prefix).
# Set FORCE=1 to rebuild anyway.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
BUILD_DIR="$(abspath "${1:-$REPO/build/msgs}")"
INSTALL_PREFIX="$(abspath "${2:-$REPO/install/msgs}")"
SRC="$(abspath "${3:-$REPO/msg}")"
if [ ! -f "$SRC/package.xml" ] || [ ! -f "$SRC/CMakeLists.txt" ]; then
  echo "build_msgs: $SRC is not an interface package (no package.xml / CMakeLists.txt)" >&2
  exit 2
fi
PKG="$(sed -n 's:.*<name>[[:space:]]*\([A-Za-z0-9_]*\)[[:space:]]*</name>.*:\1:p' "$SRC/package.xml" \
  | head -1)"
[ -n "$PKG" ] || { echo "build_msgs: no <name> in $SRC/package.xml" >&2; exit 2; }
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PYTHON" ] && ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "build_msgs: no Python at '$PYTHON' (set PYTHON=...)" >&2
  exit 2
fi
PYTHON="$(command -v "$PYTHON")"
STAMP="$INSTALL_PREFIX/share/$PKG/.build_stamp"

# Up to date? The stamp records the sources' newest mtime, the Python and the prefixes used.
newest="$(find "$SRC" -type f \( -name '*.msg' -o -name 'CMakeLists.txt' -o -name 'package.xml' \) \
  -printf '%T@\n' | sort -n | tail -1)"
want="$newest|$PYTHON|$BUILD_DIR|$(cksum <"$REPO/scripts/cmake/drop_missing_include_dirs.cmake")"
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
  && [ -f "$INSTALL_PREFIX/share/$PKG/cmake/${PKG}Config.cmake" ]; then
  echo "build_msgs: $PKG in $INSTALL_PREFIX is up to date"
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
  -DBUILD_TESTING=OFF \
  -DCMAKE_PROJECT_INCLUDE="$REPO/scripts/cmake/drop_missing_include_dirs.cmake" \
  >"$BUILD_DIR/configure.log" 2>&1 \
  || { tail -40 "$BUILD_DIR/configure.log" >&2; echo "build_msgs: configure failed (log: $BUILD_DIR/configure.log)" >&2; exit 1; }
cmake --build "$BUILD_DIR" -j "$jobs" >"$BUILD_DIR/build.log" 2>&1 \
  || { tail -40 "$BUILD_DIR/build.log" >&2; echo "build_msgs: build failed (log: $BUILD_DIR/build.log)" >&2; exit 1; }
cmake --install "$BUILD_DIR" >"$BUILD_DIR/install.log" 2>&1 \
  || { tail -40 "$BUILD_DIR/install.log" >&2; echo "build_msgs: install failed" >&2; exit 1; }
printf '%s\n' "$want" >"$STAMP"
echo "build_msgs: built $PKG into $INSTALL_PREFIX in $(( $(date +%s) - start )) s"
