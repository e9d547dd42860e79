# Source me (bash/zsh):  source scripts/ros_env.sh
#
# Environment for rclpy, depth_perception_msgs and the ROS 2 tools built here from the PyPI ROS 2
# wheels (requirements/ros.txt), scripts/build_msgs.sh and scripts/install_ros_tools.sh. For every
# prefix under install/ that exists (msgs = depth_perception_msgs, vision_msgs,
# composition_interfaces, cv_bridge, ros_tools = message_filters + diagnostic_updater):
#   PYTHONPATH          += <prefix>/lib/python3.X/site-packages
#   LD_LIBRARY_PATH     += <prefix>/lib  (rosidl typesupport libraries are dlopen'ed by name through
#                          LD_LIBRARY_PATH, so this must be set before Python starts)
#   AMENT_PREFIX_PATH   += <prefix>      (ament index look-ups, builds)
# plus the venv itself on AMENT_PREFIX_PATH / LD_LIBRARY_PATH, and
#   ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST  (DDS discovery stays on this host).
# A package that an already sourced ROS 2 install provides (AMENT_PREFIX_PATH, e.g. /opt/ros/jazzy)
# wins over the one built here. rclpy and the standard messages alone need none of this: the wheels'
# ros_wheels_bootstrapper .pth re-execs the venv's Python once with LD_LIBRARY_PATH set.
#
# Overrides: DP_VENV (default <repo>/.venv), DP_INSTALL (default <repo>/install).
# On a robot with a real ROS 2 install, source /opt/ros/<distro>/setup.bash and install/setup.bash
# from colcon instead.

_dp_src="${BASH_SOURCE[0]:-${(%):-%x}}"
_dp_repo="$(cd "$(dirname "$_dp_src")/.." && pwd)"
_dp_venv="${DP_VENV:-$_dp_repo/.venv}"
_dp_install="${DP_INSTALL:-$_dp_repo/install}"

# _dp_prepend VAR DIR: put DIR first in the colon list VAR (once), if DIR exists.
_dp_prepend() {
  local _var="$1" _dir="$2" _cur
  [ -d "$_dir" ] || return 0
  eval "_cur=\"\${$_var:-}\""
  case ":$_cur:" in *":$_dir:"*) return 0 ;; esac
  export "$_var=$_dir${_cur:+:$_cur}"
}

# _dp_provided PKG: true when a prefix already on AMENT_PREFIX_PATH (outside install/) has PKG.
_dp_provided() {
  local _rest="${AMENT_PREFIX_PATH:-}" _p
  while [ -n "$_rest" ]; do  # split on ':' by hand: same in bash and zsh, spaces allowed
    _p="${_rest%%:*}"
    case "$_rest" in *:*) _rest="${_rest#*:}" ;; *) _rest="" ;; esac
    case "$_p" in "$_dp_install"/*) continue ;; esac
    [ -n "$_p" ] && [ -f "$_p/share/$1/package.xml" ] && return 0
  done
  return 1
}

_dp_prepend AMENT_PREFIX_PATH "$_dp_venv"
_dp_prepend LD_LIBRARY_PATH "$_dp_venv/lib"
for _dp_name in ros_tools cv_bridge composition_interfaces vision_msgs msgs; do
  _dp_prefix="$_dp_install/$_dp_name"
  [ -d "$_dp_prefix" ] || continue
  [ "$_dp_name" != msgs ] && [ "$_dp_name" != ros_tools ] && _dp_provided "$_dp_name" && continue
  _dp_prepend AMENT_PREFIX_PATH "$_dp_prefix"
  _dp_prepend LD_LIBRARY_PATH "$_dp_prefix/lib"
  for _dp_sp in "$_dp_prefix"/lib/python3*/site-packages; do
    _dp_prepend PYTHONPATH "$_dp_sp"
  done
done
[ -d "$_dp_install/msgs" ] || echo "ros_env.sh: depth_perception_msgs not built in $_dp_install/msgs" \
  "(run scripts/build_msgs.sh)" >&2
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

unset _dp_src _dp_repo _dp_venv _dp_install _dp_name _dp_prefix _dp_sp
unset -f _dp_prepend _dp_provided
