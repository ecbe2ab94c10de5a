"""Robot profiles: every shipped profile loads; broken profiles are rejected naming the wrong field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from embodiment_adapters.profile import ProfileError, list_profiles, load_profile
from embodiment_adapters.safety.types import ActionSpace

REQUIRED = {"droid_franka", "droid_franka_sim", "ur5e", "yam", "so101", "aloha", "agibot_g1"}


def test_all_required_profiles_present():
    assert set(list_profiles()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_profile_loads_and_is_consistent(name):
    p = load_profile(name)
    assert p.name == name
    owned = [j for c in p.controllers for j in c.joints]
    assert sorted(owned) == sorted(p.joint_names)
    for j in p.joints:
        assert j.limits.lower < j.limits.upper and j.limits.velocity > 0 and j.limits.acceleration > 0
    for alias, target in p.aliases:
        assert p.resolve(alias) == target


def test_sim_profile_names_match_the_simulator_contract():
    p = load_profile("droid_franka_sim")
    assert p.simulated
    assert p.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert p.controllers[0].topic == "/arm_controller/joint_trajectory"
    g = p.grippers[0]
    assert (g.name, g.joint, g.interface) == ("gripper", "gripper", "forward_command")
    assert g.topic == "/gripper_controller/commands"
    assert (g.open, g.closed) == (0.0, 1.0)


def test_specific_profile_facts():
    assert load_profile("so101").units == "deg"
    assert load_profile("ur5e").controllers[0].name == "scaled_joint_trajectory_controller"
    assert len(load_profile("yam").joints) == 12 and len(load_profile("aloha").grippers) == 2
    ag = load_profile("agibot_g1")
    assert ActionSpace.JOINT_POSITION_DELTA in ag.action_spaces and "robot_velocity.0" in ag.ignored_dims
    assert not load_profile("droid_franka").simulated


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(Path(load_profile("ur5e").source).read_text())
    mutate(raw)
    path = tmp_path / "ur5e.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (
            lambda r: r["joints"][2]["limits"].__setitem__("velocity", -1),
            "joints[2].limits.velocity",
            "must be > 0, got -1",
        ),
        (lambda r: r["joints"][0]["limits"].__setitem__("upper", -7.0), "joints[0].limits.upper", "must be > lower"),
        (lambda r: r["joints"][1].pop("limits"), "joints[1].limits", "missing required field"),
        (lambda r: r.__setitem__("units", "grad"), "units", "must be 'rad' or 'deg'"),
        (lambda r: r["controllers"][0]["joints"].append("nope"), "controllers[0].joints[6]", "unknown joint"),
        (lambda r: r["grippers"][0].__setitem__("interface", "magic"), "grippers[0].interface", "must be one of"),
        (lambda r: r.__setitem__("action_spaces", ["teleport"]), "action_spaces[0]", "must be one of"),
        (lambda r: r.__setitem__("kinematics", []), "kinematics", "required for end-effector"),
        (lambda r: r["kinematics"][0]["links"].pop(), "kinematics[0].links", "one entry per joint"),
        (lambda r: r.__setitem__("colour", "red"), "colour", "unknown field"),
        (lambda r: r["joints"][3].__setitem__("name", "shoulder_pan_joint"), "joints[3].name", "duplicate"),
    ],
)
def test_broken_profile_rejected_naming_the_field(tmp_path, mutate, field, problem):
    path = _write(tmp_path, mutate)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    msg = str(err.value)
    assert f"ur5e.yaml: {field}: " in msg and problem in msg, msg


def test_unknown_profile_name_lists_known_ones():
    with pytest.raises(ProfileError, match=r"known: .*droid_franka"):
        load_profile("no_such_robot")


def test_env_override_of_config_dir(tmp_path, monkeypatch):
    (tmp_path / "robots").mkdir()
    raw = yaml.safe_load(Path(load_profile("so101").source).read_text())
    raw["name"] = "my_arm"
    (tmp_path / "robots" / "my_arm.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("DREAMZERO_CONFIG_DIR", str(tmp_path))
    assert list_profiles() == ["my_arm"]
    assert load_profile("my_arm").name == "my_arm"
