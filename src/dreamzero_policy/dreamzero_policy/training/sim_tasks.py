"""Tasks of the simulated training experiment: instructions, object placements and success checks.

The scene (``dreamzero_sim/models/droid_scene.xml``) has four loose objects on a table whose top is at
z = 0 (world frame = arm base, x forward, z up; metres). Each task names one target object; every episode
places all four objects at random (seeded) so that the target lies in its task's region and no two objects
are closer than ``min_separation``. Success is judged on the simulator's ground truth:

* ``reach``: the TCP comes within ``REACH_RADIUS_M`` (5 cm) of the target's centre at some control step;
* ``push``: at the end of the episode the target moved >= ``PUSH_MIN_M`` (5 cm) along +x (away from the robot)
  from where it was placed, and stayed on the table;
* ``pick``: at the end of the episode the target's centre is >= ``PICK_MIN_LIFT_M`` (5 cm) above its resting
  height (it is held up).

Only numpy and mujoco (through ``dreamzero_sim.sim_core``) are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dreamzero_sim.sim_core import SimRobot

__all__ = [
    "OBJECTS",
    "PICK_MIN_LIFT_M",
    "PUSH_MIN_M",
    "REACH_RADIUS_M",
    "TASKS",
    "Placement",
    "SuccessTracker",
    "TaskSpec",
    "apply_placement",
    "get_task",
    "object_position",
    "sample_placement",
]

REACH_RADIUS_M = 0.05
PUSH_MIN_M = 0.05
PICK_MIN_LIFT_M = 0.05

# Object name -> resting height of its centre above the table (m), from tabletop.xml.
OBJECTS: dict[str, float] = {"red_cube": 0.025, "green_can": 0.04, "blue_block": 0.02, "yellow_ball": 0.03}


@dataclass(frozen=True)
class TaskSpec:
    """One task. ``region`` = (x_min, x_max, y_min, y_max) in m for the target's centre; ``duration_s`` is the
    closed-loop episode length used in evaluation (the expert's demonstrations are shorter)."""

    name: str
    kind: str  # reach | push | pick
    target: str
    instruction: str
    region: tuple[float, float, float, float]
    duration_s: float


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("reach_ball", "reach", "yellow_ball", "reach the yellow ball", (0.45, 0.65, -0.12, 0.12), 4.8),
    TaskSpec("push_block", "push", "blue_block", "push the blue block forward", (0.42, 0.55, -0.12, 0.12), 6.4),
    TaskSpec("pick_cube", "pick", "red_cube", "pick up the red cube", (0.45, 0.62, -0.12, 0.12), 6.4),
)


def get_task(name: str) -> TaskSpec:
    for t in TASKS:
        if t.name == name:
            return t
    raise ValueError(f"unknown sim task {name!r}; known: {[t.name for t in TASKS]}")


@dataclass(frozen=True)
class Placement:
    """Object name -> (x, y) centre in m; z is the object's resting height (upright, unrotated)."""

    xy: dict[str, tuple[float, float]]


def sample_placement(
    task: TaskSpec,
    rng: np.random.Generator,
    min_separation: float = 0.13,
    area: tuple[float, float, float, float] = (0.38, 0.72, -0.25, 0.25),
) -> Placement:
    """Target in ``task.region``, the other objects anywhere in ``area``, pairwise >= ``min_separation`` apart.
    For ``push`` no other object may sit in the 30 cm corridor in front of the target (the push path)."""
    for _ in range(1000):
        x0, x1, y0, y1 = task.region
        xy = {task.target: (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)))}
        ok = True
        for name in OBJECTS:
            if name == task.target:
                continue
            for _ in range(200):
                p = (float(rng.uniform(area[0], area[1])), float(rng.uniform(area[2], area[3])))
                if all(np.hypot(p[0] - q[0], p[1] - q[1]) >= min_separation for q in xy.values()) and not (
                    task.kind == "push" and _in_corridor(p, xy[task.target])
                ):
                    xy[name] = p
                    break
            else:
                ok = False
                break
        if ok:
            return Placement(xy)
    raise RuntimeError("could not place the objects; loosen min_separation or enlarge the area")


def _in_corridor(p: tuple[float, float], target: tuple[float, float]) -> bool:
    return target[0] - 0.15 <= p[0] <= target[0] + 0.30 and abs(p[1] - target[1]) <= 0.12


def _free_joint_adr(sim: SimRobot, name: str) -> tuple[int, int]:
    import mujoco

    j = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if j < 0:
        raise ValueError(f"the scene has no object joint {name!r}")
    return int(sim.model.jnt_qposadr[j]), int(sim.model.jnt_dofadr[j])


def apply_placement(sim: SimRobot, placement: Placement) -> None:
    """``sim.reset()`` (home pose, gripper open), then put each object upright at its place, at rest."""
    import mujoco

    sim.reset()
    for name, (x, y) in placement.xy.items():
        qa, da = _free_joint_adr(sim, name)
        sim.data.qpos[qa : qa + 7] = (x, y, OBJECTS[name], 1.0, 0.0, 0.0, 0.0)
        sim.data.qvel[da : da + 6] = 0.0
    mujoco.mj_forward(sim.model, sim.data)


def object_position(sim: SimRobot, name: str) -> np.ndarray:
    """World position (3,) of an object's centre (m)."""
    qa, _ = _free_joint_adr(sim, name)
    return sim.data.qpos[qa : qa + 3].copy()


class SuccessTracker:
    """Feed it after every control step (:meth:`update`); :meth:`result` judges the episode (see module doc)."""

    def __init__(self, sim: SimRobot, task: TaskSpec) -> None:
        self.sim, self.task = sim, task
        self.start = object_position(sim, task.target)
        self.min_tcp_distance = float("inf")

    def update(self) -> None:
        d = float(np.linalg.norm(self.sim.site_position("tcp") - object_position(self.sim, self.task.target)))
        self.min_tcp_distance = min(self.min_tcp_distance, d)

    def result(self) -> dict[str, float | bool]:
        """``success`` plus the measured quantities (m) behind it."""
        end = object_position(self.sim, self.task.target)
        push = float(end[0] - self.start[0])
        lift = float(end[2] - OBJECTS[self.task.target])
        kind = self.task.kind
        if kind == "reach":
            ok = self.min_tcp_distance <= REACH_RADIUS_M
        elif kind == "push":
            ok = push >= PUSH_MIN_M and end[2] > 0.0
        else:
            ok = lift >= PICK_MIN_LIFT_M
        return {
            "success": bool(ok),
            "min_tcp_distance_m": round(self.min_tcp_distance, 4),
            "push_x_m": round(push, 4),
            "lift_m": round(lift, 4),
        }
