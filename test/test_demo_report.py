"""Report numbers and the demo video from a synthetic bag with known content (no ROS needed)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.demo_tools import metrics
from dreamzero_policy.demo_tools.report import build_report, profile_limits
from dreamzero_policy.demo_tools.video import compose, write_video
from rosbags.rosbag2 import StoragePlugin, Writer

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
HOME = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.8])
CAMS = ["/sim/exterior_1/image_raw", "/sim/exterior_2/image_raw", "/sim/wrist/image_raw"]
PRED = "/dreamzero_policy/predicted/image"
T0 = 1_700_000_000 * 10**9


def _write_bag(path: Path, *, dropped_ids: set[int], overshoot: bool = False, lag_s: float = 0.1) -> None:
    """10 s: joint_states 100 Hz lagging the commanded 50 Hz sine on joint 1 by ``lag_s``; 20 chunks at 2.5 Hz."""
    ts = make_typestore()
    S = ts.types
    Header, Time = S["std_msgs/msg/Header"], S["builtin_interfaces/msg/Time"]
    Duration = S["builtin_interfaces/msg/Duration"]

    def header(t_ns: int) -> object:
        return Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="")

    def joint_state(t_ns: int, q: np.ndarray) -> object:
        return S["sensor_msgs/msg/JointState"](
            header=header(t_ns), name=JOINTS, position=q.astype(float), velocity=np.zeros(0), effort=np.zeros(0)
        )

    def q_at(t: float) -> np.ndarray:
        q = HOME.copy()
        q[0] = 0.3 * np.sin(t)
        if overshoot and t > 5.0:
            q[3] = -0.05  # beyond panda_joint4's upper limit (-0.0698)
        return q

    msgs: list[tuple[int, str, str, object]] = []
    for k in range(1000):
        t = k * 0.01
        msgs.append(
            (
                T0 + k * 10**7,
                "/joint_states",
                "sensor_msgs/msg/JointState",
                joint_state(T0 + k * 10**7, q_at(t - lag_s)),
            )
        )
    for k in range(500):
        t_ns = T0 + k * 2 * 10**7
        msgs.append((t_ns, "/adapter_node/commanded", "sensor_msgs/msg/JointState", joint_state(t_ns, q_at(k * 0.02))))
    for i in range(20):
        t_ns = T0 + 10**9 + i * 4 * 10**8
        if i not in dropped_ids:
            chunk = S["dreamzero_msgs/msg/ActionChunk"](
                header=header(t_ns),
                session_id="s1",
                chunk_id=i,
                embodiment="droid_franka_sim",
                action_space=0,
                step_duration=Duration(sec=0, nanosec=66_666_667),
                horizon=1,
                execute_horizon=8,
                names=["gripper"],
                data=np.array([0.5]),
                inference_started=Time(sec=0, nanosec=0),
                inference_latency=Duration(sec=0, nanosec=(200 + 10 * i) * 10**6),
            )
            msgs.append((t_ns, "/dreamzero/action_chunk", "dreamzero_msgs/msg/ActionChunk", chunk))
        traj = S["trajectory_msgs/msg/JointTrajectory"](header=header(t_ns), joint_names=JOINTS, points=[])
        msgs.append((t_ns + 1000, "/arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", traj))
    status = S["dreamzero_msgs/msg/PolicyStatus"](
        header=header(T0 + 9 * 10**9),
        state=4,
        session_id="s1",
        last_chunk_id=19,
        chunks_published=20,
        last_latency_s=0.39,
        mean_latency_s=0.3,
        p95_latency_s=0.38,
        dropped_observations=3,
        stale_inputs=0,
        rejected_inputs=0,
        backend="inprocess",
        model_id="preset:tiny",
        message="running",
    )
    msgs.append((T0 + 9 * 10**9, "/dreamzero/status", "dreamzero_msgs/msg/PolicyStatus", status))
    kv = S["diagnostic_msgs/msg/KeyValue"]
    adapter = S["diagnostic_msgs/msg/DiagnosticStatus"](
        level=0,
        name="adapter_node",
        message="ok",
        hardware_id="",
        values=[kv(key="accepted", value="15"), kv(key="rejected", value="3"), kv(key="robot", value="sim")],
    )
    msgs.append((T0 + 9 * 10**9, "/adapter_node/status", "diagnostic_msgs/msg/DiagnosticStatus", adapter))
    for k in range(30):  # 3 Hz cameras, each camera a different grey level; predicted frames at 1 Hz
        t_ns = T0 + k * 333_333_333
        for c, topic in enumerate(CAMS):
            img = S["sensor_msgs/msg/Image"](
                header=header(t_ns),
                height=24,
                width=32,
                encoding="rgb8",
                is_bigendian=0,
                step=96,
                data=np.full(24 * 96, 60 * (c + 1), np.uint8),
            )
            msgs.append((t_ns, topic, "sensor_msgs/msg/Image", img))
        if k % 3 == 2:
            img = S["sensor_msgs/msg/Image"](
                header=header(t_ns),
                height=16,
                width=64,
                encoding="rgb8",
                is_bigendian=0,
                step=192,
                data=np.full(16 * 192, 250, np.uint8),
            )
            msgs.append((t_ns, PRED, "sensor_msgs/msg/Image", img))
    msgs.sort(key=lambda m: m[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for t_ns, topic, msgtype, msg in msgs:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], t_ns, ts.serialize_cdr(msg, msgtype))


def test_report_numbers_match_the_synthetic_episode(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", dropped_ids={4, 5})
    report = build_report(tmp_path / "bag", tmp_path, "droid_franka_sim", {"instruction": "x"})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == report
    assert (tmp_path / "report.png").stat().st_size > 10_000
    ch = report["chunks"]
    assert ch["received"] == 18 and ch["dropped"] == 2 and ch["sessions"] == 1
    assert ch["rate_hz"] == pytest.approx(18 / 7.6, rel=1e-3)
    lat = [0.2 + 0.01 * i for i in range(20) if i not in (4, 5)]
    assert ch["latency_s"]["mean"] == pytest.approx(np.mean(lat), rel=1e-6)
    assert ch["latency_s"]["max"] == pytest.approx(0.39, rel=1e-6)
    assert ch["step_duration_s"] == pytest.approx(1 / 15, rel=1e-3)
    ctl = report["control"]
    assert ctl["achieved_control_rate_hz"] == pytest.approx(50.0, rel=0.02)
    assert ctl["controller_command_rate_hz"] == pytest.approx(2.5, rel=0.06)
    assert ctl["joint_state_rate_hz"] == pytest.approx(100.0, rel=0.02)
    # joint 1 lags a 0.3 rad, 1 rad/s sine by 0.1 s: error amplitude 2 * 0.3 * sin(0.05) ~ 0.030 rad
    j1 = report["tracking_error_rad"]["per_joint"]["panda_joint1"]
    assert j1["max_abs"] == pytest.approx(2 * 0.3 * np.sin(0.05), rel=0.05)
    assert report["tracking_error_rad"]["per_joint"]["panda_joint2"]["max_abs"] == pytest.approx(0.0, abs=1e-9)
    assert report["motion_rad"]["panda_joint1"] == pytest.approx(0.3 + 0.3 * np.sin(0.1), abs=1e-3)
    assert report["limit_violations"]["total"] == 0
    assert report["policy_status"]["dropped_observations"] == 3
    assert (ch["accepted_by_adapter"], ch["rejected_by_adapter"]) == (15, 3)
    assert report["adapter_status"]["robot"] == "sim"


def test_report_counts_position_limit_violations(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", dropped_ids=set(), overshoot=True)
    lim = build_report(tmp_path / "bag", tmp_path, "droid_franka_sim")["limit_violations"]
    j4 = lim["per_joint"]["panda_joint4"]
    assert j4["position_measured"] > 400 and j4["position_commanded"] > 200
    assert lim["total"] >= j4["position_measured"] + j4["position_commanded"]
    assert lim["max_position_excess_rad"] == pytest.approx(0.0198, abs=1e-6)


def test_commanded_setpoints_get_the_measured_tolerance() -> None:
    """The adapter plans from the measured state: a setpoint 0.4 mrad past a limit (penetration) is not a
    violation, 2 mrad is."""
    from dreamzero_policy.demo_tools.episode import JointSeries
    from dreamzero_policy.demo_tools.metrics import POSITION_TOL_RAD, limit_violations

    hi = 2.8973
    t = np.arange(4) * 0.02
    cmd = JointSeries(("panda_joint3",), t, np.array([[hi], [hi + 0.4 * POSITION_TOL_RAD], [hi], [hi]]), t)
    empty = JointSeries.empty()
    assert limit_violations(empty, cmd, {"panda_joint3": (-hi, hi, 2.6)})["total"] == 0
    cmd.pos[2, 0] = hi + 2 * POSITION_TOL_RAD
    assert limit_violations(empty, cmd, {"panda_joint3": (-hi, hi, 2.6)})["per_joint"]["panda_joint3"] == {
        "position_measured": 0,
        "position_commanded": 1,
        "velocity_measured": 0,
    }


def test_velocity_violation_detected() -> None:
    from dreamzero_policy.demo_tools.episode import JointSeries

    t = np.arange(0, 1, 0.01)
    fast = JointSeries(("j",), t, (5.0 * t)[:, None], t)  # 5 rad/s against a 2 rad/s limit
    slow = JointSeries(("j",), t, (1.0 * t)[:, None], t)
    limits = {"j": (-10.0, 10.0, 2.0)}
    assert metrics.limit_violations(fast, JointSeries.empty(), limits)["per_joint"]["j"]["velocity_measured"] > 50
    assert metrics.limit_violations(slow, JointSeries.empty(), limits)["total"] == 0


def test_dropped_chunks_counts_gaps_and_tail() -> None:
    ids = np.array([0, 1, 3, 0, 1])
    assert metrics.dropped_chunks(ids, ["a", "a", "a", "b", "b"]) == 1
    assert metrics.dropped_chunks(ids, ["a", "a", "a", "b", "b"], published=5, status_session="b") == 4
    assert metrics.dropped_chunks(np.array([2, 3]), ["a", "a"]) == 2  # ids start at 0 per session


def test_profile_limits_come_from_the_robot_profile() -> None:
    limits = profile_limits("droid_franka_sim")
    assert limits["panda_joint4"] == pytest.approx((-3.0718, -0.0698, 2.175))
    assert len(limits) == 7


def test_video_shows_cameras_above_prediction(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", dropped_ids=set())
    summary = write_video(tmp_path / "bag", tmp_path / "demo.mp4", CAMS, PRED, fps=5.0, tile=(64, 48))
    assert summary.camera_frames == dict.fromkeys(CAMS, 30) and summary.predicted_frames == 10
    assert summary.size == (192, 96)
    with av.open(str(tmp_path / "demo.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == summary.frames
    assert 45 <= len(frames) <= 52  # ~9.67 s of images at 5 fps, plus the final frame
    last = frames[-1].astype(int)
    # camera tiles keep their grey levels (60, 120, 180) away from the label; the prediction is bright
    for c in range(3):
        assert abs(np.median(last[30:46, 64 * c + 8 : 64 * c + 56]) - 60 * (c + 1)) < 12
    assert np.median(last[60:90, 70:120]) > 235


def test_compose_marks_missing_streams() -> None:
    frame = compose([("a", None), ("b", np.full((10, 10, 3), 200, np.uint8))], None, (40, 30))
    assert frame.shape == (60, 80, 3) and frame.dtype == np.uint8
    assert np.median(frame[20:30, 45:75]) == 200 and np.median(frame[20:30, 5:35]) == 0


def test_video_without_camera_images_is_an_error(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", dropped_ids=set())
    with pytest.raises(ValueError, match="no camera images"):
        write_video(tmp_path / "bag", tmp_path / "x.mp4", ["/nope/image_raw"], PRED)
