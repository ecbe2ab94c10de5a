"""Scripted experts for the simulated tasks: Cartesian waypoints -> joint-position targets at the control rate.

An expert knows the true object positions (privileged information) and plans the whole episode up front:
TCP waypoints with the gripper pointing down (the home orientation: fingers close along world y), joined by
smooth-step segments, sampled at ``fps`` and turned into joint targets by damped-least-squares IK
(``embodiment_adapters.kinematics``) seeded with the previous sample, so the arm stays on one IK branch.

Plan rows are actions in the dataset's sense: row ``k`` is the arm target for time ``(k + 1) / fps`` after the
episode start and the gripper command (0 = open .. 1 = closed) held from tick ``k`` on. A hold phase of
``hold_s`` ends every plan so demonstrations also teach the policy to stay once done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from embodiment_adapters.kinematics import Chain, build_chains
from embodiment_adapters.profile import load_profile

from .sim_tasks import OBJECTS, Placement, TaskSpec

__all__ = ["ExpertPlan", "load_chain", "plan_episode"]

# TCP orientation: z down, x forward (the sim's home pose); the finger axis (TCP y) is world -y.
R_DOWN = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class ExpertPlan:
    """arm: (T, 7) joint targets (rad); gripper: (T,) 0 open .. 1 closed; tcp: (T, 3) planned TCP (m)."""

    arm: np.ndarray
    gripper: np.ndarray
    tcp: np.ndarray
    fps: float

    def __len__(self) -> int:
        return int(self.arm.shape[0])

    def actions(self) -> np.ndarray:
        """(T, 8): arm targets + gripper, the action layout of the sim embodiment."""
        return np.concatenate([self.arm, self.gripper[:, None]], axis=1)


def load_chain(profile: str | Path = "droid_franka_sim") -> Chain:
    """The arm chain of a robot profile (name in ``config/robots`` or a YAML path)."""
    return build_chains(load_profile(profile))[""]


def _waypoints(task: TaskSpec, placement: Placement, home_tcp: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
    """[(tcp xyz, gripper, segment duration s)] starting after the home pose."""
    x, y = placement.xy[task.target]
    z = OBJECTS[task.target]
    p = np.array
    if task.kind == "reach":
        return [(p([x, y, z + 0.12]), 0.0, 1.6), (p([x, y, z + 0.035]), 0.0, 1.0), (p([x, y, z + 0.035]), 0.0, 0.4)]
    if task.kind == "push":
        # Closed fingers behind the block (its half length along x is 6 cm), then 12 cm forward along +x.
        back = x - 0.06 - 0.035
        return [
            (home_tcp, 1.0, 0.4),
            (p([back, y, 0.12]), 1.0, 1.4),
            (p([back, y, 0.02]), 1.0, 0.9),
            (p([back + 0.12, y, 0.02]), 1.0, 1.5),
            (p([back + 0.12, y, 0.08]), 1.0, 0.5),
        ]
    if task.kind == "pick":
        return [
            (p([x, y, 0.15]), 0.0, 1.5),
            (p([x, y, z - 0.008]), 0.0, 1.0),
            (p([x, y, z - 0.008]), 1.0, 0.6),
            (p([x, y, 0.17]), 1.0, 1.2),
        ]
    raise ValueError(f"unknown task kind {task.kind!r}")


def _smoothstep(s: np.ndarray) -> np.ndarray:
    return s * s * (3.0 - 2.0 * s)


def plan_episode(
    task: TaskSpec, placement: Placement, chain: Chain, home_q: np.ndarray, fps: float, hold_s: float = 1.6
) -> ExpertPlan:
    """The expert's joint-space plan for one episode (raises RuntimeError if IK fails along the path)."""
    home_q = np.asarray(home_q, dtype=np.float64)[:7]
    home_tcp = chain.fk(home_q)[:3, 3]
    tcp_rows, grip_rows = [], []
    prev = home_tcp
    for target, grip, duration in _waypoints(task, placement, home_tcp):
        n = max(1, round(duration * fps))
        s = _smoothstep(np.arange(1, n + 1) / n)[:, None]
        tcp_rows.append(prev + s * (target - prev))
        grip_rows.append(np.full(n, grip))
        prev = target
    n_hold = max(0, round(hold_s * fps))
    tcp_rows.append(np.repeat(prev[None], n_hold, axis=0))
    grip_rows.append(np.full(n_hold, grip_rows[-1][-1]))
    tcp = np.concatenate(tcp_rows)
    arm = np.empty((len(tcp), 7))
    q = home_q
    pose = np.eye(4)
    pose[:3, :3] = R_DOWN
    for k, xyz in enumerate(tcp):
        pose[:3, 3] = xyz
        q, ok, err_p, _ = chain.ik(pose, q, max_iterations=200, position_tolerance=5e-4, rotation_tolerance=5e-3)
        if not ok and err_p > 2e-3:
            raise RuntimeError(f"{task.name}: IK failed at step {k} for TCP {np.round(xyz, 3)} (error {err_p:.4f} m)")
        arm[k] = q
    return ExpertPlan(arm, np.concatenate(grip_rows), tcp, fps)
