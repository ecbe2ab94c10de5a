"""The arm and gripper in physics: trajectory tracking, hold, rejection, gripper and reset."""

from __future__ import annotations

import numpy as np
import pytest
from dreamzero_sim.errors import CommandRejected, TrajectoryRejected
from dreamzero_sim.sim_core import ARM_JOINT_NAMES, SimRobot
from dreamzero_sim.trajectory_follower import TrajectoryPoint

OFFSET = np.array([0.4, 0.3, -0.3, 0.4, 0.5, -0.4, 0.6])


@pytest.fixture
def sim() -> SimRobot:
    s = SimRobot()
    s.step(50)
    return s


def _ramp(start: np.ndarray, goal: np.ndarray, n: int, dt: float) -> list[TrajectoryPoint]:
    return [TrajectoryPoint(dt * (i + 1), start + (goal - start) * (i + 1) / n) for i in range(n)]


def test_arm_tracks_a_commanded_trajectory(sim):
    home = sim.home_positions[:7]
    goal = home + OFFSET
    sim.submit_trajectory(ARM_JOINT_NAMES, _ramp(home, goal, 10, 0.15))  # up to ~0.4 rad/s
    t0, worst = sim.time, 0.0
    while sim.time < t0 + 1.5:
        sim.step(5)
        desired, _ = sim.desired_arm_state()
        worst = max(worst, float(np.abs(sim.joint_state().position[:7] - desired).max()))
    assert worst < 0.01, f"tracking error {worst:.4f} rad"
    sim.step(250)  # hold after the last point
    np.testing.assert_allclose(sim.joint_state().position[:7], goal, atol=2e-3)
    assert np.abs(sim.joint_state().velocity[:7]).max() < 1e-2


def test_arm_holds_still_without_commands(sim):
    before = sim.joint_state().position
    sim.step(500)
    np.testing.assert_allclose(sim.joint_state().position[:7], before[:7], atol=1e-3)


def test_rejected_trajectory_keeps_the_previous_one(sim):
    home = sim.home_positions[:7]
    goal = home + OFFSET * 0.5
    sim.submit_trajectory(ARM_JOINT_NAMES, _ramp(home, goal, 4, 0.2))
    bad = [TrajectoryPoint(0.5, [np.nan] * 7)]
    with pytest.raises(TrajectoryRejected):
        sim.submit_trajectory(ARM_JOINT_NAMES, bad)
    sim.step(750)
    np.testing.assert_allclose(sim.joint_state().position[:7], goal, atol=2e-3)


def test_targets_beyond_joint_limits_are_clamped_by_the_servos(sim):
    home = sim.home_positions[:7]
    goal = home.copy()
    goal[3] = 0.5  # joint 4's upper limit is -0.0698
    sim.submit_trajectory(ARM_JOINT_NAMES, _ramp(home, goal, 5, 0.3))
    sim.step(1250)
    assert sim.joint_state().position[3] <= -0.0698 + 5e-3


def test_gripper_closes_and_opens(sim):
    assert sim.joint_state().position[7] == pytest.approx(0.0, abs=1e-3)
    sim.command_gripper(1.0)
    sim.step(300)
    assert sim.joint_state().position[7] > 0.95
    sim.command_gripper(0.25)
    sim.step(300)
    assert sim.joint_state().position[7] == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("value", [float("nan"), -0.5, 1.5, float("inf")])
def test_bad_gripper_commands_are_rejected(sim, value):
    sim.command_gripper(0.5)
    with pytest.raises(CommandRejected):
        sim.command_gripper(value)
    assert sim.gripper_command == 0.5


def test_reset_restores_home_and_keeps_the_clock(sim):
    home = sim.home_positions[:7]
    sim.submit_trajectory(ARM_JOINT_NAMES, _ramp(home, home + OFFSET, 2, 0.2))
    sim.command_gripper(1.0)
    sim.data.qpos[sim.model.joint("red_cube").qposadr[0]] += 0.1  # knock an object away
    sim.step(250)
    t = sim.time
    sim.reset()
    assert sim.time == pytest.approx(t)
    np.testing.assert_allclose(sim.joint_state().position, sim.home_positions, atol=1e-9)
    cube = sim.model.joint("red_cube").qposadr[0]
    assert sim.data.qpos[cube] == pytest.approx(0.55)
    sim.step(250)  # the old trajectory is gone: it stays home
    np.testing.assert_allclose(sim.joint_state().position[:7], home, atol=2e-3)


def test_advance_to_steps_whole_timesteps(sim):
    t0 = sim.time
    n = sim.advance_to(t0 + 0.0101)
    assert n == 5
    assert sim.time == pytest.approx(t0 + 0.010)
    assert sim.advance_to(t0 + 1.0, max_steps=3) == 3
