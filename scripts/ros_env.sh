# Source me (bash/zsh):  source scripts/ros_env.sh
#
# Environment for rclpy + depth_perception_msgs from the PyPI ROS 2 wheels (requirements/ros.txt)
# and the interface package built by scripts/build_msgs.sh:
#   PYTHONPATH          += <msgs prefix>/lib/python3.X/site-packages  (depth_perception_msgs)
#   LD_LIBRARY_PATH     += <msgs prefix>/lib and <venv>/lib            (rosidl typesupport libraries are
#                          dlopen'ed by name through LD_LIBRARY_PATH, so this must be set before Python starts)
#   AMENT_PREFIX_PATH   += <msgs prefix>, <venv>                       (ament index look-ups, builds)
#   ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST                            (DDS discovery stays on this host)
# and, only when scripts/build_vision_msgs.sh has built it, the same three paths for its TEST STAND-IN
# of vision_msgs (install/vision_msgs). It is skipped when AMENT_PREFIX_PATH already holds a real
# vision_msgs (e.g. /opt/ros/<distro> with ros-<distro>-vision-msgs): the real package always wins.
# rclpy and the standard messages alone need none of this: the wheels' ros_wheels_bootstrapper .pth
# re-execs the venv's Python once with LD_LIBRARY_PATH set. RMW_IMPLEMENTATION is left alone
# (the wheels ship rmw_fastrtps_cpp, which is the default).
#
# Overrides: DP_VENV (default <repo>/.venv), DP_MSGS_PREFIX (default <repo>/install/msgs),
# DP_VISION_MSGS_PREFIX (default <repo>/install/vision_msgs).
# On a robot with a real ROS 2 install, source /opt/ros/<distro>/setup.bash and install/setup.bash
# from colcon instead; this file is harmless there (it only prepends paths that exist).

_dp_src="${BASH_SOURCE[0]:-${(%):-%x}}"
_dp_repo="$(cd "$(dirname "$_dp_src")/.." && pwd)"
_dp_venv="${DP_VENV:-$_dp_repo/.venv}"
_dp_msgs="${DP_MSGS_PREFIX:-$_dp_repo/install/msgs}"
_dp_vision="${DP_VISION_MSGS_PREFIX:-$_dp_repo/install/vision_msgs}"

# _dp_prepend VAR DIR: put DIR first in the colon list VAR (once), if DIR exists.
_dp_prepend() {
  local _var="$1" _dir="$2" _cur
  [ -d "$_dir" ] || return 0
  eval "_cur=\"\${$_var:-}\""
  case ":$_cur:" in *":$_dir:"*) return 0 ;; esac
  export "$_var=$_dir${_cur:+:$_cur}"
}

_dp_prepend AMENT_PREFIX_PATH "$_dp_venv"
_dp_prepend LD_LIBRARY_PATH "$_dp_venv/lib"
if [ -f "$_dp_msgs/share/depth_perception_msgs/package.xml" ] || [ -d "$_dp_msgs/lib" ]; then
  _dp_prepend AMENT_PREFIX_PATH "$_dp_msgs"
  _dp_prepend LD_LIBRARY_PATH "$_dp_msgs/lib"
  for _dp_sp in "$_dp_msgs"/lib/python3*/site-packages; do
    _dp_prepend PYTHONPATH "$_dp_sp"
  done
else
  echo "ros_env.sh: depth_perception_msgs not built in $_dp_msgs (run scripts/build_msgs.sh)" >&2
fi
# vision_msgs test stand-in (scripts/build_vision_msgs.sh): only when built, never over a real one.
if [ -f "$_dp_vision/share/vision_msgs/package.xml" ]; then
  _dp_real_vision=""
  _dp_rest="${AMENT_PREFIX_PATH:-}"
  while [ -n "$_dp_rest" ]; do  # split on ':' by hand: same in bash and zsh, spaces allowed
    _dp_p="${_dp_rest%%:*}"
    case "$_dp_rest" in *:*) _dp_rest="${_dp_rest#*:}" ;; *) _dp_rest="" ;; esac
    if [ -n "$_dp_p" ] && [ "$_dp_p" != "$_dp_vision" ] \
        && [ -f "$_dp_p/share/vision_msgs/package.xml" ]; then
      _dp_real_vision="$_dp_p"
      break
    fi
  done
  if [ -z "$_dp_real_vision" ]; then
    _dp_prepend AMENT_PREFIX_PATH "$_dp_vision"
    _dp_prepend LD_LIBRARY_PATH "$_dp_vision/lib"
    for _dp_sp in "$_dp_vision"/lib/python3*/site-packages; do
      _dp_prepend PYTHONPATH "$_dp_sp"
    done
  else
    echo "ros_env.sh: using vision_msgs from $_dp_real_vision, not the test stand-in in $_dp_vision" >&2
  fi
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

unset _dp_src _dp_repo _dp_venv _dp_msgs _dp_vision _dp_sp _dp_p _dp_rest _dp_real_vision
unset -f _dp_prepend
