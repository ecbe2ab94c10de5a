"""Closed loop, the way `make demo` runs it: sim robot + policy (tiny preset) + adapter as processes.

Runs ``dreamzero demo`` in a subprocess (inside the test namespace of scripts/run_tests.sh) for a
short episode on sim time (realtime factor 0.5), then checks the run folder: chunks flowed, the arm
moved and stayed inside the robot profile's limits, every node stopped cleanly, the episode lasted
its sim seconds, every camera delivered its frames, the bag reads back with ``rosbags`` with the
expected topics, and the report and video hold sane numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.demo_tools.report import profile_limits
from rosbags.highlevel import AnyReader

REPO = Path(__file__).resolve().parents[1]
EPISODE_S = 8.0  # sim seconds
REALTIME_FACTOR = 0.5
EXPECTED_TOPICS = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/sim/exterior_1/image_raw": "sensor_msgs/msg/Image",
    "/sim/exterior_2/image_raw": "sensor_msgs/msg/Image",
    "/sim/wrist/image_raw": "sensor_msgs/msg/Image",
    "/dreamzero/action_chunk": "dreamzero_msgs/msg/ActionChunk",
    "/dreamzero/observation_used": "dreamzero_msgs/msg/ObservationStamp",
    "/dreamzero/status": "dreamzero_msgs/msg/PolicyStatus",
    "/adapter_node/commanded": "sensor_msgs/msg/JointState",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo") / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dreamzero_policy.cli",
            "demo",
            "--duration",
            str(EPISODE_S),
            "--checkpoint",
            "tiny",
            "--realtime-factor",
            str(REALTIME_FACTOR),
            "--device",
            "cpu",
            "--output-dir",
            str(out),
            "--startup-timeout",
            "150",
            "--running-timeout",
            "60",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    return out, proc


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_runs_the_closed_loop_and_writes_the_run_folder(demo_run) -> None:
    out, proc = demo_run
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "dreamzero demo: done" in proc.stdout and "limit violations: 0" in proc.stdout
    for name in ("bag/metadata.yaml", "demo.mp4", "report.json", "report.png", "logs/dreamzero_policy.log"):
        assert (out / name).is_file(), name

    report = json.loads((out / "report.json").read_text())
    assert report["run"]["errors"] == []
    assert all(n["clean"] for n in report["run"]["nodes"]), report["run"]["nodes"]
    assert report["run"]["task"]["success"] is True
    run = report["run"]
    assert run["clock"] == "sim" and run["realtime_factor"] == REALTIME_FACTOR
    assert EPISODE_S <= run["episode_sim_s"] < EPISODE_S + 1.0  # the demo ends the episode on sim time
    assert run["episode_s"] > 1.5 * EPISODE_S  # ... which runs at half the wall-clock pace
    cams = [n for t, n in report["episode"]["topics"].items() if t.startswith("/sim/")]
    assert len(cams) == 3 and min(cams) >= 0.9 * max(cams), report["episode"]["topics"]  # no camera loses frames
    ch = report["chunks"]
    assert ch["received"] >= 3 and ch["dropped"] == 0
    assert 0.0 < ch["latency_s"]["mean"] <= ch["latency_s"]["max"] < 30.0
    assert ch["accepted_by_adapter"] >= 1  # at least one chunk made it through the safety layer
    ctl = report["control"]
    assert ctl["achieved_control_rate_hz"] > 1.0 and ctl["joint_state_rate_hz"] > 20.0
    assert report["limit_violations"]["total"] == 0
    assert max(report["motion_rad"].values()) > 0.01  # the arm moved
    assert report["tracking_error_rad"]["rms_mean"] < 0.2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_bag_reads_back_with_the_expected_topics(demo_run) -> None:
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    with AnyReader([out / "bag"], default_typestore=make_typestore()) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for topic, msgtype in EXPECTED_TOPICS.items():
            assert types.get(topic) == msgtype, topic
        counts = {t: 0 for t in types}
        limits = profile_limits("droid_franka_sim")
        worst = 0.0
        chunk_ids = []
        conns = [c for c in reader.connections if c.topic in ("/joint_states", "/dreamzero/action_chunk")]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            counts[conn.topic] += 1
            if conn.topic == "/dreamzero/action_chunk":
                chunk_ids.append(msg.chunk_id)
                assert len(msg.data) == msg.horizon * len(msg.names)
                continue
            assert msg.header.stamp.sec < 3600  # sim time (seconds since the sim started), not the epoch
            for name, q in zip(msg.name, msg.position, strict=True):
                if name in limits:
                    lo, hi, _ = limits[name]
                    worst = max(worst, lo - q, q - hi)
    assert counts["/joint_states"] > 20 * EPISODE_S
    assert chunk_ids == sorted(chunk_ids) and len(chunk_ids) >= 3
    assert worst <= 1e-3, f"a measured joint left its limits by {worst:.4f} rad"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_video_shows_the_cameras(demo_run) -> None:
    out, proc = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    with av.open(str(out / "demo.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) >= 10
    assert frames[-1].shape == (480, 960, 3)
    top = frames[-1][:240].astype(float)
    assert top.std() > 10.0  # rendered scenes, not blank tiles
    assert np.median(top) > 20.0
