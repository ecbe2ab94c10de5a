"""One episode's frames: the grid, which sample every key and camera uses, and the arrays.

``plan_episode`` works only on pass-1 data (stamps and low-dim values). It raises
:class:`AlignmentError` for gaps beyond tolerance or too-short episodes, so an episode is judged
before any video is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dreamzero_policy.core.errors import AlignmentError
from dreamzero_policy.data.align import AlignReport, align, make_grid
from dreamzero_policy.data.episodes import EpisodeWindow
from dreamzero_policy.data.index import BagIndex
from dreamzero_policy.data.mapping import Mapping
from dreamzero_policy.data.streams import Series

MAX_OUT_OF_ORDER = 2  # samples a stream may drop for going back in time, whatever its length ...
OUT_OF_ORDER_FRACTION = 0.01  # ... or this fraction of its samples


@dataclass
class EpisodePlan:
    window: EpisodeWindow
    instruction: str
    grid: np.ndarray  # (T,) int64 ns
    frames: dict[str, np.ndarray]  # video key -> (T,) message ordinal on the camera topic
    state: np.ndarray | None  # (T, Ds)
    action: np.ndarray | None  # (T, Da); None = video-only
    sync: dict[str, np.ndarray]  # "stamp_ns" + per key/video: stamp of the sample used
    reports: list[AlignReport] = field(default_factory=list)
    video_only_reason: str | None = None
    coverage: dict[str, Any] = field(default_factory=dict)  # see coverage()

    @property
    def length(self) -> int:
        return len(self.grid)


def missing_actions_reason(index: BagIndex) -> str:
    """Why an episode is video-only when action topics were not recorded at all."""
    return f"action topics not recorded: {sorted(set(index.missing_action_topics))}"


def _fmt(reports: list[AlignReport], tol: float) -> str:
    bad = [r for r in reports if r.gaps]
    return "; ".join(
        f"{r.topic} ('{r.key}'): {len(r.gaps)} frames beyond {tol * 1e3:.1f} ms (max {r.max_error_s * 1e3:.1f} ms, "
        f"first at +{r.gaps[0]:.3f} s)"
        for r in bad
    )


LOST_WARNING_S = 2.0  # a stream starting this much later or ending this much earlier than the others is reported


def coverage(spans: list[tuple[str, int, int]], grid_start: int, grid_end: int) -> dict[str, Any]:
    """What the grid leaves out: ``spans`` = (topic, first, last) per required stream, in grid time.

    The grid runs from the latest first sample to the earliest last one, so a camera that starts late
    or dies early cuts every other stream too. ``lost_before_s``/``lost_after_s`` say how much of
    the longest stream falls outside, and which stream set each end.
    """
    _, started_last = max((f, t) for t, f, _ in spans)
    _, ended_first = min((la, t) for t, _, la in spans)
    return {
        "lost_before_s": round((grid_start - min(f for _, f, _ in spans)) / 1e9, 3),
        "lost_after_s": round((max(la for _, _, la in spans) - grid_end) / 1e9, 3),
        "started_last": started_last,
        "ended_first": ended_first,
    }


def clock_went_back(topic: str, key: str, dropped: int, kept: int) -> str | None:
    """Why a stream cannot be used when too many of its samples go back in time, else None.

    A glitch (a duplicate, one early stamp) drops a sample or two. A clock that steps back (an NTP
    correction, a restarted driver) makes every later sample "older", and a driver that publishes
    every message twice loses half: dropping them would silently lose recorded data.
    """
    if dropped <= max(MAX_OUT_OF_ORDER, OUT_OF_ORDER_FRACTION * (kept + dropped)):
        return None
    return (
        f"{topic} ('{key}'): {dropped} of {kept + dropped} samples are stamped no later than one before them and "
        "would be dropped: the messages are duplicated, or the clock went backwards (an NTP step, a restarted "
        "driver?). Fix the stamps, or split the bag where it happened"
    )


def plan_episode(index: BagIndex, mapping: Mapping, window: EpisodeWindow, instruction: str) -> EpisodePlan:
    """Align every mapped stream of ``index`` inside ``window`` to the fps grid."""
    for s in (*index.video.values(), *index.state.values(), *index.action.values()):
        why = clock_went_back(s.topic, s.key, s.out_of_order, len(s.times))
        if why:
            raise AlignmentError(why)
    w0, w1 = window.start_ns, window.end_ns
    video = {k: s.window(w0, w1) for k, s in index.video.items()}
    state = {k: s.window(w0, w1) for k, s in index.state.items()}
    action = {k: s.window(w0, w1) for k, s in index.action.items()}
    reason = None
    if index.missing_action_topics:
        reason = missing_actions_reason(index)
    elif any(len(s.times) == 0 for s in action.values()):
        reason = "no action messages in this episode: " + ", ".join(k for k, s in action.items() if len(s.times) == 0)
    required: list[Series] = list(video.values()) + list(state.values()) + ([] if reason else list(action.values()))
    empty = [f"{s.topic} ('{s.key}')" for s in required if len(s.times) == 0]
    if empty:
        raise AlignmentError(f"no messages inside the episode on: {', '.join(empty)}")
    grid = make_grid(required, mapping.fps)
    uses_next_state = not reason and any(a.next_state for a in mapping.action)
    if uses_next_state:
        grid = grid[:-1]  # the last frame has no next state to act towards
    if len(grid) < mapping.min_episode_frames:
        raise AlignmentError(
            f"episode has {len(grid)} frames at {mapping.fps} fps, "
            f"fewer than min_episode_frames={mapping.min_episode_frames}"
        )
    tol = mapping.tolerance_s
    reports: list[AlignReport] = []
    sync: dict[str, np.ndarray] = {"stamp_ns": grid}
    frames: dict[str, np.ndarray] = {}
    picked: dict[str, np.ndarray] = {}
    for key, s in video.items():
        idx, rep = align(s, grid, mapping.fps, tol)
        reports.append(rep)
        frames[key] = s.values[idx, 0].astype(np.int64)
        sync[f"video.{key}"] = s.times[idx]
    for role, group in (("state", state), ("action", {} if reason else action)):
        for key, s in group.items():
            idx, rep = align(s, grid, mapping.fps, tol)
            reports.append(rep)
            picked[f"{role}.{key}"] = s.values[idx]
            sync[f"{role}.{key}"] = s.times[idx]
    if uses_next_state:  # next_state actions read the state series one frame later
        next_grid = grid + round(mapping.period_ns)
        for a in mapping.action:
            if a.next_state:
                s = state[a.next_state]
                idx, rep = align(s, next_grid, mapping.fps, tol)
                rep.key = f"action.{a.key} (next {a.next_state})"
                reports.append(rep)
                picked[f"action.{a.key}"] = s.values[idx]
                sync[f"action.{a.key}"] = s.times[idx]
    if any(r.gaps for r in reports):
        raise AlignmentError(_fmt(reports, tol))
    n = len(grid)
    state_arr = np.concatenate([picked[f"state.{s.key}"] for s in mapping.state], axis=1) if mapping.state else None
    action_arr = None
    if mapping.action:
        if reason:
            width = sum(_action_width(mapping, a.key, index) for a in mapping.action)
            action_arr = np.full((n, width), np.nan)
        else:
            action_arr = np.concatenate([picked[f"action.{a.key}"] for a in mapping.action], axis=1)
    spans = [(s.topic, int(s.times[0]) - s.offset_ns, int(s.times[-1]) - s.offset_ns) for s in required]
    cover = coverage(spans, int(grid[0]), int(grid[-1]))
    return EpisodePlan(window, instruction, grid, frames, state_arr, action_arr, sync, reports, reason, cover)


def _action_width(mapping: Mapping, key: str, index: BagIndex) -> int:
    spec = next(a for a in mapping.action if a.key == key)
    if spec.next_state:
        return index.state[spec.next_state].values.shape[1]
    if key in index.action:
        return index.action[key].values.shape[1]
    assert spec.stream is not None
    return spec.stream.dim or 1


def column_layout(
    mapping: Mapping, index: BagIndex
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]], list[str], list[str]]:
    """[start, end) slices and per-dimension names of observation.state and action."""

    def names_of(key: str, spec_names: tuple[str, ...], width: int) -> list[str]:
        return list(spec_names) if spec_names else [f"{key}.{i}" for i in range(width)]

    state_slices, action_slices, state_names, action_names = {}, {}, [], []
    for s in mapping.state:
        width = index.state[s.key].values.shape[1]
        state_slices[s.key] = (len(state_names), len(state_names) + width)
        state_names += names_of(s.key, s.names, width)
    for a in mapping.action:
        width = _action_width(mapping, a.key, index)
        if a.next_state:
            src = next(s for s in mapping.state if s.key == a.next_state)
            names = names_of(a.key, src.names, width)
        else:
            assert a.stream is not None
            names = names_of(a.key, a.stream.names, width)
        action_slices[a.key] = (len(action_names), len(action_names) + width)
        action_names += names
    return state_slices, action_slices, state_names, action_names
