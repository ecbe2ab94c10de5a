"""Episode boundaries and instructions: one bag, an instruction topic, or RunTask goals.

* ``bag``: the whole bag is one episode.
* ``instruction_topic``: each ``std_msgs/String`` starts an episode with that text; values in
  ``end_values`` (``""``, ``idle``, ``reset``...) end it without starting another; repeats of the
  same text (latched or periodic republishing) continue the current episode.
* ``run_task``: an ``action_msgs/GoalStatusArray`` topic (``/<action>/_action/status``). A goal
  spans from its first EXECUTING status to its terminal status; SUCCEEDED marks ``success``.

Boundaries are bag receive times (String/GoalStatusArray have no header) compared with the
samples' header stamps. Both are ROS time on the recording machine, unless the robot ran on sim
time and the recorder on the wall clock: then (clocks more than a second apart) the boundaries are
moved onto the header clock through a camera's (receive time, header stamp) pairs
(:func:`receive_to_header`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamzero_policy.core.errors import MappingError
from dreamzero_policy.data.mapping import Mapping

EXECUTING, SUCCEEDED, CANCELED, ABORTED = 2, 4, 5, 6
TERMINAL = {SUCCEEDED: "succeeded", CANCELED: "canceled", ABORTED: "aborted"}


@dataclass(frozen=True)
class EpisodeWindow:
    """[start_ns, end_ns) in ROS time; ``None`` = open-ended."""

    start_ns: int | None
    end_ns: int | None
    instruction: str | None
    outcome: str | None = None  # run_task: succeeded / canceled / aborted / unfinished


SAME_CLOCK_S = 1.0  # receive times and header stamps closer than this (median) share one clock


def receive_to_header(times: list[int], receive: np.ndarray, header: np.ndarray) -> list[int] | None:
    """``times`` (receive times) on the header clock, or None when both are one clock already.

    ``receive``/``header``: one stamped topic's messages, in bag order. The offset between the clocks
    is interpolated between messages (sim time may run slower than the wall clock) and held beyond
    the first and last one.
    """
    if len(receive) == 0:
        return None
    offset = (header - receive).astype(np.float64)
    if abs(float(np.median(offset))) < SAME_CLOCK_S * 1e9:
        return None
    base = int(receive[0])
    at = np.interp(np.asarray(times, np.int64) - base, receive - base, offset)
    return [t + round(o) for t, o in zip(times, at.tolist(), strict=True)]


def from_instruction_topic(events: list[tuple[int, str]], end_values: tuple[str, ...]) -> list[EpisodeWindow]:
    """``events`` = (receive time ns, text) in time order."""
    out: list[EpisodeWindow] = []
    current: tuple[int, str] | None = None
    for t, text in events:
        if current is not None and text == current[1]:
            continue
        if current is not None:
            out.append(EpisodeWindow(current[0], t, current[1]))
            current = None
        if text.strip() not in end_values:
            current = (t, text.strip())
    if current is not None:
        out.append(EpisodeWindow(current[0], None, current[1]))
    return out


def from_run_task(events: list[tuple[int, bytes, int]]) -> list[EpisodeWindow]:
    """``events`` = (receive time ns, goal uuid, status) in time order, one per status entry."""
    start: dict[bytes, int] = {}
    end: dict[bytes, tuple[int, str]] = {}
    for t, goal, status in events:
        if status == EXECUTING and goal not in start:
            start[goal] = t
        elif status in TERMINAL and goal in start and goal not in end:
            end[goal] = (t, TERMINAL[status])
    windows = []
    for goal, t0 in sorted(start.items(), key=lambda kv: kv[1]):
        t1, outcome = end.get(goal, (None, "unfinished"))
        windows.append(EpisodeWindow(t0, t1, None, outcome))
    return windows


def resolve_instruction(
    window: EpisodeWindow, mapping: Mapping, bag_dir: Path, topic_events: list[tuple[int, str]], override: str | None
) -> str:
    """The episode's instruction: CLI override > split text > mapping text/file/topic. Never empty."""
    text = override or window.instruction
    spec = mapping.instruction
    if not text and spec.text:
        text = spec.text
    if not text and spec.file:
        path = bag_dir / spec.file if bag_dir.is_dir() else bag_dir.parent / spec.file
        if not path.is_file():
            raise MappingError(f"instruction file {path} does not exist")
        text = path.read_text().strip()
    if not text and spec.topic:
        # The latest instruction published before the episode ends (or the bag ends).
        candidates = [s for t, s in topic_events if window.end_ns is None or t < window.end_ns]
        text = candidates[-1].strip() if candidates else None
    if not text:
        raise MappingError(
            f"{bag_dir}: episode starting at {window.start_ns} has no instruction; set instruction.text/file/topic "
            "in the mapping or pass --instruction"
        )
    return text
