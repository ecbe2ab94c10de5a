"""The installed ``policy_node`` executable as a separate process: it starts, publishes status,
autostarts into producing chunks from live sensors (replay backend), and exits 0 on SIGINT and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
EXE = REPO / "install" / "dreamzero_policy" / "lib" / "dreamzero_policy" / "policy_node"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_node_process_publishes_and_exits_on_sigint(ros, sensors, collector, replay_bag, tmp_path, sig):
    assert EXE.is_file(), f"{EXE} missing: run 'make build'"
    log = (tmp_path / "policy_node.log").open("w")
    proc = subprocess.Popen(
        [
            str(EXE),
            "--ros-args",
            "-p",
            "backend:=replay",
            "-p",
            f"replay.bag_path:={replay_bag}",
            "-p",
            "replay.loop:=true",
            "-p",
            "autostart:=true",
            "-p",
            "instruction:=pick up the cube",
            "-p",
            "sync.max_age_s:=0.5",
            "-p",
            "status_period_s:=0.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
        cwd=tmp_path,
    )
    try:
        sensors()
        ros.wait_for(
            lambda: len(collector.status) >= 1 or proc.poll() is not None, timeout=30, what="status from the process"
        )
        assert proc.poll() is None, "policy_node exited early"
        ros.wait_for(lambda: len(collector.chunks) >= 2, timeout=30, what="chunks from the process")
        assert collector.status[-1].backend == "replay"
        proc.send_signal(sig)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
    output = (tmp_path / "policy_node.log").read_text()
    assert rc == 0, f"exit code {rc}\n{output}"
    assert "Traceback" not in output, output
    assert "activated" in output
