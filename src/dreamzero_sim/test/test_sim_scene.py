"""The MJCF scene: it loads, names and limits match the contract, and the kinematics are Franka's."""

from __future__ import annotations

import numpy as np
import pytest
from dreamzero_sim.errors import SceneError
from dreamzero_sim.sim_core import ARM_JOINT_NAMES, CAMERA_NAMES, JOINT_NAMES, SimRobot

from dreamzero_sim import sim_core

# Franka datasheet (the values the scene claims to reproduce).
FRANKA_LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
FRANKA_UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
# Modified (Craig) DH rows (a, d, alpha) for joints 1..7, then the flange offset d = 0.107.
DH = [(0, 0.333, 0), (0, 0, -np.pi / 2), (0, 0.316, np.pi / 2), (0.0825, 0, np.pi / 2),
      (-0.0825, 0.384, -np.pi / 2), (0, 0, np.pi / 2), (0.088, 0, np.pi / 2)]  # fmt: skip


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def _trans(x: float, y: float, z: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = [x, y, z]
    return t


def dh_link7(q: np.ndarray) -> np.ndarray:
    """Link 7 pose (4x4) from the published DH table, independent of the MJCF."""
    t = np.eye(4)
    for (a, d, alpha), qi in zip(DH, q, strict=True):
        t = t @ _rot_x(alpha) @ _trans(a, 0, 0) @ _rot_z(qi) @ _trans(0, 0, d)
    return t


@pytest.fixture(scope="module")
def sim() -> SimRobot:
    return SimRobot()


def test_scene_loads_with_the_contract_names(sim):
    assert sim.scene_path.name == "droid_scene.xml"
    assert (*(f"panda_joint{i}" for i in range(1, 8)), "gripper") == JOINT_NAMES
    state = sim.joint_state()
    assert state.names == JOINT_NAMES
    assert state.position.shape == state.velocity.shape == state.effort.shape == (8,)
    for cam in CAMERA_NAMES:
        assert sim.model.camera(cam).id >= 0
    assert sim.model.nu == 8  # 7 arm servos + the gripper


def test_limits_are_franka_like(sim):
    lower, upper = sim.position_limits
    np.testing.assert_allclose(lower, [*FRANKA_LOWER, 0.0])
    np.testing.assert_allclose(upper, [*FRANKA_UPPER, 1.0])
    np.testing.assert_allclose(sim.arm_velocity_limits, [2.175] * 4 + [2.61] * 3)
    for name in ARM_JOINT_NAMES:
        act = sim.model.actuator(name)
        np.testing.assert_allclose(act.ctrlrange, sim.model.joint(name).range)  # servo targets clamp to limits
    torques = [sim.model.actuator(n).forcerange[1] for n in ARM_JOINT_NAMES]
    assert torques == [87.0] * 4 + [12.0] * 3


def test_home_pose_is_inside_limits_and_gripper_open(sim):
    lower, upper = sim.position_limits
    home = sim.home_positions
    assert np.all(home >= lower) and np.all(home <= upper)
    assert home[7] == 0.0


def test_forward_kinematics_match_the_published_dh_table():
    sim = SimRobot()
    rng = np.random.default_rng(0)
    lower, upper = (lim[:7] for lim in sim.position_limits)
    for q in [sim.home_positions[:7], *rng.uniform(lower, upper, size=(5, 7))]:
        sim.data.qpos[:7] = q
        sim_core.mujoco.mj_kinematics(sim.model, sim.data)  # sim_core picks the GL backend before importing mujoco
        flange = dh_link7(q) @ _trans(0, 0, 0.107)
        np.testing.assert_allclose(sim.site_position("flange"), flange[:3, 3], atol=1e-6)
        np.testing.assert_allclose(sim.data.site("flange").xmat.reshape(3, 3), flange[:3, :3], atol=1e-6)
        # The droid_franka_sim profile's tool frame: xyz (0, 0, 0.257), yaw -pi/4 from link 7.
        tcp = dh_link7(q) @ _trans(0, 0, 0.257) @ _rot_z(-np.pi / 4)
        np.testing.assert_allclose(sim.site_position("tcp"), tcp[:3, 3], atol=1e-6)
        np.testing.assert_allclose(sim.data.site("tcp").xmat.reshape(3, 3), tcp[:3, :3], atol=1e-6)


def test_home_flange_is_where_a_franka_puts_it(sim):
    # Franka's ready pose puts the flange about 0.307 m in front of and 0.590 m above the base.
    np.testing.assert_allclose(sim.site_position("flange"), [0.3069, 0.0, 0.5903], atol=2e-3)


def test_missing_scene_is_a_clear_error(tmp_path):
    with pytest.raises(SceneError, match="cannot load scene"):
        SimRobot(tmp_path / "nope.xml")


def test_scene_without_required_joint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.xml"
    body = "<body><joint name='panda_joint1'/><geom size='0.1'/></body>"
    bad.write_text(f"<mujoco><worldbody>{body}</worldbody></mujoco>")
    with pytest.raises(SceneError, match="panda_joint2"):
        SimRobot(bad)


def test_default_scene_path_points_at_the_packaged_scene():
    assert sim_core.default_scene_path().is_file()
