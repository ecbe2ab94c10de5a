#!/usr/bin/env bash
# `make train-demo`: the simulated training experiment (issue 8). Scripted-expert demonstrations in the MuJoCo
# sim -> rosbags -> dataset (data pipeline) -> `small` model trained twice on CPU (recipes full / action-only)
# -> closed-loop success rates vs a random policy. Writes runs/train_demo/<timestamp>/ (results.md, results.json,
# loss_curves.png). No ROS needed: everything runs in one Python process.
# Usage: scripts/train_demo.sh [--smoke] [--steps N] [--episodes N] [--eval-episodes N] [-o DIR] ...
#        (python -m dreamzero_policy.training.sim_experiment --help lists every option)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${DREAMZERO_VENV:-$ROOT/.venv}"
[[ -x "$VENV/bin/python" ]] || { echo "ERROR: no Python environment at $VENV; run 'make setup' first" >&2; exit 2; }
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export PYTHONPATH="$ROOT/src/dreamzero_policy:$ROOT/src/embodiment_adapters:$ROOT/src/dreamzero_sim${PYTHONPATH:+:$PYTHONPATH}"
exec python -m dreamzero_policy.training.sim_experiment "$@"
