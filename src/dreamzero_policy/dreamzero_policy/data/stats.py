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
        """Per column: mean, std, min, max, q01, q99, reading the column in blocks (see column_stats)."""
        if not self.rows or self.width is None:
            raise DatasetError(f"cannot compute statistics of '{self.name}': no samples")
        out: dict[str, list[float]] = {k: [] for k in ("mean", "std", "min", "max", "q01", "q99")}
        for d in range(self.width):
            for key, value in column_stats(self._path(d), self.rows).items():
                out[key].append(value)
        return out


READ_BLOCK = 1 << 16  # values per read: statistics memory is this, not the column length
BINS = 1 << 12  # histogram bins locating the quantiles' order statistics
MAX_BIN_VALUES = 1 << 20  # beyond this many values in one bin, the whole column is read instead


def _blocks(path: Path) -> Iterator[np.ndarray]:
    with path.open("rb") as f:
        while True:
            block = np.fromfile(f, dtype=np.float64, count=READ_BLOCK)
            if not len(block):
                return
            yield block


def column_stats(path: Path, n: int) -> dict[str, float]:
    """mean, std (ddof 0), min, max and the 1 %/99 % quantiles of a float64 column file of ``n`` values.

    Quantiles are exact, with numpy's default ("linear") rule: a histogram pass finds the bins that
    hold the needed order statistics, and only those bins' values are kept and sorted. Mean and
    std are summed block by block (they can differ from numpy's in the last bits).
    """
    total, lo, hi = 0.0, np.inf, -np.inf
    for b in _blocks(path):
        total += float(b.sum())
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    mean = total / n
    squares = sum(float(np.square(b - mean).sum()) for b in _blocks(path))
    positions = {q: (n - 1) * q for q in (0.01, 0.99)}
    ranks = sorted({r for v in positions.values() for r in (int(np.floor(v)), min(int(np.floor(v)) + 1, n - 1))})
    values = _order_statistics(path, n, lo, hi, ranks)
    out = {"mean": mean, "std": float(np.sqrt(squares / n)), "min": lo, "max": hi}
    for q, v in positions.items():
        prev = int(np.floor(v))
        a, b = values[prev], values[min(prev + 1, n - 1)]
        if v >= n - 1:
            a = b = values[n - 1]
        t = v - prev
        diff = b - a  # numpy's _lerp, so the result is bit-identical to np.quantile
        out[f"q{round(q * 100):02d}"] = b - diff * (1 - t) if t >= 0.5 else a + diff * t
    return out


def _order_statistics(path: Path, n: int, lo: float, hi: float, ranks: list[int]) -> dict[int, float]:
    """The ``ranks``-th smallest values (0-based) of the column, holding only the bins they fall in."""
    if lo == hi:
        return dict.fromkeys(ranks, lo)

    def bins(b: np.ndarray) -> np.ndarray:  # monotonic in the value, so bins are ordered
        return np.clip(((b - lo) / (hi - lo) * BINS).astype(np.int64), 0, BINS - 1)

    counts = np.zeros(BINS, np.int64)
    for b in _blocks(path):
        counts += np.bincount(bins(b), minlength=BINS)
    ends = np.cumsum(counts)
    where = {r: int(np.searchsorted(ends, r, side="right")) for r in ranks}
    if max(counts[k] for k in set(where.values())) > MAX_BIN_VALUES:
        column = np.sort(np.fromfile(path, dtype=np.float64))
        return {r: float(column[r]) for r in ranks}
    kept: dict[int, list[np.ndarray]] = {k: [] for k in set(where.values())}
    for b in _blocks(path):
        idx = bins(b)
        for k in kept:
            kept[k].append(b[idx == k])
    sorted_bins = {k: np.sort(np.concatenate(parts)) for k, parts in kept.items()}
    return {r: float(sorted_bins[k][r - (ends[k] - counts[k])]) for r, k in where.items()}


def _as_stored(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, np.float32).astype(np.float64)


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
        """One episode as consecutive row blocks; relative chunks span block boundaries.

        Values are taken as the dataset stores them (float32), so the statistics are those of the
        written columns, whether they come from the conversion or are read back (``parallel.py``).
        """
        carry: tuple[np.ndarray, np.ndarray] | None = None  # the last H-1 rows: anchors not yet complete
        for state, action in blocks:
            state, action = _as_stored(state), _as_stored(action)
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
