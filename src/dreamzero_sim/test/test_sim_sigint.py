"""Regression: the installed ``sim_robot_node`` exits 0 on Ctrl-C at any moment of its life.

It used to die with SIGSEGV (-11) when stopped about 1 s after start: the SIGINT arrived while the
render thread was still creating its GL context, the node's constructor was interrupted, and the
process exited with that thread inside EGL. Run with ``scripts/run_tests.sh src/dreamzero_sim/test``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "install" / "dreamzero_sim" / "lib" / "dreamzero_sim" / "sim_robot_node"
PARAMS = ROOT / "config" / "nodes" / "sim_robot_node.yaml"


class NodeProcess:
    """The console script as a child process; its output lines are collected by a reader thread."""

    def __init__(self, extra: list[str]) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        cmd = [sys.executable, str(SCRIPT), "--ros-args", "--params-file", str(PARAMS), *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in ln for ln in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        pytest.fail(f"no '{text}' from the node within {timeout} s; output:\n{self.output()}")

    def interrupt(self, timeout: float = 40.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5.0)
        return rc

    def output(self) -> str:
        return "".join(self.lines)


# The GL context takes ~0.3 s to create here: SIGINT at several points inside that window.
@pytest.mark.parametrize(
    "moment",
    ["renderer starting +0.0 s", "renderer starting +0.1 s", "renderer starting +0.2 s", "running with sim time"],
)
def test_sigint_exits_cleanly(moment: str):
    assert SCRIPT.is_file(), f"{SCRIPT} missing: run 'make build'"
    node = NodeProcess(
        [
            "-p",
            "image_width:=64",
            "-p",
            "image_height:=48",
            "-p",
            "publish_clock:=true",
            "-p",
            "use_sim_time:=true",
            "-p",
            "realtime_factor:=0.5",
        ]
    )
    if moment.startswith("renderer starting"):
        node.wait_line("starting the camera renderer", timeout=60.0)  # SIGINT while the GL context is made
        time.sleep(float(moment.split("+")[1].rstrip(" s")))
    else:
        node.wait_line("sim robot up", timeout=60.0)
        time.sleep(1.0)  # physics, joint states, /clock and images flowing
    rc = node.interrupt()
    out = node.output()
    assert rc == 0, f"exit code {rc} after SIGINT ({moment}); output:\n{out}"
    assert "terminate called" not in out and "Traceback" not in out, out
