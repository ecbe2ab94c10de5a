"""The adapter's plans, tracked by the simulated arm's servos, keep the measured joints inside the profile limits.

Found in CI: the demo reported 2 limit violations (one measured sample 1e-3 rad past panda_joint4's limit, and the
next commanded setpoint, which starts from the measured state). A target clamped exactly at a limit is overshot a
little by any position servo (lag, gravity); ``position_margin`` (default 0.02 rad) leaves room for that. This test
drives the real adapter core and the MuJoCo arm (no ROS) with chunks that push one joint past a limit at 1.5x its
velocity limit, re-planning from the measured state every 0.25 s as the adapter node does.
"""

from __future__ import annotations

import numpy as np
import pytest
from dreamzero_sim.sim_core import ARM_JOINT_NAMES, SimRobot
from dreamzero_sim.trajectory_follower import TrajectoryPoint
from embodiment_adapters.profile import load_profile
from embodiment_adapters.safety.planner import AdapterCore
from embodiment_adapters.safety.types import ChunkInput, SafetyConfig

P = load_profile("droid_franka_sim")
LOWER, UPPER, VMAX, _ = P.limits_arrays()
DT = 1 / 15
HORIZON = 24
REPLAN_S = 0.25


def _worst_excess(cfg: SafetyConfig, joint: int, direction: float, seconds: float = 3.0) -> float:
    """Largest measured excursion (rad) of ``joint`` beyond its profile limits; <= 0 means it stayed inside."""
    sim = SimRobot()
    sim.step(50)
    core = AdapterCore(P, cfg)
    names = (*P.joint_names, "gripper")
    worst = -np.inf
    chunk_id = 0
    end = sim.time + seconds
    while sim.time < end:
        now = sim.time
        q = np.asarray(sim.joint_state().position[:7], float)
        core.update_joint_state(P.joint_names, q, now)
        data = np.repeat(np.append(q, 0.0)[None, :], HORIZON, axis=0)
        data[:, joint] = q[joint] + direction * 1.5 * VMAX[joint] * DT * np.arange(1, HORIZON + 1)
        plan = core.process_chunk(ChunkInput("s", chunk_id, "droid_franka", 0, now, DT, HORIZON, 8, names, data), now)
        chunk_id += 1
        sim.submit_trajectory(
            ARM_JOINT_NAMES,
            [
                TrajectoryPoint(float(t), p, v)
                for t, p, v in zip(plan.times, plan.positions, plan.velocities, strict=True)
            ],
            plan.t0,
        )
        for _ in range(round(REPLAN_S / sim.timestep)):
            sim.step(1)
            qj = float(sim.joint_state().position[joint])
            worst = max(worst, LOWER[joint] - qj, qj - UPPER[joint])
    return worst


def test_a_target_exactly_at_the_limit_is_overshot_by_the_servo() -> None:
    """The hazard itself (margin 0): panda_joint4 driven into its upper limit ends up past it."""
    assert _worst_excess(SafetyConfig(position_margin=0.0), 3, +1.0) > 5e-4


@pytest.mark.parametrize(("joint", "direction"), [(3, -1.0), (3, +1.0), (5, +1.0), (1, +1.0)])
def test_default_margin_keeps_the_measured_arm_inside_the_limits(joint: int, direction: float) -> None:
    assert SafetyConfig().position_margin > 0.0
    assert _worst_excess(SafetyConfig(), joint, direction) <= 0.0
