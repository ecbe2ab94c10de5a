#!/usr/bin/env bash
# Run the test suite (or the pytest arguments given) the way CI does:
#   - with the venv and the colcon install sourced,
#   - inside a private network namespace that holds only loopback (DDS traffic cannot leave the machine),
#   - with a test-specific ROS_DOMAIN_ID.
# Usage: scripts/run_tests.sh [pytest args...]     (default: the whole suite)
set -euo pipefail
# shellcheck source=scripts/workspace_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/workspace_env.sh"

export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 10 ))}"
export PYTHONDONTWRITEBYTECODE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=(-m "not gpu")

inner='ip link set lo up && exec "$@"'
if unshare -n true 2>/dev/null; then
  echo "==> [test] pytest in a private loopback-only network namespace (unshare -n), ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
  exec unshare -n -- bash -c "$inner" _ env DREAMZERO_TEST_NETNS=isolated python -m pytest "${args[@]}"
elif unshare -rn true 2>/dev/null; then
  echo "==> [test] pytest in a private loopback-only network namespace (unshare -rn), ROS_DOMAIN_ID=$ROS_DOMAIN_ID"
  exec unshare -rn -- bash -c "$inner" _ env DREAMZERO_TEST_NETNS=isolated python -m pytest "${args[@]}"
else
  echo "WARNING [test]: network namespaces are unavailable here (neither 'unshare -n' nor 'unshare -rn' works);" >&2
  echo "WARNING [test]: falling back to ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST / ROS_LOCALHOST_ONLY=1, ROS_DOMAIN_ID=$ROS_DOMAIN_ID" >&2
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1
  exec env DREAMZERO_TEST_NETNS=localhost-only python -m pytest "${args[@]}"
fi
