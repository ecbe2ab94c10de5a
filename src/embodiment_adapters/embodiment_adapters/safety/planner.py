"""The adapter's pure core: chunks + joint states in, safe :class:`TrajectoryPlan`s out (no ROS, no clocks).

Pipeline for one chunk (ros2-integration.md §8.6): session/order filter -> validation -> conversion to joint
targets -> time alignment (drop elapsed steps, cap look-ahead) -> blend with the running plan -> clamp to
position limits -> start check (ramp or refuse when far from the measured state) -> time stretching for
velocity/acceleration limits with finite-difference velocities (final velocity zero) -> a braking point
first when the robot's own motion would carry the first segment past a limit (safety/braking.py) -> plan.
Any failure raises :class:`ChunkRejected`; the running plan (the last safe command) is left untouched.
Not thread-safe: the node serialises calls.
"""

from __future__ import annotations

import numpy as np

from embodiment_adapters.kinematics import build_chains
from embodiment_adapters.profile import RobotProfile
from embodiment_adapters.safety.blending import blend_with_plan
from embodiment_adapters.safety.braking import braking_profile, leaves_limits
from embodiment_adapters.safety.conversion import to_joint_targets
from embodiment_adapters.safety.session import SessionFilter
from embodiment_adapters.safety.timing import align, parameterize
from embodiment_adapters.safety.types import ChunkInput, ChunkRejected, SafetyConfig, TrajectoryPlan
from embodiment_adapters.safety.validation import validate_chunk

_MIN_STOP_TIME = 0.05  # s: a hold is never a step command (single point at time 0)
_MIN_BRAKE_TIME = 1e-3  # s: braking.py's shortest stop (a faster start could not stop within the room)


