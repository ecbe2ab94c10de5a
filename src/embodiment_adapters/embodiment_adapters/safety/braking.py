"""Keep the start of a plan inside the position limits when the robot is already moving.

The first segment of a plan is a cubic Hermite from the robot's state (``q0``, ``v0``) to the first
waypoint. Waypoints are clamped to the limits and interior velocities are Fritsch-Carlson limited,
so later segments never overshoot; the first one can: moving at ``v0`` towards a limit with the first
waypoint at (or near) that limit, the curve continues past it, and stretching the segment for the
acceleration limit makes it worse (the overshoot grows with ``duration * v0``). Measured in the demo:
0.026 rad past joint 2's limit; 0.16 rad for v0 = 2 rad/s starting 0.16 rad before the limit.

The remedy is to brake first: every joint decelerates at a constant rate to rest, each at its own
stop time ``T_i = slack * |v0_i| / amax_i`` (at most ``amax / slack``), shortened to
``2 * room_i / |v0_i|`` where the limit ahead is nearer, so it stops exactly at the limit. Waypoints at
the distinct stop times make every cubic Hermite segment reproduce that piecewise-quadratic motion
exactly: monotone (never past the stop point) and within the acceleration limit whenever stopping
before the limit is physically possible at all (room >= v0^2 / (2 amax)). A joint that already is
outside its limits is brought back to the nearest one.

Stop times closer than ``_MERGE_TIME`` are merged into the earliest of them (that joint stops a hair sooner:
never further, and at most ~11 % harder as every stop takes >= ``_MIN_BRAKE_TIME``): a segment of duration
``d`` turns position round-off ``eps`` into accelerations ~ ``6 eps / d**2``, which for d ~ 1e-8 s (two joints
stopping almost together) was 16 rad/s^2 -- beyond the limit.
"""

from __future__ import annotations

import numpy as np

_SAMPLES = np.linspace(0.0, 1.0, 65)
_MIN_BRAKE_TIME = 1e-3  # s: at a limit and moving outwards, stop as fast as a step allows
_MERGE_TIME = 1e-4  # s: shortest braking segment (round-off over d is amplified by 1/d**2 into acceleration)


def hermite_range(
    qa: np.ndarray, va: np.ndarray, qb: np.ndarray, vb: np.ndarray, d: float
) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) per joint of the cubic Hermite segment (qa, va) -> (qb, vb) over ``d`` s (dense samples)."""
    s = _SAMPLES[:, None]
    q = (
        (2 * s**3 - 3 * s**2 + 1) * qa
        + (s**3 - 2 * s**2 + s) * d * va
        + (-2 * s**3 + 3 * s**2) * qb
        + (s**3 - s**2) * d * vb
    )
    return q.min(axis=0), q.max(axis=0)


def leaves_limits(
    qa: np.ndarray,
    va: np.ndarray,
    qb: np.ndarray,
    vb: np.ndarray,
    d: float,
    lower: np.ndarray,
    upper: np.ndarray,
    tol: float = 1e-9,
) -> bool:
    """True if the segment goes beyond [lower, upper] further than its own end points already are."""
    lo, hi = hermite_range(qa, va, qb, vb, d)
    floor = np.minimum(lower, np.minimum(qa, qb))  # a start outside the limits is the robot's, not the plan's
    ceil = np.maximum(upper, np.maximum(qa, qb))
    return bool(np.any(lo < floor - tol) or np.any(hi > ceil + tol))


def braking_profile(
    q0: np.ndarray,
    v0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    amax: np.ndarray,
    min_time: float,
    slack: float = 1.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Waypoints of a stop from (q0, v0) inside the limits: times [K] (s, increasing, > 0), positions [K, J],
    velocities [K, J] (the last row zero). See the module docstring."""
    speed = np.abs(v0)
    moving = speed > 1e-12
    ahead = np.where(v0 > 0.0, upper - q0, q0 - lower)  # room in the direction of motion (< 0: already out)
    stop = np.where(moving, slack * speed / np.maximum(amax, 1e-12), 0.0)
    room = np.where(moving, 2.0 * np.maximum(ahead, 0.0) / np.maximum(speed, 1e-12), np.inf)
    stop = np.where(moving, np.maximum(np.minimum(stop, room), _MIN_BRAKE_TIME), 0.0)
    stop[moving] = _merge_close(stop[moving])
    times = np.unique(stop[moving])
    if times.size == 0 or times[-1] < min_time:
        times = np.append(times, min_time)  # a hold is never a step command
    t = times[:, None]
    T = np.where(moving, stop, 1.0)[None, :]
    before = t < T
    positions = np.where(before, q0 + v0 * t - v0 * t * t / (2.0 * T), q0 + v0 * T / 2.0)
    velocities = np.where(before, v0 * (1.0 - t / T), 0.0)
    velocities[-1] = 0.0
    # A joint already outside its limits (measurement noise, physics penetration): every waypoint at the
    # nearest limit, at rest; the first segment is its way back.
    out = (q0 < lower) | (q0 > upper)
    positions[:, out] = np.clip(q0, lower, upper)[out]
    velocities[:, out] = 0.0
    return times, positions, velocities


def _merge_close(stops: np.ndarray) -> np.ndarray:
    """Stop times [K] (s) with every time less than ``_MERGE_TIME`` after an earlier kept one set to that one."""
    out = stops.copy()
    anchor = -np.inf
    for i in np.argsort(stops, kind="stable"):
        if stops[i] - anchor > _MERGE_TIME:
            anchor = stops[i]
        out[i] = anchor
    return out
