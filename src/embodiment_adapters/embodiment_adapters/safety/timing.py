"""Time alignment and time parameterisation of joint-space waypoints.

The controller (JTC, positions + velocities) interpolates each segment with a cubic Hermite polynomial, starting
from the state it holds when the message arrives. :func:`parameterize` models exactly that and stretches segment
durations until, on every segment, the peak velocity of the cubic is within the velocity limit and its
accelerations (extreme at the segment ends, as acceleration is linear in time) are within the acceleration limit.
Stretching beats clipping: the path stays the model's, only slower.
"""

from __future__ import annotations

import numpy as np

from embodiment_adapters.safety.types import ChunkRejected

_MAX_LOCAL_PASSES = 40
_MAX_PASSES = 80
_SAFETY = 1.0005  # stretch a hair beyond the limit so float round-off never lands exactly on it


def align(
    stamp: float, step_duration: float, horizon: int, now: float, lead_time: float, lookahead: float, min_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """Chunk step indices to execute and their times relative to ``now`` (s).

    Step i targets ``stamp + (i + 1) * step_duration``. Steps earlier than ``now + lead_time`` have elapsed (or will
    have by the time the controller sees them) and are dropped; steps later than ``now + lookahead`` are dropped so
    the robot stops soon when chunks stop coming. Raises :class:`ChunkRejected` if fewer than ``min_points`` remain.
    """
    rel = stamp + (np.arange(horizon) + 1.0) * step_duration - now
    keep = np.nonzero((rel >= lead_time) & (rel <= lookahead))[0]
    if keep.size < min_points:
        if np.all(rel < lead_time):
            raise ChunkRejected(
                f"chunk too old: all {horizon} steps are in the past (last step {rel[-1]:+.3f} s from now, "
                f"lead time {lead_time:.3f} s)"
            )
        raise ChunkRejected(
            f"only {keep.size} step(s) between lead time {lead_time:.3f} s and look-ahead {lookahead:.3f} s "
            f"(min_points {min_points})"
        )
    return keep, rel[keep]


def point_velocities(
    q0: np.ndarray, points: np.ndarray, durations: np.ndarray, final_velocity_zero: bool
) -> np.ndarray:
    """Finite-difference velocities at the waypoints [N, J] (rad/s).

    Interior points: duration-weighted mean of the adjacent segment velocities, zero where the motion reverses,
    and limited to 3x the smaller neighbour (Fritsch-Carlson), so every Hermite segment is monotone and never
    overshoots its end positions (hence never leaves the position limits the waypoints satisfy).
    """
    prev = np.vstack([q0[None, :], points[:-1]])
    s = (points - prev) / durations[:, None]
    v = np.zeros_like(points)
    if len(points) > 1:
        s_a, s_b = s[:-1], s[1:]
        d_a, d_b = durations[:-1, None], durations[1:, None]
        avg = (d_b * s_a + d_a * s_b) / (d_a + d_b)
        same = s_a * s_b > 0.0
        bound = 3.0 * np.minimum(np.abs(s_a), np.abs(s_b))
        v[:-1] = np.where(same, np.clip(avg, -bound, bound), 0.0)
    if not final_velocity_zero:
        v[-1] = s[-1] if len(points) == 1 else np.where(s[-1] * s[-2] > 0.0, s[-1], 0.0)
    return v


def segment_peaks(
    q0: np.ndarray, v0: np.ndarray, points: np.ndarray, velocities: np.ndarray, durations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Peak |velocity| and peak |acceleration| of every cubic Hermite segment, each [N, J]."""
    qa = np.vstack([q0[None, :], points[:-1]])
    va = np.vstack([v0[None, :], velocities[:-1]])
    d = durations[:, None]
    s = (points - qa) / d
    vb = velocities
    # v(τ) = a0 + b τ + c τ², τ ∈ [0, 1]; a(t) = (b + 2 c τ) / d
    b = 6.0 * s - 4.0 * va - 2.0 * vb
    c = -6.0 * s + 3.0 * va + 3.0 * vb
    peak_v = np.maximum(np.abs(va), np.abs(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(np.abs(c) > 1e-12, -b / (2.0 * c), -1.0)
    inside = (tau > 0.0) & (tau < 1.0)
    v_mid = va + b * tau + c * tau * tau
    peak_v = np.where(inside, np.maximum(peak_v, np.abs(v_mid)), peak_v)
    peak_a = np.maximum(np.abs(b), np.abs(b + 2.0 * c)) / d
    return peak_v, peak_a


def parameterize(
    q0: np.ndarray,
    v0: np.ndarray,
    points: np.ndarray,
    times: np.ndarray,
    vmax: np.ndarray,
    amax: np.ndarray,
    *,
    final_velocity_zero: bool = True,
    first_segment_velocity_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Stretch ``times`` (s from now, increasing, > 0) so the cubic trajectory through ``points`` [N, J] from the
    start state (``q0``, ``v0``) respects ``vmax``/``amax`` [J]; returns (times [N], velocities [N, J]).

    ``first_segment_velocity_scale`` < 1 makes the approach to the first point slow (the "ramp" for a first point
    far from the current state), but never below ``|v0|``: the segment starts at ``v0`` and may only slow down.
    ``v0`` must be within ``vmax`` (the planner clamps it first); every segment, the first included, then stays
    within ``vmax``. That always converges: as a segment lengthens its end slopes shrink towards zero, and the
    cubic from ``v0`` towards a resting end peaks at ``|v0|`` itself (at t = 0).
    """
    if points.ndim != 2 or len(points) == 0 or len(times) != len(points):
        raise ChunkRejected("internal: no waypoints to time-parameterise")
    if not (np.all(np.isfinite(points)) and np.all(np.isfinite(q0)) and np.all(np.isfinite(v0))):
        raise ChunkRejected("non-finite waypoint or start state")
    durations = np.diff(np.concatenate([[0.0], times]))
    if np.any(durations <= 0.0):
        raise ChunkRejected("waypoint times are not strictly increasing")
    if np.any(np.abs(v0) > vmax):
        # Modelling a different start than the controller's would hide an overshoot: the caller clamps v0.
        raise ChunkRejected("internal: start velocity above the velocity limit (clamp it before planning)")
    seg_vmax = np.tile(vmax, (len(points), 1))
    # The ramp cap on segment 0 is lifted to |v0| (<= vmax): it can slow down from there, not jump below it.
    seg_vmax[0] = np.maximum(seg_vmax[0] * first_segment_velocity_scale, np.abs(v0))
    for attempt in range(_MAX_PASSES):
        vel = point_velocities(q0, points, durations, final_velocity_zero)
        peak_v, peak_a = segment_peaks(q0, v0, points, vel, durations)
        ratio = np.maximum(np.max(peak_v / seg_vmax, axis=1), np.sqrt(np.max(peak_a / amax, axis=1)))
        if np.all(ratio <= 1.0):
            return np.cumsum(durations), vel
        if attempt < _MAX_LOCAL_PASSES:
            # Local: stretch only the offending segments (their neighbours' point velocities follow next pass).
            durations = np.where(ratio > 1.0, durations * np.minimum(ratio, 4.0) * _SAFETY, durations)
        else:
            # Global fallback: uniform scaling shrinks every velocity by 1/k and acceleration by 1/k² (the fixed
            # start velocity only helps as segments lengthen), so this converges.
            durations = durations * float(np.max(ratio)) * _SAFETY
    raise ChunkRejected("could not time-parameterise the chunk within the velocity/acceleration limits")
