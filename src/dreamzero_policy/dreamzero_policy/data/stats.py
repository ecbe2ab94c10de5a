"""Normalisation statistics: ``meta/stats.json`` and ``meta/relative_stats_dreamzero.json``.

Per dimension: mean, std (population, ddof=0), min, max, q01, q99 (``np.quantile`` linear), in
float64, over every frame of every episode that has the data (video-only episodes hold NaN
actions and are left out). Relative actions follow DreamZero: for each anchor frame ``a`` with a
full chunk ahead (``a + H <= T``) and each offset ``o < H``: ``action[a+o] - state[a]``, using the
action key's columns and its paired state key's columns.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from dreamzero_policy.core.errors import DatasetError


def relative_chunks(action: np.ndarray, state: np.ndarray, horizon: int, block: int = 1024) -> Iterator[np.ndarray]:
    """Relative actions of one episode, ``action[a+o] - state[a]`` for A = T - H + 1 anchors.

    Yields (n*H, D) blocks of at most ``block`` anchors, so a long episode never materialises all
    A*H rows at once (a 10-minute episode at 15 fps with H=24 is ~200k rows per key).
    """
    if action.shape != state.shape:
        raise DatasetError(f"relative action needs equal shapes, got action {action.shape} and state {state.shape}")
    usable = action.shape[0] - horizon + 1
    for a0 in range(0, max(usable, 0), block):
        anchors = np.arange(a0, min(a0 + block, usable))
        idx = anchors[:, None] + np.arange(horizon)[None, :]  # (n, H)
        yield (action[idx] - state[anchors, None, :]).reshape(-1, action.shape[1])


class ColumnSpill:
    """(N, D) float64 rows appended to one file per column, read back one column at a time."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory, self.name = directory, name
        self.rows = 0
        self.width: int | None = None

    def _path(self, d: int) -> Path:
        return self.directory / f"{self.name}.{d}.f64"

    def append(self, block: np.ndarray) -> None:
        if self.width is None:
            self.width = block.shape[1]
            self.directory.mkdir(parents=True, exist_ok=True)
        for d in range(block.shape[1]):
            with self._path(d).open("ab") as f:
                np.ascontiguousarray(block[:, d], dtype=np.float64).tofile(f)
        self.rows += block.shape[0]

    def stats(self) -> dict[str, list[float]]:
        """``numeric_stats`` computed column by column: memory is one column, not N x D."""
        if not self.rows or self.width is None:
            raise DatasetError(f"cannot compute statistics of '{self.name}': no samples")
        out: dict[str, list[float]] = {k: [] for k in ("mean", "std", "min", "max", "q01", "q99")}
        for d in range(self.width):
            v = np.fromfile(self._path(d), dtype=np.float64)
            q01, q99 = np.quantile(v, [0.01, 0.99])
            for key, value in zip(out, (v.mean(), v.std(), v.min(), v.max(), q01, q99), strict=True):
                out[key].append(float(value))
        return out


class StatsAccumulator:
    """Statistics over every episode, with memory independent of dataset length.

    Rows are spilled to ``spill_dir`` (in the staging directory, next to the output) and reduced
    one column at a time in :meth:`finish`, which then deletes the directory. Quantiles stay exact.
    """

    def __init__(self, relative: dict[str, tuple[slice, slice]], horizon: int, spill_dir: Path) -> None:
        self.relative = relative  # action key -> (action column slice, state column slice)
        self.horizon = horizon
        self.spill_dir = spill_dir
        self.state = ColumnSpill(spill_dir, "state")
        self.action = ColumnSpill(spill_dir, "action")
        self.rel = {k: ColumnSpill(spill_dir, f"relative.{k}") for k in relative}

    def add(self, state: np.ndarray | None, action: np.ndarray | None) -> None:
        """One episode's (T, Ds) state and (T, Da) action; None where the episode has none."""
        self.add_blocks([(state, action)])

    def add_blocks(self, blocks: Iterable[tuple[np.ndarray | None, np.ndarray | None]]) -> None:
        """One episode as consecutive row blocks; relative chunks span block boundaries."""
        carry: tuple[np.ndarray, np.ndarray] | None = None  # the last H-1 rows: anchors not yet complete
        for state, action in blocks:
            if state is not None:
                self.state.append(state)
            if action is None:
                continue
            self.action.append(action)
            if state is None or not self.relative:
                continue
            if carry is not None:
                state, action = np.concatenate([carry[0], state]), np.concatenate([carry[1], action])
            for key, (asl, ssl) in self.relative.items():
                for block in relative_chunks(action[:, asl], state[:, ssl], self.horizon):
                    self.rel[key].append(block)
            done = max(len(action) - self.horizon + 1, 0)  # anchors handled; the rest wait for more rows
            carry = (state[done:], action[done:])

    def finish(self) -> tuple[dict[str, object], dict[str, object]]:
        try:
            stats: dict[str, object] = {}
            if self.state.rows:
                stats["observation.state"] = self.state.stats()
            if self.action.rows:
                stats["action"] = self.action.stats()
            relative: dict[str, object] = {}
            for key, spill in self.rel.items():
                if not self.action.rows:  # only video-only episodes: nothing to normalise yet
                    break
                if spill.rows == 0:
                    raise DatasetError(
                        f"no relative-action samples for '{key}': "
                        f"every episode is shorter than action_horizon={self.horizon}"
                    )
                relative[key] = spill.stats()
            return stats, relative
        finally:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
