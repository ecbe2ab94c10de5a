"""The installed ``sim_robot_node`` console script with the shipped parameter file, as a process.

Run with ``scripts/run_tests.sh src/dreamzero_sim/test`` after ``make build``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "install" / "dreamzero_sim" / "lib" / "dreamzero_sim" / "sim_robot_node"
PARAMS = ROOT / "config" / "nodes" / "sim_robot_node.yaml"


def test_console_script_runs_with_the_param_file_and_exits_cleanly_on_sigint(ros):
    assert SCRIPT.is_file(), f"{SCRIPT} missing: run 'make build'"
    peer = ros.node("sim_script_peer")
    got: dict[str, list] = {"js": [], "img": [], "clock": []}
    peer.create_subscription(JointState, "/joint_states", got["js"].append, 10)
    peer.create_subscription(Image, "/sim/wrist/image_raw", got["img"].append, qos_profile_sensor_data)
    peer.create_subscription(Clock, "/clock", got["clock"].append, 10)
    cmd = [sys.executable, str(SCRIPT), "--ros-args", "--params-file", str(PARAMS),
           "-p", "image_width:=32", "-p", "image_height:=24", "-p", "publish_clock:=true"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ros.wait_for(lambda: got["js"] and got["img"] and got["clock"], timeout=30.0, what="topics from the process")
        assert len(got["js"][-1].name) == 8
        assert (got["img"][-1].width, got["img"][-1].height) == (32, 24)
        # With publish_clock, joint states carry sim time: seconds since the sim started.
        assert got["js"][-1].header.stamp.sec < 60
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
