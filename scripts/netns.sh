#!/usr/bin/env bash
# Run CMD inside a fresh loopback-only network namespace, with scripts/ros_env.sh sourced and
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, so that rclpy/DDS can only ever talk over 127.0.0.1.
#
#   scripts/netns.sh CMD [ARGS...]      e.g. scripts/netns.sh .venv/bin/python -m pytest test/ros -q
#
# When the current namespace already has no interface but `lo`, CMD just runs here.
# The exit status is CMD's. Needs unshare (util-linux) and, preferably, ip (apt-get install iproute2);
# without ip, lo is brought up with a Python ioctl. Non-root users get a user namespace (unshare -r).
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"

# Interfaces of *this process's* network namespace. /proc/self/net/dev follows the namespace;
# /sys/class/net does not (sysfs keeps showing the namespace it was mounted in after unshare -n).
interfaces() { awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' /proc/self/net/dev; }
loopback_only() { [ "$(interfaces | grep -vx lo | wc -l)" -eq 0 ] && [ -n "$(interfaces)" ]; }

lo_up() {
  if command -v ip >/dev/null 2>&1; then
    ip link set lo up && return 0
  fi
  local py
  for py in "${PYTHON:-}" "$REPO/.venv/bin/python" python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    "$py" - <<'PY' && return 0
import fcntl, socket, struct
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack('16sH14x', fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack('16sH14x', b'lo', 0)))[1]
fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack('16sH14x', b'lo', flags | IFF_UP))
PY
  done
  echo "netns.sh: cannot bring lo up: install iproute2 (apt-get install iproute2) or python3" >&2
  return 1
}

if loopback_only; then
  lo_up
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  # shellcheck source=ros_env.sh
  source "$HERE/ros_env.sh"
  unset _DP_NETNS_INNER
  exec "$@"
fi

if [ -n "${_DP_NETNS_INNER:-}" ]; then
  echo "netns.sh: still see non-loopback interfaces after unshare -n: $(interfaces | tr '\n' ' ')" >&2
  exit 1
fi
command -v unshare >/dev/null 2>&1 || { echo "netns.sh: unshare not found (apt-get install util-linux)" >&2; exit 1; }
userns=()
[ "$(id -u)" -eq 0 ] || userns=(-r)
exec unshare "${userns[@]}" -n -- env _DP_NETNS_INNER=1 bash "$HERE/netns.sh" "$@"
