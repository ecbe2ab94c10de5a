"""Shared fixtures of the embodiment_adapters tests: an independent trajectory-limit checker."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _cubic(qa: np.ndarray, va: np.ndarray, qb: np.ndarray, vb: np.ndarray, d: float) -> np.ndarray:
    """Coefficients [4, J] of q(t) = c0 + c1 t + c2 t² + c3 t³ matching both end states, solved as a linear
    system (independent of the planner's Hermite-basis formulas)."""
    m = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, d, d * d, d**3], [0, 1, 2 * d, 3 * d * d]], dtype=float)
    return np.linalg.solve(m, np.vstack([qa, va, qb, vb]))


def check_plan(plan, lower, upper, vmax, amax, samples: int = 40, tol: float = 1e-6) -> None:
    """Assert the plan is executable: times strictly increasing and > 0, every point within position limits,
    final velocity zero, and the cubic segments' velocity/acceleration within limits (dense sampling)."""
    times = np.asarray(plan.times)
    assert times.ndim == 1 and len(times) == len(plan.positions) >= 1
    assert times[0] > 0.0 and np.all(np.diff(times) > 0.0), f"times not strictly increasing: {times}"
    assert np.all(np.isfinite(plan.positions)) and np.all(np.isfinite(plan.velocities))
    assert np.all(plan.positions >= lower - tol) and np.all(plan.positions <= upper + tol), "position limit"
    assert np.allclose(plan.velocities[-1], 0.0), "final velocity must be zero"
    qa, va, ta = plan.start_positions, plan.start_velocities, 0.0
    # A joint that starts outside its limits (a fault: noise, penetration) is only required to come back
    # (waypoints inside); its first segment is exempt. Every other joint: fully checked, segment 0 included.
    inside = (qa >= lower - tol) & (qa <= upper + tol)
    for k in range(len(times)):
        d = float(times[k] - ta)
        c = _cubic(qa, va, plan.positions[k], plan.velocities[k], d)
        t = np.linspace(0.0, d, samples)[:, None]
        vel = c[1] + 2 * c[2] * t + 3 * c[3] * t * t
        acc = 2 * c[2] + 6 * c[3] * t
        pos = c[0] + c[1] * t + c[2] * t * t + c[3] * t**3
        if k == 0:
            vel, acc, pos = vel[:, inside], acc[:, inside], pos[:, inside]
            vm, am, lo, hi = vmax[inside], amax[inside], lower[inside], upper[inside]
        else:
            vm, am, lo, hi = vmax, amax, lower, upper
        assert np.all(np.abs(vel) <= vm * (1 + 1e-6) + tol), f"velocity limit in segment {k}: {np.abs(vel).max(0)}"
        peak_acc = np.abs(acc).max(0)
        assert np.all(np.abs(acc) <= am * (1 + 1e-6) + tol), f"acceleration limit in segment {k}: {peak_acc}"
        assert np.all(pos >= lo - 1e-6) and np.all(pos <= hi + 1e-6), f"position overshoot in segment {k}"
        qa, va, ta = plan.positions[k], plan.velocities[k], float(times[k])


@pytest.fixture(scope="session")
def plan_checker() -> Callable[..., None]:
    return check_plan
