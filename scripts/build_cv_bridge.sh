#!/usr/bin/env bash
# Build the upstream cv_bridge Python package (ros-perception/vision_opencv) without a ROS install:
# its Boost.Python module cv_bridge/boost/cv_bridge_boost*.so is compiled with plain g++ against
# Debian's OpenCV 4 and Boost.Python and the ROS 2 C++ headers of the PyPI wheels in $PYTHON's venv.
#
#   scripts/build_cv_bridge.sh [SRC_ARCHIVE_OR_DIR] [INSTALL_PREFIX]
#
# Defaults: ../shared/ros2-src/cv_bridge.tar.gz (next to the repository) and install/cv_bridge.
# An archive is extracted into build/cv_bridge_src; objects go to build/cv_bridge (both gitignored).
# Installs INSTALL_PREFIX/lib/python3.X/site-packages/cv_bridge/ (upstream layout: boost/ holds only
# the module, no __init__.py), share/cv_bridge/package.xml and the ament index marker. The installed
# core.py gets two small compatibility fixes (OpenCV 5 cv2 wheels, numpy 2; see below). Then
#   PYTHONPATH=INSTALL_PREFIX/lib/python3.X/site-packages python -c 'from cv_bridge import CvBridge'
# (no LD_LIBRARY_PATH: the module links only Debian's libopencv_* and libboost_python3XY).
# Needs g++ and apt-get install libboost-python-dev libopencv-core-dev libopencv-imgproc-dev
# libopencv-imgcodecs-dev (the full libopencv-dev is not needed), and the ROS 2 wheels of
# requirements/ros.txt in $PYTHON's prefix (default .venv/bin/python). OPENCV_INCLUDE_DIR overrides
# /usr/include/opencv4. Quick no-op when the stamp says the source and Python are unchanged;
# FORCE=1 rebuilds anyway.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
SRC_ARG="$(abspath "${1:-$REPO/../shared/ros2-src/cv_bridge.tar.gz}")"
INSTALL_PREFIX="$(abspath "${2:-$REPO/install/cv_bridge}")"
EXTRACT_DIR="$REPO/build/cv_bridge_src"
BUILD_DIR="$REPO/build/cv_bridge"
OPENCV_INCLUDE_DIR="${OPENCV_INCLUDE_DIR:-/usr/include/opencv4}"
die() { echo "build_cv_bridge: $*" >&2; exit 2; }

PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PYTHON" ] && ! command -v "$PYTHON" >/dev/null 2>&1; then
  die "no Python at '$PYTHON' (set PYTHON=...)"
fi
PYTHON="$(command -v "$PYTHON")"
[ -e "$SRC_ARG" ] || die "no cv_bridge source at $SRC_ARG (a vision_opencv .tar.gz or directory)"

# One Python start: version, extension suffix, include dirs, prefix, numpy.
pyinfo="$("$PYTHON" - <<'PY'
import sys, sysconfig
print(f"PYVER={sys.version_info[0]}.{sys.version_info[1]}")
print(f"PYTAG={sys.version_info[0]}{sys.version_info[1]}")
print(f"PYFULL={sys.version.split()[0]}")
print(f"EXT_SUFFIX={sysconfig.get_config_var('EXT_SUFFIX')}")
print(f"PY_INCLUDE={sysconfig.get_paths()['include']}")
print(f"PY_PREFIX={sys.prefix}")
try:
    import numpy
    print(f"NUMPY_INCLUDE={numpy.get_include()}")
    print(f"NUMPY_VERSION={numpy.__version__}")
except ImportError:
    print("NUMPY_INCLUDE=")
    print("NUMPY_VERSION=")
PY
)" || die "'$PYTHON' failed to start"
PYVER="" PYTAG="" PYFULL="" EXT_SUFFIX="" PY_INCLUDE="" PY_PREFIX="" NUMPY_INCLUDE="" NUMPY_VERSION=""
while IFS='=' read -r key val; do
  case "$key" in
    PYVER|PYTAG|PYFULL|EXT_SUFFIX|PY_INCLUDE|PY_PREFIX|NUMPY_INCLUDE|NUMPY_VERSION) printf -v "$key" '%s' "$val" ;;
  esac
