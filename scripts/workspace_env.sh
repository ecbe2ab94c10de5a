# Sourced (not run) by scripts that use the built workspace: cd to the repository root, then
# activate the venv, the system ROS 2 when one is sourced, and the colcon install.
# Stops with a hint when `make setup` has not been run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${DREAMZERO_VENV:-$ROOT/.venv}"
[[ -x "$VENV/bin/python" && -f install/setup.bash ]] || { echo "ERROR: workspace not set up; run 'make setup' first" >&2; exit 2; }
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if [[ -n "${ROS_DISTRO:-}" && -f "/opt/ros/${ROS_DISTRO}/setup.bash" ]]; then
  # shellcheck disable=SC1090
  source "/opt/ros/${ROS_DISTRO}/setup.bash"
fi
set +u  # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
source install/setup.bash
set -u
