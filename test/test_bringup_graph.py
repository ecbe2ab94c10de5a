"""The bringup graph (used by launch/*.launch.py and the demo runner) is valid data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dreamzero_policy.bringup import RECORD_TOPICS, NodeSpec, bringup_nodes, record_command, sim_nodes

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"


def test_sim_graph_has_sim_policy_and_adapter_with_existing_files() -> None:
    specs = sim_nodes(backend="inprocess", checkpoint="small", config=CONFIG)
    assert [(s.package, s.executable) for s in specs] == [
        ("dreamzero_sim", "sim_robot_node"),
        ("dreamzero_policy", "policy_node"),
        ("embodiment_adapters", "adapter_node"),
    ]
    for spec in specs:
        for path in spec.parameter_files:
            assert path.is_file(), f"{spec.name}: missing parameter file {path}"
            # ROS applies a params file only to the node names it lists
            keys = set(yaml.safe_load(path.read_text()))
            assert spec.name in keys or "/**" in keys, f"{path.name} has no section for node {spec.name!r}"
    policy = specs[1]
    assert policy.lifecycle
    assert policy.parameters == {"backend": "inprocess", "embodiment": "droid_sim", "checkpoint": "small"}
    assert specs[2].parameters == {"robot": "droid_franka_sim"}


def test_sim_time_graph_runs_every_node_on_the_sim_clock() -> None:
    specs = sim_nodes(config=CONFIG, realtime_factor=0.25)
    assert all(s.parameters.get("use_sim_time") is True for s in specs)
    sim = specs[0]
    assert sim.parameters["publish_clock"] is True and sim.parameters["realtime_factor"] == 0.25
    assert "realtime_factor:=0.25" in sim.ros_arguments() and "use_sim_time:=true" in specs[2].ros_arguments()
    # Without a factor the parameter files decide (wall clock by default).
    assert all("use_sim_time" not in s.parameters for s in sim_nodes(config=CONFIG))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="realtime_factor must be > 0"):
            sim_nodes(config=CONFIG, realtime_factor=bad)


def test_record_topics_of_private_names_follow_the_node_names() -> None:
    policy, adapter = (s.name for s in sim_nodes(config=CONFIG)[1:])
    # The policy subscribes ~/instruction and the adapter publishes ~/commanded.
    assert f"/{policy}/instruction" in RECORD_TOPICS
    assert f"/{adapter}/commanded" in RECORD_TOPICS
    private = [t for t in RECORD_TOPICS if t.count("/") == 2 and not t.startswith(("/sim/", "/dreamzero/"))]
    assert {t.split("/")[1] for t in private} <= {policy, adapter}, private


def test_every_launch_file_has_a_launch_description() -> None:
    files = sorted((REPO / "launch").glob("*.launch.py"))
    assert {f.name for f in files} >= {"bringup.launch.py", "sim.launch.py", "record.launch.py"}
    for f in files:
        text = f.read_text()
        assert "def generate_launch_description" in text, f.name
        compile(text, str(f), "exec")


def test_unknown_backend_and_robot_are_rejected_with_reason() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        bringup_nodes("droid_franka", "droid", backend="cloud", config=CONFIG)
    with pytest.raises(ValueError, match=r"unknown robot 'nope'.*known robots: .*droid_franka"):
        bringup_nodes("nope", "droid", config=CONFIG)


def test_ros_arguments_match_the_ros2_command_line() -> None:
    spec = NodeSpec(
        "pkg",
        "exe",
        "n",
        parameter_files=(Path("/a.yaml"),),
        parameters={"flag": True, "rate": 15.0},
        remappings=(("in", "/x"),),
    )
    assert spec.ros_arguments() == [
        "--ros-args",
        "-r",
        "__node:=n",
        "--params-file",
        "/a.yaml",
        "-p",
        "flag:=true",
        "-p",
        "rate:=15.0",
        "-r",
        "in:=/x",
    ]


def test_record_command_uses_mcap_with_zstd() -> None:
    cmd = record_command("out")
    assert cmd[:3] == ["ros2", "bag", "record"]
    assert cmd[cmd.index("-s") + 1] == "mcap"
    assert "zstd" in cmd[cmd.index("--storage-preset-profile") + 1]
    assert set(RECORD_TOPICS) <= set(cmd)
    assert "/joint_states" in cmd and "/dreamzero/action_chunk" in cmd
    assert "--use-sim-time" not in cmd
    sim = record_command("out", use_sim_time=True)
    assert sim[sim.index("--use-sim-time") + 1 :] == cmd[cmd.index("-o") :]  # a flag before the output and topics


@pytest.mark.parametrize("robot", sorted(p.stem for p in (CONFIG / "robots").glob("*.yaml")))
def test_bringup_gives_a_valid_node_list_for_every_robot_profile(robot: str) -> None:
    specs = bringup_nodes(robot, "droid", backend="websocket", config=CONFIG)
    assert [s.executable for s in specs] == ["policy_node", "adapter_node"]
    assert specs[1].parameters == {"robot": robot}
    for spec in specs:
        assert spec.ros_arguments()[:3] == ["--ros-args", "-r", f"__node:={spec.name}"]
        assert all(p.is_file() for p in spec.parameter_files)
