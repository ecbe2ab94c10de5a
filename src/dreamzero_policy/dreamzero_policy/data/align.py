"""Resampling series onto the dataset's fixed-rate grid, on header stamps, with gap accounting.

Grid: ``t_k = t_start + round(k * 1e9 / fps)`` ns, ``t_start`` = the latest first sample over the
required series and ``t_end`` = the earliest last sample, so every stream has data around every
frame. Each frame takes the sample *nearest* to its query time (grid time + the series' offset):
the alignment error is then at most half the source period when nothing is missing. A frame whose
nearest sample is farther than the tolerance is a gap; gaps are never filled silently: they are
returned for the caller to report and reject. Frames filled within tolerance but more than half a
dataset period away (a dropped camera frame, held) are counted as ``held``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dreamzero_policy.data.streams import Series


@dataclass
class AlignReport:
    """How one series was aligned to one episode's grid (times in seconds)."""

    key: str
    topic: str
    samples: int
    out_of_order: int
    max_error_s: float
    mean_error_s: float
    held: int
    gaps: list[float] = field(default_factory=list)  # grid times (s from episode start) beyond tolerance
    time_source: str = "header"

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "topic": self.topic,
            "samples": self.samples,
            "out_of_order_dropped": self.out_of_order,
            "max_align_error_s": self.max_error_s,
            "mean_align_error_s": self.mean_error_s,
            "held_frames": self.held,
            "gaps_beyond_tolerance": len(self.gaps),
            "first_gaps_s": self.gaps[:10],
            "time_source": self.time_source,
        }


def make_grid(series: list[Series], fps: float) -> np.ndarray:
    """(T,) int64 grid times covered by every series; empty if they do not overlap."""
    if not series or any(len(s.times) == 0 for s in series):
        return np.zeros(0, np.int64)
    start = max(int(s.times[0]) - s.offset_ns for s in series)
    end = min(int(s.times[-1]) - s.offset_ns for s in series)
    if end < start:
        return np.zeros(0, np.int64)
    period = 1e9 / fps
    n = int(np.floor((end - start) / period + 1e-9)) + 1
    return start + np.round(np.arange(n) * period).astype(np.int64)


def nearest(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the nearest element of sorted ``times`` for each ``query`` (ties go to the earlier)."""
    right = np.clip(np.searchsorted(times, query, "left"), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    pick_left = np.abs(query - times[left]) <= np.abs(times[right] - query)
    return np.where(pick_left, left, right)


def align(series: Series, grid: np.ndarray, fps: float, tolerance_s: float) -> tuple[np.ndarray, AlignReport]:
    """Indices into ``series`` for each grid frame, plus the report (gaps listed, not filled)."""
    query = grid + series.offset_ns
    idx = nearest(series.times, query)
    err = np.abs(series.times[idx] - query).astype(np.float64) / 1e9
    gap = err > tolerance_s + 1e-9
    t0 = int(grid[0]) if len(grid) else 0
    report = AlignReport(
        key=series.key,
        topic=series.topic,
        samples=len(series.times),
        out_of_order=series.out_of_order,
        max_error_s=float(err.max()) if len(err) else 0.0,
        mean_error_s=float(err.mean()) if len(err) else 0.0,
        held=int((err > 0.5 / fps + 1e-9).sum()),
        gaps=[round((int(g) - t0) / 1e9, 6) for g in grid[gap]],
        time_source=series.time_source,
    )
    return idx, report
