"""Blending across chunk boundaries (pure): the first points of a new chunk are mixed with the running plan."""

from __future__ import annotations

import numpy as np

from embodiment_adapters.safety.types import TrajectoryPlan


def blend_with_plan(
    targets: np.ndarray, abs_times: np.ndarray, plan: TrajectoryPlan | None, blend_steps: int
) -> np.ndarray:
    """Mix ``targets`` [N, J] at absolute ``abs_times`` [N] with ``plan`` sampled at the same times.

    Point k < blend_steps gets weight w = (k + 1) / (blend_steps + 1) on the new chunk, so the handoff moves
    gradually from the old prediction to the new one instead of jumping. No running plan -> unchanged.
    """
    if plan is None or blend_steps <= 0 or abs_times[0] > plan.end_time:
        return targets
    out = targets.copy()
    for k in range(min(blend_steps, len(targets))):
        w = (k + 1) / (blend_steps + 1)
        old, _ = plan.sample(float(abs_times[k]))
        out[k] = (1.0 - w) * old + w * targets[k]
    return out
