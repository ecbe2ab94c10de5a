"""Plain-data types of the safety core (no ROS): chunk input, trajectory plan, configuration, rejections."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class ActionSpace(IntEnum):
    """Mirrors the constants of ``dreamzero_msgs/msg/ActionChunk``."""

    JOINT_POSITION = 0
    JOINT_POSITION_DELTA = 1
    JOINT_VELOCITY = 2
    EEF_POSE = 3
    EEF_POSE_DELTA = 4

    @classmethod
    def from_name(cls, name: str) -> ActionSpace:
        return cls[name.strip().upper()]


class ChunkRejected(ValueError):
    """A chunk (or a plan built from it) is unsafe or malformed; ``reason`` is shown in status/diagnostics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ChunkInput:
    """An ``ActionChunk`` as plain data.

    ``stamp``: observation time, s (same clock as ``now`` passed to the planner).
    ``step_duration``: s between steps; step i targets ``stamp + (i + 1) * step_duration``.
    ``data``: [horizon, len(names)] float64 in SI units (rad, m; gripper normalised 0..1).
    """

    session_id: str
    chunk_id: int
    embodiment: str
    action_space: int
    stamp: float
    step_duration: float
    horizon: int
    execute_horizon: int
    names: tuple[str, ...]
    data: np.ndarray
    frame_id: str = ""


@dataclass(frozen=True)
class SafetyConfig:
    """Tunables of the chunk -> trajectory pipeline (units: s, rad).

    lead_time: steps with target time < now + lead_time are dropped (transport + controller periods).
    lookahead: steps further than this ahead of now are dropped, so the robot stops soon without chunks.
    min_points: fewer remaining points than this -> the chunk is rejected (the previous command stands).
    blend_steps: first N points of a new chunk are blended with the running plan (no jumps at handoff).
    min_step_duration / max_step_duration: plausible range of ``step_duration``.
    start_tolerance: max |first target - start| (rad) accepted without ramp/refuse.
    start_policy: "ramp" (approach slowly, ``ramp_velocity_scale`` of the limits) or "refuse".
    velocity_scale / acceleration_scale: fraction of the profile limits the plan may use.
    position_margin: clamp targets this far inside the position limits: a controller tracking a target at the
        limit overshoots it a little (servo lag, gravity, a late trajectory), so the target must leave room.
    max_stamp_skew: chunks stamped further than this in the future are rejected.
    """

    lead_time: float = 0.05
    lookahead: float = 1.0
    min_points: int = 1
    blend_steps: int = 3
    min_step_duration: float = 0.005
    max_step_duration: float = 1.0
    start_tolerance: float = 0.3
    start_policy: str = "ramp"
    ramp_velocity_scale: float = 0.25
    velocity_scale: float = 1.0
    acceleration_scale: float = 1.0
    position_margin: float = 0.02
    max_stamp_skew: float = 0.5
    allow_nonzero_final_velocity: bool = False

    def __post_init__(self) -> None:
        checks = {
            "lead_time": self.lead_time >= 0.0,
            "lookahead": self.lookahead > 0.0,
            "min_points": self.min_points >= 1,
            "blend_steps": self.blend_steps >= 0,
            "min_step_duration": self.min_step_duration > 0.0,
            "max_step_duration": self.max_step_duration > self.min_step_duration,
            "start_tolerance": self.start_tolerance >= 0.0,
            "start_policy": self.start_policy in ("ramp", "refuse"),
            "ramp_velocity_scale": 0.0 < self.ramp_velocity_scale <= 1.0,
            "velocity_scale": 0.0 < self.velocity_scale <= 1.0,
            "acceleration_scale": 0.0 < self.acceleration_scale <= 1.0,
            "position_margin": self.position_margin >= 0.0,
            "max_stamp_skew": self.max_stamp_skew >= 0.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid safety config: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")


@dataclass(frozen=True)
class TrajectoryPlan:
    """What goes to the controllers, as plain data (the node converts it to JointTrajectory messages).

    The plan starts at absolute time ``t0`` (s) at ``start_positions``/``start_velocities`` (the state the
    controller interpolates from) and passes ``positions[k]`` [N, J] with ``velocities[k]`` at
    ``t0 + times[k]`` (``times`` strictly increasing, > 0). Units: rad (m), rad/s, SI, controller order.
    """

    joint_names: tuple[str, ...]
    t0: float
    start_positions: np.ndarray
    start_velocities: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    times: np.ndarray
    session_id: str = ""
    chunk_id: int = -1
    gripper_targets: dict[str, float] = field(default_factory=dict)  # normalised 0..1
    notes: tuple[str, ...] = ()

    @property
    def end_time(self) -> float:
        return self.t0 + float(self.times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity at absolute time ``t`` under cubic Hermite interpolation (the JTC's rule with
        positions + velocities); holds the last point after the end and the start before ``t0``."""
        tau = t - self.t0
        if tau <= 0.0:
            return self.start_positions.copy(), self.start_velocities.copy()
        if tau >= self.times[-1]:
            return self.positions[-1].copy(), np.zeros_like(self.positions[-1])
        k = int(np.searchsorted(self.times, tau, side="right"))
        t_a = 0.0 if k == 0 else float(self.times[k - 1])
        q_a = self.start_positions if k == 0 else self.positions[k - 1]
        v_a = self.start_velocities if k == 0 else self.velocities[k - 1]
        d = float(self.times[k]) - t_a
        s = (tau - t_a) / d
        q_b, v_b = self.positions[k], self.velocities[k]
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        q = h00 * q_a + h10 * d * v_a + h01 * q_b + h11 * d * v_b
        dh00, dh10, dh01, dh11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        v = (dh00 * q_a + dh01 * q_b) / d + dh10 * v_a + dh11 * v_b
        return q, v
