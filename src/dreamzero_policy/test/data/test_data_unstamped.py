"""Publishers that leave header stamps at zero: a clear error naming the fix, or receive time when asked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.core.errors import DatasetError, MappingError
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.inspect import inspect_bag
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.data.synth import Camera, SynthSpec, mapping_dict, write_bag

SPEC = SynthSpec(
    duration_s=2.0,
    cameras=(Camera("/cam0/image", "rgb8"), Camera("/cam1/image", "jpeg", phase_s=0.02)),
    jitter_s=0.003,
    seed=21,
)


@pytest.mark.parametrize("single", [True, False], ids=["single-pass", "two-pass"])
@pytest.mark.parametrize("topic", ["/joint_states", "/cam1/image"])
def test_unstamped_topic_fails_naming_the_topic_and_the_fix(tmp_path: Path, topic: str, single: bool) -> None:
    bag = tmp_path / "bag"
    write_bag(bag, replace(SPEC, unstamped=frozenset({topic})))
    mapping = mapping_from_dict(mapping_dict(SPEC))
    with pytest.raises(DatasetError, match=rf"{bag}: {topic}: all \d+ header stamps are 0 .*receive_time_topics"):
        convert([bag], mapping, tmp_path / "ds", ConvertOptions(progress=False, single_pass=single))
    assert not (tmp_path / "ds").exists()
    report = inspect_bag(bag, mapping)  # inspect shows it too, instead of failing
    assert report["topics"][topic]["time_source"] == "receive (header stamps are 0)"
    assert report["topics"][topic]["rate_hz"] > 10
    assert "header stamps are 0" in report["episodes"][0]["error"]


def test_receive_time_topics_align_on_the_recorders_clock(tmp_path: Path) -> None:
    unstamped = ("/joint_states", "/cam1/image")
    truth = write_bag(tmp_path / "bag", replace(SPEC, unstamped=frozenset(unstamped)))
    mapping = mapping_from_dict(mapping_dict(SPEC, receive_time_topics=list(unstamped)))
    outs = []
    for single in (True, False):
        out = tmp_path / ("one" if single else "two")
        res = convert([tmp_path / "bag"], mapping, out, ConvertOptions(progress=False, single_pass=single))
        assert res.report["bags"][0]["video_pass"].startswith("single" if single else "second")
        outs.append(out)
    reports = [json.loads((o / "meta" / "conversion_report.json").read_text())["episodes"] for o in outs]
    assert reports[0] == reports[1]
    sources = {s["key"]: s["time_source"] for s in reports[0][0]["streams"]}
    assert sources == {
        "view0": "header",
        "view1": "receive",
        "joint_position": "receive",
        "gripper_position": "receive",
        "action.joint_position (next joint_position)": "receive",
        "action.gripper_position (next gripper_position)": "receive",
    }
    one, two = (DatasetReader(o).episode(0).columns for o in outs)
    for col in one:
        np.testing.assert_array_equal(np.asarray(one[col]), np.asarray(two[col]), err_msg=col)
    # Each frame's state is the JointState received nearest to the tick, exactly.
    received = np.asarray(truth.received["/joint_states"])
    synced = np.asarray(one["sync.state.joint_position.stamp_ns"])
    assert len(synced) > 20 and np.isin(synced, received).all()
    rows = np.searchsorted(received, synced)
    state = np.asarray(one["observation.state"])
    np.testing.assert_array_equal(state, np.stack([truth.joints[k] for k in rows]).astype(state.dtype))
    ticks = np.asarray(one["sync.stamp_ns"])
    assert np.abs(synced - ticks).max() <= 5_000_000  # 100 Hz joints: within half a period
    frames = np.asarray(one["sync.video.view1.stamp_ns"])
    assert np.isin(frames, truth.received["/cam1/image"]).all()


def test_receive_time_topics_are_checked() -> None:
    with pytest.raises(MappingError, match=r"receive_time_topics: /nope is not the topic of any key"):
        mapping_from_dict(mapping_dict(SPEC, receive_time_topics=["/nope"]))
    with pytest.raises(MappingError, match="expected a list"):
        mapping_from_dict(mapping_dict(SPEC, receive_time_topics={"/joint_states": True}))
    one = mapping_from_dict(mapping_dict(SPEC, receive_time_topics="/joint_states"))
    assert one.receive_time_topics == ("/joint_states",)


def test_inspect_tells_a_start_now_trajectory_from_an_unstamped_driver(tmp_path: Path) -> None:
    # A JointTrajectory stamped 0 means "start now" to a controller (the converter times it by
    # receive time itself); an unstamped JointState needs receive_time_topics.
    from dreamzero_policy.data.bagio import make_typestore
    from rosbags.rosbag2 import Writer

    ts = make_typestore()
    T = ts.types
    zero = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="")
    point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.zeros(1),
        velocities=np.zeros(0),
        accelerations=np.zeros(0),
        effort=np.zeros(0),
        time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=100_000_000),
    )
    kinds = {
        "/arm_controller/joint_trajectory": (
            "trajectory_msgs/msg/JointTrajectory",
            T["trajectory_msgs/msg/JointTrajectory"](header=zero, joint_names=["j1"], points=[point]),
        ),
        "/joint_states": (
            "sensor_msgs/msg/JointState",
            T["sensor_msgs/msg/JointState"](
                header=zero, name=["j1"], position=np.zeros(1), velocity=np.zeros(0), effort=np.zeros(0)
            ),
        ),
    }
    with Writer(tmp_path / "bag", version=9) as w:
        conns = {topic: w.add_connection(topic, msgtype, typestore=ts) for topic, (msgtype, _) in kinds.items()}
        for k in range(20):
            for topic, (msgtype, msg) in kinds.items():
                w.write(conns[topic], 10**18 + k * 100_000_000, ts.serialize_cdr(msg, msgtype))
    topics = inspect_bag(tmp_path / "bag")["topics"]
    assert topics["/arm_controller/joint_trajectory"]["time_source"] == "receive (stamp 0 = start now)"
    assert topics["/joint_states"]["time_source"] == "receive (header stamps are 0)"
    assert topics["/joint_states"]["rate_hz"] == pytest.approx(10.0)
