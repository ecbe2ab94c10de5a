"""Mappings that take joint names, gripper joints and units from a robot profile (``robot:``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from dreamzero_policy.core.errors import MappingError
from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import load_mapping, mapping_from_dict
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.data.streams import SeriesBuilder
from dreamzero_policy.data.synth import SynthSpec, mapping_dict, write_bag
from embodiment_adapters.profile import load_profile

REPO = Path(__file__).resolve().parents[4]
QUIET = ConvertOptions(progress=False)


def _deg_profile(path: Path) -> Path:
    """A robot whose driver speaks degrees: revolute j1, j2, a prismatic j3, gripper open=1 closed=0."""
    lim = {"lower": -3.0, "upper": 3.0, "velocity": 2.0, "acceleration": 10.0}
    profile = {
        "name": "deg_bot",
        "units": "deg",
        "action_spaces": ["joint_position"],
        "joints": [
            {"name": "j1", "limits": lim},
            {"name": "j2", "limits": lim},
            {"name": "j3", "type": "prismatic", "limits": lim},
        ],
        "controllers": [{"name": "arm_controller", "joints": ["j1", "j2", "j3"], "topic": "/arm/joint_trajectory"}],
        "grippers": [
            {
                "name": "gripper",
                "joint": "gripper",
                "interface": "forward_command",
                "topic": "/gripper/commands",
                "open": 1.0,
                "closed": 0.0,
            }
        ],
        "aliases": {"arm.0": "j1", "arm.1": "j2", "arm.2": "j3", "grip": "gripper"},
    }
    path.write_text(yaml.safe_dump(profile))
    return path


def test_data_robot_sim_profile_supplies_names_order_and_aliases() -> None:
    m = mapping_from_dict(
        {
            "name": "sim",
            "robot": "droid_franka_sim",
            "fps": 15,
            "video": {"v": "/sim/wrist/image_raw"},
            "state": {"joint_position": {"topic": "/joint_states"}, "gripper_position": {"topic": "/joint_states"}},
            "action": {"joint_position": {"topic": "/chunk"}, "gripper_position": {"next_state": "gripper_position"}},
        }
    )
    profile = load_profile("droid_franka_sim")
    joints, grip = m.state
    assert joints.names == profile.joint_names and len(joints.names) == 7
    assert joints.alt_names[3] == ("joint_position.3",)
    assert grip.names == ("gripper",)  # the sim's gripper joint; normalised already (open 0, closed 1)
    assert grip.wire_scale == (1.0,) and grip.wire_offset == (0.0,)
    assert m.robot == "droid_franka_sim" and m.robot_type == "droid_franka_sim"
    action = m.action[0].stream
    assert action is not None and action.names == profile.joint_names


def test_data_robot_real_franka_gripper_is_normalised_from_the_controller_range() -> None:
    m = mapping_from_dict(
        {
            "name": "f",
            "robot": "droid_franka",
            "fps": 15,
            "video": {"v": "/c"},
            "state": {"g": {"topic": "/joint_states", "from_robot": "gripper_position"}},
        }
    )
    (g,) = m.state
    assert g.names == ("robotiq_85_left_knuckle_joint",)  # the gripper's joint, not its column name
    assert set(g.alt_names[0]) == {"gripper", "gripper_position"}
    assert g.wire_scale[0] * 0.8 + g.wire_offset[0] == pytest.approx(1.0)  # 0.8 rad = closed
    assert g.wire_offset[0] == pytest.approx(0.0)


def test_data_robot_unknown_selector_lists_the_options() -> None:
    data = {"name": "x", "robot": "droid_franka_sim", "fps": 15, "video": {"v": "/c"}}
    with pytest.raises(MappingError, match=r"nothing called 'elbow'.*joint_position.*arm_controller"):
        mapping_from_dict({**data, "state": {"elbow": {"topic": "/joint_states"}}})
    with pytest.raises(MappingError, match="unknown robot profile"):
        mapping_from_dict({**data, "robot": "no_such_robot"})
    with pytest.raises(MappingError, match="from_robot needs"):
        mapping_from_dict(
            {"name": "x", "fps": 15, "video": {"v": "/c"}, "state": {"s": {"topic": "/j", "from_robot": "x"}}}
        )


def test_data_robot_deg_profile_converts_driver_units_but_not_chunks(tmp_path: Path) -> None:
    spec = SynthSpec(duration_s=2.0, chunk_topic="/chunk", seed=5)
    truth = write_bag(tmp_path / "bag", spec)
    _deg_profile(tmp_path / "deg_bot.yaml")
    data = mapping_dict(spec)
    data["robot"] = "deg_bot.yaml"  # relative to the mapping file's folder
    data["state"] = {
        "joint_position": {"topic": "/joint_states", "from_robot": "arm"},
        "gripper_position": {"topic": "/joint_states", "from_robot": "grip"},
        "explicit": {"topic": "/joint_states", "from_robot": "arm", "scale": 2.0},
    }
    data["action"] = {"joint_position": {"topic": "/chunk", "from_robot": "arm_controller"}}
    data["relative_action"] = {"joint_position": "joint_position"}
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(data))
    mapping = load_mapping(tmp_path / "map.yaml")
    assert convert([tmp_path / "bag"], mapping, tmp_path / "ds", QUIET).exit_code == 0
    ep = DatasetReader(tmp_path / "ds").episode(0)

    stamps = np.asarray(truth.stamps["/joint_states"])
    rows = np.searchsorted(stamps, ep.columns["sync.state.joint_position.stamp_ns"])
    q = np.stack(truth.joints)[rows]  # j1, j2, j3, gripper as written (degrees / raw)
    expect = np.stack([q[:, 0] * math.pi / 180, q[:, 1] * math.pi / 180, q[:, 2]], axis=1)  # j3 is prismatic
    np.testing.assert_allclose(ep.state["joint_position"], expect.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(ep.state["gripper_position"][:, 0], (1.0 - q[:, 3]).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(ep.state["explicit"], (2.0 * q[:, :3]).astype(np.float32), rtol=1e-6)

    # Chunk columns are model outputs (rad): taken as they are, found by joint name.
    targets = ep.columns["sync.action.joint_position.stamp_ns"]
    for k, tgt in enumerate(targets):
        c0, step, chunk = max((c for c in truth.chunks if c[0] + c[1] <= tgt), key=lambda c: c[0])
        np.testing.assert_array_equal(
            ep.action["joint_position"][k], chunk[(int(tgt) - c0) // step - 1, :3].astype(np.float32)
        )


def test_data_robot_chunk_columns_may_use_profile_aliases() -> None:
    m = mapping_from_dict(
        {
            "name": "a",
            "robot": "droid_franka_sim",
            "fps": 15,
            "video": {"v": "/c"},
            "action": {"joint_position": {"topic": "/chunk"}, "gripper_position": {"topic": "/chunk"}},
        }
    )
    ts = make_typestore()
    T = ts.types
    names = [f"joint_position.{i}" for i in range(7)] + ["gripper"]
    data = np.arange(2 * 8, dtype=np.float64)
    stamp = T["builtin_interfaces/msg/Time"](sec=10, nanosec=0)
    msg = T["dreamzero_msgs/msg/ActionChunk"](
        header=T["std_msgs/msg/Header"](stamp=stamp, frame_id=""),
        session_id="s",
        chunk_id=0,
        embodiment="droid_franka_sim",
        action_space=0,
        step_duration=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=50_000_000),
        horizon=2,
        execute_horizon=2,
        names=names[::-1],  # reversed: selection must follow the profile's order, not the message's
        data=data,
        inference_started=stamp,
        inference_latency=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
    )
    out = {}
    for a in m.action:
        assert a.stream is not None
        b = SeriesBuilder(a.stream, "dreamzero_msgs/msg/ActionChunk", 1e9 / 15)
        b.add(msg, 10 * 10**9)
        out[a.key] = b.finish().values
    rows = data.reshape(2, 8)
    np.testing.assert_array_equal(out["joint_position"], rows[:, ::-1][:, :7])
    np.testing.assert_array_equal(out["gripper_position"], rows[:, :1])  # 'gripper' is the first column


def test_data_robot_shipped_sim_mapping_loads() -> None:
    m = load_mapping(REPO / "config" / "datasets" / "droid_franka_sim.yaml")
    assert m.robot == "droid_franka_sim"
    assert [s.names for s in m.state] == [load_profile("droid_franka_sim").joint_names, ("gripper",)]
