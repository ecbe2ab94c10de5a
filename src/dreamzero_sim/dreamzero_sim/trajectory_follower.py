"""A pure trajectory follower with ros2_control ``joint_trajectory_controller`` time semantics.

Semantics (Jazzy JTC, ``trajectory.cpp`` / ``joint_trajectory_controller.cpp``), all times in
seconds on one clock (the simulator's):

* A trajectory's start time is its stamp, or the time it was received when the stamp is 0
  ("start now"). A non-zero-stamp trajectory that ends before ``now`` is rejected.
* From the moment of receipt to the first point, the follower interpolates from the "state before
  the trajectory": the last *desired* state (``interpolate_from_desired_state``, the mode
  ``ros2-integration.md`` recommends) or the measured state passed in.
* Between points: linear when a point pair lacks velocities, cubic Hermite when both have them.
  A stamp in the past therefore starts mid-trajectory.
* After the last point: hold its positions with zero velocity.
* A valid new trajectory replaces the active one; a rejected one leaves the active one running.

Only numpy and the standard library are used, so this runs without ROS or MuJoCo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dreamzero_sim.errors import TrajectoryRejected


@dataclass(frozen=True)
class TrajectoryPoint:
    """One waypoint: ``positions`` (rad or m, in the message's joint order), optional
    ``velocities`` of the same length, ``time_from_start`` in seconds."""

    time_from_start: float
    positions: Sequence[float]
    velocities: Sequence[float] | None = None


@dataclass(frozen=True)
class _Knot:
    time: float  # absolute, on the follower's clock
    positions: np.ndarray  # (n_joints,) in follower joint order
    velocities: np.ndarray | None  # (n_joints,) or None when the point had none


class JointTrajectoryFollower:
    """Turns JointTrajectory-like commands into desired joint positions/velocities over time.

    Args:
        joint_names: the controlled joints; every accepted trajectory must name exactly these
            (``allow_partial_joints_goal`` is false, as in the JTC default), in any order.
        initial_positions: (n_joints,) desired state before any trajectory (held).
        interpolate_from_desired_state: start each trajectory from the last desired state
            (true) or from the measured state given to :meth:`set_trajectory` (false).
        allow_nonzero_velocity_at_trajectory_end: Jazzy's default (false) rejects a trajectory
            whose last point has a non-zero velocity.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        initial_positions: Sequence[float],
        *,
        interpolate_from_desired_state: bool = True,
        allow_nonzero_velocity_at_trajectory_end: bool = False,
    ) -> None:
        names = tuple(joint_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"joint_names must be non-empty and unique, got {names}")
        self.joint_names = names
        self._index = {name: i for i, name in enumerate(names)}
        self.interpolate_from_desired_state = interpolate_from_desired_state
        self.allow_nonzero_velocity_at_trajectory_end = allow_nonzero_velocity_at_trajectory_end
        self._knots: list[_Knot] = []
        self._hold(self._vector(initial_positions, "initial_positions"))

    # --- commands ---------------------------------------------------------------------------

    def hold(self, positions: Sequence[float]) -> None:
        """Drop any trajectory and hold ``positions`` (n_joints,) with zero velocity (reset)."""
        self._hold(self._vector(positions, "positions"))

    def set_trajectory(
        self,
        joint_names: Sequence[str],
        points: Sequence[TrajectoryPoint],
        *,
        stamp: float,
        now: float,
        measured_positions: Sequence[float] | None = None,
    ) -> None:
        """Validate and activate a trajectory, replacing the active one.

        Args:
            joint_names: the message's joint order (``points[i].positions`` follow it).
            points: waypoints with strictly increasing ``time_from_start`` (s, >= 0).
            stamp: header stamp on the follower clock (s); 0 means "start now".
            now: the current time on the follower clock (s), i.e. the time of receipt.
            measured_positions: (n_joints,) measured state in follower order; required when
                ``interpolate_from_desired_state`` is false.

        Raises:
            TrajectoryRejected: with ``reason`` in ``empty_joints``, ``duplicate_joints``,
                ``unknown_joints``, ``missing_joints``, ``no_points``, ``size_mismatch``,
                ``non_finite``, ``negative_time``, ``non_increasing_time``,
                ``nonzero_end_velocity``, ``ends_in_past``. The active trajectory is untouched.
        """
        order = self._validate_names(joint_names)
        knots_rel = self._validate_points(points, order)
        if not math.isfinite(stamp) or not math.isfinite(now):
            raise TrajectoryRejected(f"non-finite stamp ({stamp}) or now ({now})", "non_finite")
        start = now if stamp == 0.0 else stamp
        end = start + knots_rel[-1].time
        if stamp != 0.0 and end < now:
            raise TrajectoryRejected(
                f"trajectory ends in the past: stamp {stamp:.6f} + last time_from_start "
                f"{knots_rel[-1].time:.6f} < now {now:.6f}",
                "ends_in_past",
            )
        before_pos, before_vel = self.sample(now)
        if not self.interpolate_from_desired_state:
            if measured_positions is None:
                raise ValueError("measured_positions is required when interpolating from the measured state")
            before_pos = self._vector(measured_positions, "measured_positions")
            before_vel = None
        # The "point before the trajectory" sits at the time of receipt, as in the JTC.
        knots = [_Knot(now, before_pos, before_vel)]
        for k in knots_rel:
            t = start + k.time
            if t <= now:
                # Elapsed points only matter as the start of the segment containing ``now``.
                knots = [_Knot(t, k.positions, k.velocities)]
                continue
            knots.append(_Knot(t, k.positions, k.velocities))
        self._knots = knots

    # --- queries ----------------------------------------------------------------------------

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Desired (positions, velocities), each (n_joints,) float64, at time ``now`` (s)."""
        knots = self._knots
        if len(knots) == 1 or now >= knots[-1].time:
            return knots[-1].positions.copy(), np.zeros_like(knots[-1].positions)
        if now <= knots[0].time:
            first = knots[0]
            vel = np.zeros_like(first.positions) if first.velocities is None else first.velocities.copy()
            return first.positions.copy(), vel
        times = [k.time for k in knots]
        i = int(np.searchsorted(times, now, side="right")) - 1
        return _interpolate(knots[i], knots[i + 1], now)

    @property
    def end_time(self) -> float:
        """Time (s) of the last waypoint; after it the follower holds."""
        return self._knots[-1].time

    def is_active(self, now: float) -> bool:
        """True while a trajectory is still moving (before its last point)."""
        return len(self._knots) > 1 and now < self._knots[-1].time

    # --- internals --------------------------------------------------------------------------

    def _hold(self, positions: np.ndarray) -> None:
        self._knots = [_Knot(-math.inf, positions, None)]

    def _vector(self, values: Sequence[float], what: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape != (len(self.joint_names),):
            raise ValueError(f"{what} must have {len(self.joint_names)} values, got {arr.shape[0]}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} must be finite, got {arr.tolist()}")
        return arr

    def _validate_names(self, joint_names: Sequence[str]) -> np.ndarray:
        names = list(joint_names)
        if not names:
            raise TrajectoryRejected("empty joint_names", "empty_joints")
        if len(set(names)) != len(names):
            raise TrajectoryRejected(f"duplicate joint names in {names}", "duplicate_joints")
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise TrajectoryRejected(
                f"unknown joints {unknown}; this controller has {list(self.joint_names)}", "unknown_joints"
            )
        missing = [n for n in self.joint_names if n not in names]
        if missing:
            raise TrajectoryRejected(
                f"joints {missing} missing; partial-joint trajectories are not allowed", "missing_joints"
            )
        # order[i] = message column holding follower joint i
        return np.array([names.index(n) for n in self.joint_names], dtype=np.int64)

    def _validate_points(self, points: Sequence[TrajectoryPoint], order: np.ndarray) -> list[_Knot]:
        if not points:
            raise TrajectoryRejected("trajectory has no points", "no_points")
        n = len(order)
        knots: list[_Knot] = []
        prev = -math.inf
        for i, p in enumerate(points):
            pos = np.asarray(p.positions, dtype=np.float64).reshape(-1)
            vel = None if p.velocities is None or len(p.velocities) == 0 else np.asarray(p.velocities, np.float64)
            if pos.shape[0] != n or (vel is not None and vel.shape[0] != n):
                raise TrajectoryRejected(
                    f"point {i}: {pos.shape[0]} positions / {0 if vel is None else vel.shape[0]} velocities "
                    f"for {n} joints",
                    "size_mismatch",
                )
            t = float(p.time_from_start)
            if not (math.isfinite(t) and np.all(np.isfinite(pos)) and (vel is None or np.all(np.isfinite(vel)))):
                raise TrajectoryRejected(f"point {i} has a NaN or infinite time, position or velocity", "non_finite")
            if t < 0.0:
                raise TrajectoryRejected(f"point {i}: negative time_from_start {t}", "negative_time")
            if t <= prev:
                raise TrajectoryRejected(
                    f"time_from_start must be strictly increasing: point {i} at {t} after {prev}",
                    "non_increasing_time",
                )
            prev = t
            knots.append(_Knot(t, pos[order], None if vel is None else vel[order]))
        last_vel = knots[-1].velocities
        if not self.allow_nonzero_velocity_at_trajectory_end and last_vel is not None and np.any(last_vel != 0.0):
            raise TrajectoryRejected(
                "the last point has a non-zero velocity (allow_nonzero_velocity_at_trajectory_end is false)",
                "nonzero_end_velocity",
            )
        return knots


def _interpolate(a: _Knot, b: _Knot, now: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions/velocities between knots ``a`` and ``b`` at ``now`` (a.time < now < b.time).

    Cubic Hermite when both knots carry velocities (the JTC's rule), linear otherwise.
    """
    dt = b.time - a.time
    s = (now - a.time) / dt
    if a.velocities is None or b.velocities is None:
        vel = (b.positions - a.positions) / dt
        return a.positions + s * (b.positions - a.positions), vel
    p0, p1, v0, v1 = a.positions, b.positions, a.velocities * dt, b.velocities * dt
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
    pos = h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1
    vel = (d00 * p0 + d10 * v0 + d01 * p1 + d11 * v1) / dt
    return pos, vel
