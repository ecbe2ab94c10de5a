#!/usr/bin/env bash
# `make demo`: one simulated episode (sim robot + policy + adapter), recorded into runs/<timestamp>/.
# Usage: scripts/demo.sh [dreamzero demo options...]   (see: scripts/demo.sh --help)
set -euo pipefail
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
export MUJOCO_GL="${MUJOCO_GL:-egl}"
exec python -m dreamzero_policy.cli demo "$@"