done <<<"$pyinfo"
SITE="$INSTALL_PREFIX/lib/python$PYVER/site-packages"
MODULE="cv_bridge_boost$EXT_SUFFIX"
STAMP="$INSTALL_PREFIX/share/cv_bridge/.build_stamp"

# Up to date? The stamp records the source (archive checksum or newest mtime), the Python, numpy
# and this script.
if [ -d "$SRC_ARG" ]; then
  src_id="dir:$SRC_ARG:$(find "$SRC_ARG" -type f -printf '%T@\n' | sort -n | tail -1)"
else
  src_id="archive:$(sha256sum "$SRC_ARG" | cut -d' ' -f1)"
fi
want="$src_id|$PYTHON|$PYFULL|$EXT_SUFFIX|numpy $NUMPY_VERSION|$(sha256sum <"${BASH_SOURCE[0]}" | cut -c1-16)"
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
  && [ -f "$SITE/cv_bridge/boost/$MODULE" ] && [ -f "$SITE/cv_bridge/__init__.py" ]; then
  echo "build_cv_bridge: cv_bridge in $INSTALL_PREFIX is up to date (PYTHONPATH=$SITE)"
  exit 0
fi

# Build dependencies (checked by file, so the message can name the Debian packages to install).
command -v g++ >/dev/null || die "g++ not found (apt-get install -y g++)"
have_lib() { case "$(g++ -print-file-name="$1")" in /*) return 0 ;; *) return 1 ;; esac; }
missing=()
{ [ -f /usr/include/boost/python.hpp ] && have_lib "libboost_python$PYTAG.so"; } \
  || missing+=(libboost-python-dev)
[ -f /usr/include/boost/endian/conversion.hpp ] || missing+=(libboost-dev)
for m in core imgproc imgcodecs; do
  { [ -f "$OPENCV_INCLUDE_DIR/opencv2/$m.hpp" ] && have_lib "libopencv_$m.so"; } \
    || missing+=("libopencv-$m-dev")
done
if [ ${#missing[@]} -gt 0 ]; then
  extra=""
  case " ${missing[*]} " in
    *" libboost-python-dev "*) extra=" (Boost.Python for Python $PYVER: libboost_python$PYTAG.so)" ;;
  esac
  die "missing Debian package(s): ${missing[*]}$extra; run: apt-get install -y ${missing[*]}"
fi
[ -f "$PY_INCLUDE/Python.h" ] || die "no Python.h in $PY_INCLUDE (apt-get install -y python$PYVER-dev)"
[ -n "$NUMPY_INCLUDE" ] || die "numpy is not importable by $PYTHON ($PYTHON -m pip install numpy)"

# ROS 2 C++ headers (<prefix>/include/<pkg>/<pkg>/...): the wheels in $PYTHON's prefix first, then
# any sourced ROS 2 (AMENT_PREFIX_PATH). Message structs are header-only: nothing ROS is linked.
ros_inc=()
IFS=: read -r -a prefixes <<<"$PY_PREFIX:${AMENT_PREFIX_PATH:-}"
for p in "${prefixes[@]}"; do
  [ -n "$p" ] && [ "$p" != "$INSTALL_PREFIX" ] && [ -d "$p/include" ] || continue
  for d in "$p"/include/*/; do
    d="${d%/}"
    [ -d "$d/$(basename "$d")" ] && ros_inc+=("-I$d")
  done
  ros_inc+=("-I$p/include")
done
found=""
for f in "${ros_inc[@]}"; do
  [ -f "${f#-I}/sensor_msgs/image_encodings.hpp" ] && [ -f "${f#-I}/sensor_msgs/msg/image.hpp" ] && found=1
done
[ -n "$found" ] || die "ROS 2 headers (sensor_msgs/image_encodings.hpp) not found in $PY_PREFIX; install the ROS 2 wheels: $PYTHON -m pip install -r $REPO/requirements/ros.txt"

# Source: a directory (vision_opencv checkout or the cv_bridge package itself) or an archive.
start=$(date +%s)
if [ -d "$SRC_ARG" ]; then
  search="$SRC_ARG"
else
  rm -rf "$EXTRACT_DIR"
  mkdir -p "$EXTRACT_DIR"
  tar -xf "$SRC_ARG" -C "$EXTRACT_DIR" || die "cannot extract $SRC_ARG"
  search="$EXTRACT_DIR"
fi
PKG_DIR=""
while IFS= read -r xml; do
  d="$(dirname "$xml")"
  if grep -q '<name>[[:space:]]*cv_bridge[[:space:]]*</name>' "$xml" && [ -f "$d/src/module.cpp" ]; then
    PKG_DIR="$d"
    break
  fi
done < <(find "$search" -maxdepth 4 -name package.xml | sort)
[ -n "$PKG_DIR" ] || die "no cv_bridge package (package.xml + src/module.cpp) in $SRC_ARG"
for f in src/cv_bridge.cpp src/rgb_colors.cpp src/module.cpp src/module_opencv3.cpp \
    include/cv_bridge/cv_bridge.h python/cv_bridge/__init__.py python/cv_bridge/core.py; do
  [ -f "$PKG_DIR/$f" ] || die "$PKG_DIR/$f missing (not the ROS 2 cv_bridge?)"
done

# Generated/shim headers:
# - cv_bridge/cv_bridge_export.h, what CMake's generate_export_header() writes for GCC;
# - opencv2/opencv.hpp, because Debian's includes every module of opencv_modules.hpp (calib3d,
#   dnn, ...), whose headers only the full libopencv-dev installs; cv_bridge needs these three.
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR/gen/cv_bridge" "$BUILD_DIR/shim/opencv2" "$BUILD_DIR/boost"
cat >"$BUILD_DIR/gen/cv_bridge/cv_bridge_export.h" <<'H'
// Generated by scripts/build_cv_bridge.sh (equivalent of CMake's generate_export_header()).
#ifndef CV_BRIDGE_EXPORT_H
#define CV_BRIDGE_EXPORT_H
#define CV_BRIDGE_EXPORT __attribute__((visibility("default")))
#define CV_BRIDGE_NO_EXPORT __attribute__((visibility("hidden")))
#define CV_BRIDGE_DEPRECATED __attribute__((__deprecated__))
#define CV_BRIDGE_DEPRECATED_EXPORT CV_BRIDGE_EXPORT CV_BRIDGE_DEPRECATED
#define CV_BRIDGE_DEPRECATED_NO_EXPORT CV_BRIDGE_NO_EXPORT CV_BRIDGE_DEPRECATED
#endif  // CV_BRIDGE_EXPORT_H
H
cat >"$BUILD_DIR/shim/opencv2/opencv.hpp" <<'H'
// Shim from scripts/build_cv_bridge.sh: only the OpenCV modules cv_bridge uses.
#ifndef CV_BRIDGE_SHIM_OPENCV_HPP
#define CV_BRIDGE_SHIM_OPENCV_HPP
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/imgcodecs.hpp>
#endif
H

cxxflags=(-std=c++17 -O2 -fPIC -DNDEBUG -DPYTHON3 -DOPENCV_VERSION_4 -w
  "-I$BUILD_DIR/shim" "-I$BUILD_DIR/gen" "-I$PKG_DIR/include" "-I$OPENCV_INCLUDE_DIR"
  "-I$PY_INCLUDE" "-I$NUMPY_INCLUDE" "${ros_inc[@]}")
pids=()
objs=()
for s in cv_bridge rgb_colors module module_opencv3; do
  g++ "${cxxflags[@]}" -c "$PKG_DIR/src/$s.cpp" -o "$BUILD_DIR/$s.o" >"$BUILD_DIR/$s.log" 2>&1 &
  pids+=($!)
  objs+=("$BUILD_DIR/$s.o")
done
failed=""
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=" ${objs[$i]%.o}.log"
done
if [ -n "$failed" ]; then
  for log in $failed; do tail -30 "$log" >&2; done
  echo "build_cv_bridge: compile failed (logs:$failed)" >&2
  exit 1
fi
g++ -shared -Wl,--as-needed -Wl,-O1 -o "$BUILD_DIR/boost/$MODULE" "${objs[@]}" \
  -lopencv_imgcodecs -lopencv_imgproc -lopencv_core "-lboost_python$PYTAG" >"$BUILD_DIR/link.log" 2>&1 \
  || { tail -30 "$BUILD_DIR/link.log" >&2; echo "build_cv_bridge: link failed (log: $BUILD_DIR/link.log)" >&2; exit 1; }

# Install (the previous copy is replaced as a whole) and smoke-test it with $PYTHON.
rm -rf "$SITE/cv_bridge"
mkdir -p "$SITE/cv_bridge/boost" "$INSTALL_PREFIX/share/cv_bridge" \
  "$INSTALL_PREFIX/share/ament_index/resource_index/packages"
cp "$PKG_DIR"/python/cv_bridge/*.py "$SITE/cv_bridge/"
# Two fixes to the installed core.py (the sources stay as they are), applied only where upstream's
# text is still there:
# - cvtype_to_name was keyed by cv2.CV_8UC3 etc., but getCvType() returns the type codes of the
#   OpenCV that cv_bridge_boost links (Debian's 4.x); with an OpenCV 5 cv2 (CV_CN_SHIFT 5, not 3)
#   they differ and cv2_to_imgmsg(img, encoding) raised KeyError. Key it by getCvType() itself.
# - ndarray.newbyteorder() is gone in numpy 2 (big-endian messages): use a view instead.
"$PYTHON" - "$SITE/cv_bridge/core.py" <<'PY' \
  || { echo "build_cv_bridge: patching $SITE/cv_bridge/core.py failed" >&2; exit 1; }
import sys
path = sys.argv[1]
text = orig = open(path).read()
key_old = "self.cvtype_to_name[getattr(cv2, 'CV_%s' % nm)] = nm"
if key_old in text:
    imp_old = "        import cv2\n        self.cvtype_to_name = {}\n"
    if imp_old not in text:
        sys.exit("build_cv_bridge: unexpected CvBridge.__init__ in " + path)
    text = text.replace(imp_old, "        import cv2\n"
                        "        from cv_bridge.boost.cv_bridge_boost import getCvType\n"
                        "        self.cvtype_to_name = {}\n")
    text = text.replace(key_old, "self.cvtype_to_name[getCvType(nm)] = nm  # not cv2's codes")
text = text.replace("im = im.byteswap().newbyteorder()",
                    "im = im.byteswap().view(im.dtype.newbyteorder())")
if text != orig:
    open(path, "w").write(text)
PY
cp "$BUILD_DIR/boost/$MODULE" "$SITE/cv_bridge/boost/"
cp "$PKG_DIR/package.xml" "$INSTALL_PREFIX/share/cv_bridge/package.xml"
: >"$INSTALL_PREFIX/share/ament_index/resource_index/packages/cv_bridge"
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
import numpy as np
from cv_bridge import CvBridge
a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
br = CvBridge()
assert (br.imgmsg_to_cv2(br.cv2_to_imgmsg(a, "rgb8"), "bgr8") == a[..., ::-1]).all()
' >"$BUILD_DIR/smoke.log" 2>&1 \
  || { cat "$BUILD_DIR/smoke.log" >&2; echo "build_cv_bridge: built, but the import/round-trip smoke test fails with $PYTHON" >&2; exit 1; }
printf '%s\n' "$want" >"$STAMP"
echo "build_cv_bridge: built cv_bridge into $INSTALL_PREFIX in $(( $(date +%s) - start )) s"
echo "build_cv_bridge: use PYTHONPATH=$SITE (no LD_LIBRARY_PATH needed)"
