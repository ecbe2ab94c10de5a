"""Several drivers on one JointState topic (an arm's and a gripper's on /joint_states)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.core.errors import MappingError
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.reader import DatasetReader
from rosbags.rosbag2 import Writer

JS = "sensor_msgs/msg/JointState"
T0 = 1_700_000_000 * 10**9
ARM = ["j1", "j2", "j3"]
QUIET = ConvertOptions(progress=False)


def _write(path: Path, short_arm_at: int = -1) -> dict[str, tuple[list[int], list[np.ndarray]]]:
    """Arm JointStates at 100 Hz and gripper JointStates at 30 Hz on /joint_states, a camera at 15 Hz."""
    ts = make_typestore()
    T = ts.types
    events: list[tuple[int, str, object]] = []
    truth: dict[str, tuple[list[int], list[np.ndarray]]] = {"arm": ([], []), "gripper": ([], [])}

    def header(t: int) -> object:
        stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id="")

    for k in range(201):
        t = T0 + k * 10_000_000
        q = np.sin(0.03 * k + np.arange(3 if k != short_arm_at else 2))
        events.append((t, JS, T[JS](header=header(t), name=ARM, position=q, velocity=np.zeros(0), effort=np.zeros(0))))
        truth["arm"][0].append(t)
        truth["arm"][1].append(q)
    for k in range(61):
        t = T0 + k * 33_333_333 + 2_000_000
        g = np.array([0.5 + 0.5 * np.sin(0.2 * k)])
        msg = T[JS](header=header(t), name=["gripper"], position=g, velocity=np.zeros(1), effort=np.zeros(1))
        events.append((t, JS, msg))
        truth["gripper"][0].append(t)
        truth["gripper"][1].append(g)
    for k in range(11):  # a third driver that publishes effort only (empty positions)
        t = T0 + k * 200_000_000 + 5_000_000
        msg = T[JS](header=header(t), name=["fan"], position=np.zeros(0), velocity=np.zeros(0), effort=np.ones(1))
        events.append((t, JS, msg))
    for k in range(31):
        t = T0 + k * 66_666_667
        img = np.full((8, 8, 3), 8 * k, np.uint8)
        msg = T["sensor_msgs/msg/Image"](
            header=header(t), height=8, width=8, encoding="rgb8", is_bigendian=0, step=24, data=img.ravel()
        )
        events.append((t, "sensor_msgs/msg/Image", msg))
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9) as w:
        js = w.add_connection("/joint_states", JS, typestore=ts)
        cam = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        for t, msgtype, msg in events:
            w.write(js if msgtype == JS else cam, t, ts.serialize_cdr(msg, msgtype))
    return truth


def _mapping(arm: list[str] = ARM, gripper: list[str] | None = None) -> dict:
    return {
        "name": "shared",
        "fps": 15,
        "video": {"cam": {"topic": "/cam/image"}},
        "state": {
            "arm": {"topic": "/joint_states", "names": arm},
            "gripper": {"topic": "/joint_states", "names": gripper or ["gripper"]},
        },
        "action": {"arm": {"next_state": "arm"}, "gripper": {"next_state": "gripper"}},
        "instruction": {"text": "shared"},
    }


def test_each_key_takes_the_messages_that_carry_its_joints(tmp_path: Path) -> None:
    truth = _write(tmp_path / "bag")
    mapping = mapping_from_dict(_mapping())
    cols = []
    for single in (True, False):
        out = tmp_path / ("one" if single else "two")
        res = convert([tmp_path / "bag"], mapping, out, ConvertOptions(progress=False, single_pass=single))
        assert res.report["bags"][0]["video_pass"].startswith("single" if single else "second")
        cols.append(DatasetReader(out).episode(0).columns)
        streams = json.loads((out / "meta" / "conversion_report.json").read_text())["episodes"][0]["streams"]
        samples = {s["key"]: s["samples"] for s in streams}
        assert samples["arm"] == 201 and samples["gripper"] == 61
    for col in cols[0]:
        np.testing.assert_array_equal(np.asarray(cols[0][col]), np.asarray(cols[1][col]), err_msg=col)
    state = np.asarray(cols[0]["observation.state"])
    assert len(state) >= 25
    for key, width in (("arm", slice(0, 3)), ("gripper", slice(3, 4))):
        stamps, values = truth[key]
        synced = np.asarray(cols[0][f"sync.state.{key}.stamp_ns"])
        rows = np.searchsorted(stamps, synced)
        assert np.isin(synced, stamps).all()
        np.testing.assert_array_equal(state[:, width], np.stack([values[r] for r in rows]).astype(state.dtype))


def test_a_key_whose_joints_no_message_carries_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "bag")
    with pytest.raises(MappingError, match=r"'gripper': none of the 273 JointStates on /joint_states has joints"):
        convert([tmp_path / "bag"], mapping_from_dict(_mapping(gripper=["finger"])), tmp_path / "ds", QUIET)
    # some of a key's joints in one message but not all: a typo, not another driver
    with pytest.raises(MappingError, match=r"'arm': joints \['elbow'\] not in /joint_states"):
        convert([tmp_path / "bag"], mapping_from_dict(_mapping(arm=["j1", "elbow"])), tmp_path / "ds", QUIET)
    assert not (tmp_path / "ds").exists()


def test_inspect_lists_every_joint_on_the_topic(tmp_path: Path) -> None:
    from dreamzero_policy.data.inspect import inspect_bag

    _write(tmp_path / "bag")
    report = inspect_bag(tmp_path / "bag", plot_dir=tmp_path / "plots")
    assert report["topics"]["/joint_states"]["joints"] == {"j1": 201, "j2": 201, "j3": 201, "gripper": 61}
    assert (tmp_path / "plots" / "bag_joint_states_joints.png").read_bytes()[:4] == b"\x89PNG"


def test_a_message_with_the_keys_joints_but_missing_values_is_an_error(tmp_path: Path) -> None:
    from dreamzero_policy.core.errors import DatasetError

    _write(tmp_path / "bag", short_arm_at=50)
    with pytest.raises(DatasetError, match=r"/joint_states: JointState position has 2 values for 3 names"):
        convert([tmp_path / "bag"], mapping_from_dict(_mapping()), tmp_path / "ds", QUIET)
    assert not (tmp_path / "ds").exists()
