"""Normalisation statistics: ``meta/stats.json`` and ``meta/relative_stats_dreamzero.json``.

Per dimension: mean, std (population, ddof=0), min, max, q01, q99 (``np.quantile`` linear), in
float64, over every frame of every episode that has the data (video-only episodes hold NaN
actions and are left out). Relative actions follow DreamZero: for each anchor frame ``a`` with a
full chunk ahead (``a + H <= T``) and each offset ``o < H``: ``action[a+o] - state[a]``, using the
action key's columns and its paired state key's columns.
"""

from __future__ import annotations

import numpy as np

from dreamzero_policy.core.errors import DatasetError


def numeric_stats(values: np.ndarray) -> dict[str, list[float]]:
    """Stats of (N, D) ``values`` along N; raises if N == 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise DatasetError(f"cannot compute statistics of an array of shape {v.shape}")
    return {
        "mean": v.mean(0).tolist(),
        "std": v.std(0).tolist(),
        "min": v.min(0).tolist(),
        "max": v.max(0).tolist(),
        "q01": np.quantile(v, 0.01, axis=0).tolist(),
        "q99": np.quantile(v, 0.99, axis=0).tolist(),
    }


def relative_chunks(action: np.ndarray, state: np.ndarray, horizon: int) -> np.ndarray:
    """(A*H, D) relative actions of one episode: ``action[a+o] - state[a]``; A = T - H + 1 anchors."""
    if action.shape != state.shape:
        raise DatasetError(f"relative action needs equal shapes, got action {action.shape} and state {state.shape}")
    usable = action.shape[0] - horizon + 1
    if usable <= 0:
        return np.zeros((0, action.shape[1]))
    idx = np.arange(usable)[:, None] + np.arange(horizon)[None, :]  # (A, H)
    return (action[idx] - state[:usable, None, :]).reshape(-1, action.shape[1])


class StatsAccumulator:
    """Collects per-episode columns; low-dim data is small (a 10-min 15 fps bag is 9k rows)."""

    def __init__(self, relative: dict[str, tuple[slice, slice]], horizon: int) -> None:
        self.relative = relative  # action key -> (action column slice, state column slice)
        self.horizon = horizon
        self.state: list[np.ndarray] = []
        self.action: list[np.ndarray] = []
        self.rel: dict[str, list[np.ndarray]] = {k: [] for k in relative}

    def add(self, state: np.ndarray | None, action: np.ndarray | None) -> None:
        if state is not None:
            self.state.append(state)
        if action is not None:
            self.action.append(action)
            if state is not None:
                for key, (asl, ssl) in self.relative.items():
                    self.rel[key].append(relative_chunks(action[:, asl], state[:, ssl], self.horizon))

    def finish(self) -> tuple[dict[str, object], dict[str, object]]:
        stats: dict[str, object] = {}
        if self.state:
            stats["observation.state"] = numeric_stats(np.concatenate(self.state))
        if self.action:
            stats["action"] = numeric_stats(np.concatenate(self.action))
        relative: dict[str, object] = {}
        for key, parts in self.rel.items():
            if not self.action:  # only video-only episodes: nothing to normalise yet
                break
            merged = np.concatenate(parts) if parts else np.zeros((0, 0))
            if merged.shape[0] == 0:
                raise DatasetError(
                    f"no relative-action samples for '{key}': "
                    f"every episode is shorter than action_horizon={self.horizon}"
                )
            relative[key] = numeric_stats(merged)
        return stats, relative
