#!/usr/bin/env bash
# `make demo`: one simulated episode (sim robot + policy + adapter), recorded into runs/<timestamp>/.
# Usage: scripts/demo.sh [dreamzero demo options...]   (see: scripts/demo.sh --help)
set -euo pipefail
# shellcheck source=scripts/workspace_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/workspace_env.sh"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
exec python -m dreamzero_policy.cli demo "$@"