class AdapterCore:
    """State: the running plan, the latest measured joint state and the session filter."""

    def __init__(self, profile: RobotProfile, cfg: SafetyConfig | None = None) -> None:
        self.profile = profile
        self.cfg = cfg or SafetyConfig()
        self.chains = build_chains(profile)
        self.sessions = SessionFilter()
        self.plan: TrajectoryPlan | None = None
        lower, upper, vmax, amax = profile.limits_arrays()
        margin = np.minimum(self.cfg.position_margin, (upper - lower) / 4.0)
        self.lower, self.upper = lower + margin, upper - margin
        self.vmax, self.amax = vmax * self.cfg.velocity_scale, amax * self.cfg.acceleration_scale
        self._measured = np.full(len(profile.joints), np.nan)
        self.measured_time: float | None = None
        self.final_velocity_zero = not (profile.allow_nonzero_final_velocity and self.cfg.allow_nonzero_final_velocity)

    # ------------------------------------------------------------------------------------------ state input

    def update_joint_state(self, names: list[str] | tuple[str, ...], positions: np.ndarray, t: float) -> bool:
        """Merge a (possibly partial) joint state, SI units. Returns True once every profile joint is known;
        ``measured_time`` only advances when the state is complete and finite."""
        for name, value in zip(names, positions, strict=True):
            if name in self.profile.joint_names and np.isfinite(value):
                self._measured[self.profile.joint_index(name)] = float(value)
        complete = bool(np.all(np.isfinite(self._measured)))
        if complete:
            self.measured_time = t
        return complete

    @property
    def measured(self) -> np.ndarray | None:
        return self._measured.copy() if np.all(np.isfinite(self._measured)) else None

    def commanded(self, t: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Commanded (position, velocity) at time ``t`` from the running plan, or None if nothing was commanded."""
        return None if self.plan is None else self.plan.sample(t)

    def moving(self, now: float) -> bool:
        return self.plan is not None and now < self.plan.end_time

    def clear(self) -> None:
        """Forget the running plan (after disable / e-stop the controller holds on its own)."""
        self.plan = None

    # ------------------------------------------------------------------------------------------ chunks

    def process_chunk(self, chunk: ChunkInput, now: float) -> TrajectoryPlan:
        """Turn a chunk into a plan starting at ``now`` (same clock as ``chunk.stamp``) or raise ChunkRejected."""
        reason = self.sessions.check(chunk.session_id, chunk.chunk_id)
        if reason is not None:
            raise ChunkRejected(reason)
        measured = self.measured
        if measured is None:
            raise ChunkRejected("no complete joint state received yet")
        cmap = validate_chunk(chunk, self.profile, self.cfg, now)

        # A new session starts from the robot, not from the previous session's predictions.
        same_session = chunk.session_id == self.sessions.session
        running = self.plan if same_session else None
        reference = running.sample(chunk.stamp)[0] if running is not None else measured
        targets = to_joint_targets(chunk, cmap, self.profile, reference, self.chains)

        cfg = self.cfg
        keep, rel = align(
            chunk.stamp, chunk.step_duration, chunk.horizon, now, cfg.lead_time, cfg.lookahead, cfg.min_points
        )
        points = targets[keep]
        notes: list[str] = []
        points = blend_with_plan(points, now + rel, running, cfg.blend_steps)
        clamped = np.clip(points, self.lower, self.upper)
        if np.any(clamped != points):
            worst = int(np.argmax(np.max(np.abs(clamped - points), axis=0)))
            notes.append(f"clamped to position limits ({self.profile.joint_names[worst]} worst)")
        points = clamped

        q0 = measured
        # The controller starts from the robot's current motion, whichever session commanded it.
        v0 = self.plan.sample(now)[1] if self.plan is not None else np.zeros_like(q0)
        v0 = self._start_velocity(q0, v0, notes)
        gap = np.abs(points[0] - q0)
        scale = 1.0
        if float(np.max(gap)) > cfg.start_tolerance:
            joint = self.profile.joint_names[int(np.argmax(gap))]
            if cfg.start_policy == "refuse":
                raise ChunkRejected(
                    f"first point {float(np.max(gap)):.3f} rad from the measured state at {joint} "
                    f"(start_tolerance {cfg.start_tolerance:.3f}, start_policy refuse)"
                )
            scale = cfg.ramp_velocity_scale
            notes.append(f"ramping to first point ({float(np.max(gap)):.3f} rad away at {joint})")
        times, velocities = parameterize(
            q0,
            v0,
            points,
            rel,
            self.vmax,
            self.amax,
            final_velocity_zero=self.final_velocity_zero,
            first_segment_velocity_scale=scale,
        )
        if times[-1] > rel[-1] * 1.001 + 1e-6:
            notes.append(f"time-stretched x{times[-1] / rel[-1]:.2f} for velocity/acceleration limits")
        if leaves_limits(q0, v0, points[0], velocities[0], float(times[0]), self.lower, self.upper):
            # Moving towards a limit with the first point at it: stop first, then follow the chunk (delayed).
            b_t, b_q, b_v = braking_profile(q0, v0, self.lower, self.upper, self.amax, _MIN_STOP_TIME)
            rest_t, rest_v = parameterize(
                b_q[-1],
                np.zeros_like(q0),
                points,
                rel,
                self.vmax,
                self.amax,
                final_velocity_zero=self.final_velocity_zero,
            )
            points = np.vstack([b_q, points])
            times = np.concatenate([b_t, b_t[-1] + rest_t])
            velocities = np.vstack([b_v, rest_v])
            notes.append(f"braking first ({b_t[-1]:.2f} s): the motion would have crossed a position limit")

        grippers = {}
        first = int(keep[0])
        for name, col in cmap.gripper_cols.items():
            grippers[name] = float(np.clip(chunk.data[first, col], 0.0, 1.0))
        plan = TrajectoryPlan(
            joint_names=self.profile.joint_names,
            t0=now,
            start_positions=q0.copy(),
            start_velocities=v0.copy(),
            positions=points,
            velocities=velocities,
            times=times,
            session_id=chunk.session_id,
            chunk_id=chunk.chunk_id,
            gripper_targets=grippers,
            notes=tuple(notes),
        )
        self.sessions.commit(chunk.session_id, chunk.chunk_id)
        self.plan = plan
        return plan

    def _start_velocity(self, q0: np.ndarray, v0: np.ndarray, notes: list[str]) -> np.ndarray:
        """The start velocity [J] (rad/s) clamped to what the limits allow at ``q0`` [J] (rad).

        Two caps: the velocity limit, and the speed from which the joint can still stop before the position
        limit it moves towards within the acceleration limit (sqrt(2 amax room), and 2 room / the shortest
        braking time). A sample of a plan within limits meets both up to round-off; a start that does not
        (the measured position is noisy while v0 is the commanded velocity, or a state from elsewhere) is
        clamped and noted, so every segment is planned, and stated in the plan, within all limits.
        """
        room = np.maximum(np.where(v0 > 0.0, self.upper - q0, q0 - self.lower), 0.0)
        stoppable = np.minimum(np.sqrt(2.0 * self.amax * room) * (1.0 - 1e-6), 2.0 * room / _MIN_BRAKE_TIME)
        cap = np.minimum(self.vmax, stoppable)
        clamped = np.clip(v0, -cap, cap)
        excess = np.abs(v0 - clamped)
        if float(np.max(excess, initial=0.0)) > 1e-9 * float(np.max(self.vmax)):
            worst = int(np.argmax(excess))
            why = "velocity limit" if cap[worst] == self.vmax[worst] else "speed that can stop before the limit"
            notes.append(f"start velocity clamped to the {why} ({self.profile.joint_names[worst]} worst)")
        return clamped

    # ------------------------------------------------------------------------------------------ holding

    def hold_plan(self, now: float) -> TrajectoryPlan | None:
        """A smooth stop from the commanded state at ``now`` (decelerate within limits, zero final velocity).

        None when nothing is moving (the controller already holds its last point).
        """
        if not self.moving(now):
            return None
        assert self.plan is not None
        q, v = self.plan.sample(now)
        v = self._start_velocity(q, v, [])
        t_stop = max(_MIN_STOP_TIME, float(np.max(np.abs(v) / self.amax)) * 1.5)
        stop = np.clip(q + v * t_stop / 2.0, self.lower, self.upper)
        times, velocities = parameterize(q, v, stop[None, :], np.array([t_stop]), self.vmax, self.amax)
        positions = stop[None, :]
        if leaves_limits(q, v, stop, velocities[0], float(times[0]), self.lower, self.upper):
            # A limit is nearer than this stop: each joint decelerates on its own, harder where it must.
            times, positions, velocities = braking_profile(q, v, self.lower, self.upper, self.amax, _MIN_STOP_TIME)
        hold = TrajectoryPlan(
            joint_names=self.profile.joint_names,
            t0=now,
            start_positions=q,
            start_velocities=v,
            positions=positions,
            velocities=velocities,
            times=times,
            session_id=self.plan.session_id,
            chunk_id=self.plan.chunk_id,
            notes=("hold",),
        )
        self.plan = hold
        return hold
