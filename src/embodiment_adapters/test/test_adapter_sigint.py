"""Regression: the installed ``adapter_node`` exits 0 on Ctrl-C, also while chunks and joint states flow.

It used to die with SIGSEGV (-11): on Jazzy 7.1, ``MultiThreadedExecutor.shutdown()`` neither waits
for nor stops its worker threads, so a callback could still publish while ``destroy_node`` freed the
publishers. Run with ``scripts/run_tests.sh src/embodiment_adapters/test``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from embodiment_adapters.profile import load_profile
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from dreamzero_msgs.msg import ActionChunk

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "install" / "embodiment_adapters" / "lib" / "embodiment_adapters" / "adapter_node"
PARAMS = ROOT / "config" / "nodes" / "adapter_node.yaml"
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


class Traffic:
    """A sim-like peer: /joint_states at 100 Hz and a fresh ActionChunk every 0.1 s."""

    def __init__(self, ros) -> None:
        self.profile = load_profile("droid_franka_sim")
        self.node = ros.node("adapter_sigint_peer")
        self.trajectories = 0
        self.js_pub = self.node.create_publisher(JointState, "/joint_states", 10)
        self.chunk_pub = self.node.create_publisher(ActionChunk, "/dreamzero/action_chunk", 10)
        self.node.create_subscription(JointTrajectory, self.profile.controllers[0].topic, self._on_traj, 10)
        self.chunk_id = 0
        self.node.create_timer(0.01, self._joint_states)
        self.node.create_timer(0.1, self._chunk)

    def _on_traj(self, msg: JointTrajectory) -> None:
        self.trajectories += 1

    def _joint_states(self) -> None:
        msg = JointState(name=[*self.profile.joint_names, "gripper"], position=[*HOME.tolist(), 0.0])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.js_pub.publish(msg)

    def _chunk(self) -> None:
        steps = 24
        arm = HOME + np.linspace(0.0, 0.1 * np.sin(self.chunk_id), steps)[:, None]
        data = np.hstack([arm, np.full((steps, 1), 0.5)])
        msg = ActionChunk(session_id="s", chunk_id=self.chunk_id, embodiment="droid_franka", action_space=0)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.step_duration = Duration(nanosec=int(1e9 / 15))
        msg.horizon, msg.execute_horizon = steps, 8
        msg.names = [*self.profile.joint_names, "gripper"]
        msg.data = data.ravel().tolist()
        self.chunk_pub.publish(msg)
        self.chunk_id += 1


def _start() -> tuple[subprocess.Popen[str], list[str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    cmd = [sys.executable, str(SCRIPT), "--ros-args", "--params-file", str(PARAMS)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


@pytest.mark.parametrize(
    ("sig", "run_s"), [(signal.SIGINT, 0.0), (signal.SIGINT, 0.05), (signal.SIGINT, 1.0), (signal.SIGTERM, 0.05)]
)  # ros2 launch escalates to SIGTERM
def test_sigint_exits_cleanly_while_executing_chunks(ros, sig: signal.Signals, run_s: float):
    assert SCRIPT.is_file(), f"{SCRIPT} missing: run 'make build'"
    traffic = Traffic(ros)
    proc, lines = _start()
    try:
        ros.wait_for(
            lambda: traffic.trajectories > 0 or proc.poll() is not None, 60.0, "the adapter to execute a chunk"
        )
        assert proc.poll() is None, "".join(lines)
        time.sleep(run_s)  # SIGINT at once, or while watchdog, status and chunk callbacks keep running
        proc.send_signal(sig)
        rc = proc.wait(timeout=30.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.1)  # let the reader drain the pipe
    out = "".join(lines)
    assert rc == 0, f"exit code {rc} after {sig.name}; output:\n{out}"
    assert "terminate called" not in out and "Traceback" not in out, out
