"""Turning low-dimensional messages into timed series: (N,) int64 ns stamps + (N, D) float64 values.

Supported message types (chosen by the bag's type for the topic, not by the mapping):

* ``sensor_msgs/msg/JointState``: joints by name, ``field`` position/velocity/effort, header stamp.
* ``dreamzero_msgs/msg/ActionChunk``: columns by name; step i is timed ``stamp + (i+1)*step_duration``.
* ``trajectory_msgs/msg/JointTrajectory``: joints by name; point p at ``stamp + time_from_start``
  (a zero stamp means "now" to a controller, so the receive time is used instead).
* ``std_msgs/msg/Float64MultiArray`` / ``Float32MultiArray`` (by ``indices``) and ``Float64`` /
  ``Float32`` (scalar): no header, so the bag's receive time is used.

Chunks and trajectories are *timed futures*: a newer one replaces the steps of an older one from
its own first step on (the controller's replace semantics), which flattens them into one series.
Samples whose stamp does not increase (time going backwards, duplicates) are dropped and counted;
more than a glitch's worth (``plan.clock_went_back``) fails the episode instead of losing data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dreamzero_policy.core.errors import DatasetError, MappingError
from dreamzero_policy.data.cdr import JointStateFields
from dreamzero_policy.data.mapping import StreamSpec

TIMED_TYPES = ("dreamzero_msgs/msg/ActionChunk", "trajectory_msgs/msg/JointTrajectory")
DIRECT_TYPES = (
    "sensor_msgs/msg/JointState",
    "std_msgs/msg/Float64MultiArray",
    "std_msgs/msg/Float32MultiArray",
    "std_msgs/msg/Float64",
    "std_msgs/msg/Float32",
)
SUPPORTED_TYPES = TIMED_TYPES + DIRECT_TYPES


@dataclass
class Series:
    """A cleaned, strictly increasing time series for one dataset key."""

    key: str
    topic: str
    times: np.ndarray  # (N,) int64 ns
    values: np.ndarray  # (N, D) float64
    out_of_order: int  # samples dropped because their stamp did not increase
    time_source: str  # "header" or "receive"
    timed: bool  # True for chunk/trajectory futures
    offset_ns: int = 0  # frame k is read at grid time + offset_ns

    def window(self, start: int | None, end: int | None) -> Series:
        lo = 0 if start is None else int(np.searchsorted(self.times, start, "left"))
        hi = len(self.times) if end is None else int(np.searchsorted(self.times, end, "left"))
        return Series(
            self.key,
            self.topic,
            self.times[lo:hi],
            self.values[lo:hi],
            self.out_of_order,
            self.time_source,
            self.timed,
            self.offset_ns,
        )


def unstamped_error(topic: str, count: int) -> DatasetError:
    """The error for a topic whose header stamps are all zero (its publisher never sets them)."""
    return DatasetError(
        f"{topic}: all {count} header stamps are 0 (the publisher does not stamp its messages), so they cannot "
        f"be aligned; add {topic} to the mapping's receive_time_topics to use the time the recorder received them"
    )


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _select(spec: StreamSpec, names: list[str], where: str, none_ok: bool = False) -> np.ndarray | None:
    """Column indices of ``spec``'s joints in ``names``; None if ``none_ok`` and none of them is there."""
    if not spec.names:
        raise MappingError(f"'{spec.key}': {where} carries named joints; list 'names' in the mapping")
    index = {n: i for i, n in enumerate(names)}
    picked, missing = [], []
    for k, name in enumerate(spec.names):
        # A joint may appear under its name or (chunks, trajectories) under a robot-profile alias.
        candidates = (name, *(spec.alt_names[k] if spec.alt_names else ()))
        hit = next((index[c] for c in candidates if c in index), None)
        if hit is None:
            missing.append(" / ".join(candidates))
        picked.append(hit)
    if none_ok and len(missing) == len(spec.names):
        return None
    if missing:
        raise MappingError(f"'{spec.key}': joints {missing} not in {where} (it has {names})")
    return np.array(picked, dtype=np.intp)


def _all_finite(row: np.ndarray) -> bool:
    """``np.isfinite(row).all()`` for one message's row, in a tenth of the time (JointStates come at
    100s of Hz): a NaN or infinity makes the sum non-finite, and a sum that overflowed is checked
    element by element."""
    return math.isfinite(sum(row.tolist())) or bool(np.isfinite(row).all())


def drop_non_increasing(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep samples whose stamp exceeds every earlier kept stamp; return the drop count."""
    if len(times) == 0:
        return times, values, 0
    keep = np.empty(len(times), bool)
    keep[0] = True
    keep[1:] = times[1:] > np.maximum.accumulate(times)[:-1]
    if keep.all():  # the usual case: no copy of a long bag's series
        return times, values, 0
    return times[keep], values[keep], int((~keep).sum())


class RowStore:
    """Rows of one width with their int64 stamps, appended into fixed-size numpy blocks.

    A hot topic (JointState at 100-1000 Hz) adds one small row per message; as separate arrays each row
    would carry ~100 bytes of object overhead on top of its values, which dominated pass 1's memory.
    """

    BLOCK = 4096

    def __init__(self) -> None:
        self._values: list[np.ndarray] = []
        self._stamps: list[np.ndarray] = []
        self._n = 0
        self.width: int | None = None

    def __len__(self) -> int:
        return self._n

    def append(self, stamp: int, row: np.ndarray) -> None:
        if self.width is None:
            self.width = int(row.size)
        i = self._n % self.BLOCK
        if i == 0:
            self._values.append(np.empty((self.BLOCK, self.width), np.float64))
            self._stamps.append(np.empty(self.BLOCK, np.int64))
        self._values[-1][i] = row
        self._stamps[-1][i] = stamp
        self._n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(stamps (N,), values (N, width))."""
        return np.concatenate(self._stamps)[: self._n], np.concatenate(self._values)[: self._n]


class SampleSink(Protocol):
    """Receives a builder's samples as they arrive (scaled, checked) instead of the builder keeping them."""

    def sample(self, stamp: int, row: np.ndarray) -> None: ...

    def chunk(self, times: np.ndarray, values: np.ndarray, issue_ns: int) -> None: ...


class _Discard:
    def sample(self, stamp: int, row: np.ndarray) -> None:
        pass

    def chunk(self, times: np.ndarray, values: np.ndarray, issue_ns: int) -> None:
        pass


DISCARD: SampleSink = _Discard()  # for a series nobody reads (actions of a video-only episode)


class SeriesBuilder:
    """Accumulates one key's samples from deserialised messages of one topic."""

    def __init__(self, spec: StreamSpec, msgtype: str, period_ns: float, receive_time: bool = False) -> None:
        if msgtype not in SUPPORTED_TYPES:
            raise MappingError(f"'{spec.key}': topic {spec.topic} has type {msgtype}; supported: {SUPPORTED_TYPES}")
        self.spec, self.msgtype = spec, msgtype
        self.timed = msgtype in TIMED_TYPES
        # std_msgs have no header; other topics only when the mapping lists them in receive_time_topics.
        self.receive_time = receive_time or msgtype.startswith("std_msgs/")
        self.messages = self.unstamped = 0  # header-timed messages, and those whose header stamp is zero
        default_offset = period_ns if self.timed else 0.0
        # Timed futures are queried one frame ahead: the action at frame k is the command for
        # frame k+1, the same meaning as ``next_state`` actions.
        self.offset_ns = round(default_offset if spec.time_offset_s is None else spec.time_offset_s * 1e9)
        # Robot-profile unit conversion (deg -> rad, gripper -> 0..1) applies to what the robot's
        # driver publishes; ActionChunks are model outputs already in dataset units.
        wire = bool(spec.wire_scale) and msgtype != "dreamzero_msgs/msg/ActionChunk"
        self._scale = np.asarray(spec.wire_scale, np.float64) * spec.scale if wire else spec.scale
        self._offset = np.asarray(spec.wire_offset, np.float64) * spec.scale + spec.offset if wire else spec.offset
        self._identity = not wire and spec.scale == 1.0 and spec.offset == 0.0  # the usual case: rad in, rad out
        self._times: list[np.ndarray] = []  # timed futures: one block per message
        self._values: list[np.ndarray] = []
        self._issue: list[int] = []
        self._rows = RowStore()  # direct types: one row per message
        self._cache: tuple[list[str], np.ndarray | None] | None = None  # the last name list and its columns
        self._known: dict[tuple[str, ...], np.ndarray | None] = {}  # every name list seen (a few publishers)
        self.used = self.skipped = 0  # JointStates with this key's joints, and those with none of them
        self._skipped_names: list[str] = []
        self.width: int | None = None  # columns per sample, once one was seen
        self._picks: tuple[np.ndarray, tuple[int, ...], np.ndarray] | None = None  # see _columns
        self._steps = np.arange(1, 2, dtype=np.int64)  # 1..horizon of the last ActionChunk
        # Set by the single-pass path (live.py): samples go to it as they arrive instead of being kept.
        self.sink: SampleSink | None = None

    def _indices(self, names: Any, where: str, none_ok: bool = False) -> np.ndarray | None:
        # Names rarely change within a publisher's messages; a list comparison is cheaper than
        # re-indexing, and the CDR parser hands over the very same list while they do not change.
        cache = self._cache
        if cache is None or (cache[0] is not names and cache[0] != names):
            listed = names if isinstance(names, list) else list(names)
            key = tuple(listed)
            if key not in self._known:
                if len(self._known) >= 64:  # names that keep changing: do not grow without bound
                    self._known.clear()
                self._known[key] = _select(self.spec, listed, where, none_ok)
            self._cache = cache = (listed, self._known[key])
        return cache[1]

    def _stamp(self, header_ns: int, log_time_ns: int) -> int:
        if self.receive_time:
            return log_time_ns
        self.messages += 1
        self.unstamped += header_ns == 0
        return header_ns

    def add_joint_state(self, js: JointStateFields, log_time_ns: int) -> None:
        """A JointState read by the CDR parser (``cdr.py``); the same as ``add`` of the message."""
        self._joint_state(js.stamp_ns, log_time_ns, js.names, getattr(js, self.spec.field))

    def _joint_state(self, header_ns: int, log_time_ns: int, names: Any, arr: Any) -> None:
        # Hot path (100s of Hz): keep a selected row and the stamp; checks and scaling are
        # vectorised in finish().
        # Several drivers may share a topic (an arm's and a gripper's JointStates on /joint_states):
        # a message with none of this key's joints belongs to another one. Some but not all is an error.
        idx = self._indices(names, f"{self.spec.topic} (JointState)", none_ok=True)
        if idx is None:
            self.skipped += 1
            self._skipped_names = list(names)
            return
        if len(arr) != len(names):
            raise DatasetError(
                f"{self.spec.topic}: JointState {self.spec.field} has {len(arr)} values for {len(names)} names"
            )
        self.used += 1
        self._direct_sample(self._stamp(header_ns, log_time_ns), np.asarray(arr, dtype=np.float64)[idx])

    def add(self, msg: Any, log_time_ns: int) -> None:
        spec, t = self.spec, self.msgtype
        if t == "sensor_msgs/msg/JointState":
            self._joint_state(stamp_ns(msg.header.stamp), log_time_ns, msg.name, getattr(msg, spec.field))
        elif t == "dreamzero_msgs/msg/ActionChunk":
            idx = self._indices(msg.names, f"{spec.topic} (ActionChunk)")
            h, d = int(msg.horizon), len(msg.names)
            data = np.asarray(msg.data, dtype=np.float64)
            if data.size != h * d:
                raise DatasetError(
                    f"{spec.topic}: ActionChunk {msg.chunk_id} has {data.size} values, horizon*names = {h}*{d}"
                )
            step = stamp_ns(msg.step_duration)
            if step <= 0:
                raise DatasetError(f"{spec.topic}: ActionChunk {msg.chunk_id} has a non-positive step_duration")
            t0 = self._stamp(stamp_ns(msg.header.stamp), log_time_ns)
            if len(self._steps) != h:
                self._steps = np.arange(1, h + 1, dtype=np.int64)
            self._push(t0 + step * self._steps, self._columns(data.reshape(h, d), idx), t0)
        elif t == "trajectory_msgs/msg/JointTrajectory":
            idx = self._indices(msg.joint_names, f"{spec.topic} (JointTrajectory)")
            # A zero stamp means "now" to a trajectory controller: the receive time is that moment.
            t0 = log_time_ns if self.receive_time else (stamp_ns(msg.header.stamp) or log_time_ns)
            fld = {"position": "positions", "velocity": "velocities", "effort": "effort"}[spec.field]
            pts = [np.asarray(getattr(p, fld), dtype=np.float64) for p in msg.points]
            if not pts or any(p.size != len(msg.joint_names) for p in pts):
                raise DatasetError(f"{spec.topic}: JointTrajectory without {fld} for every joint in every point")
            times = np.array([t0 + stamp_ns(p.time_from_start) for p in msg.points], dtype=np.int64)
            self._push(times, self._columns(np.stack(pts), idx), t0)
        else:  # std_msgs arrays and scalars
            arr = np.atleast_1d(np.array(msg.data, dtype=np.float64))  # a copy: never a view of the bag's bytes
            if spec.indices:
                if max(spec.indices) >= arr.size:
                    raise MappingError(
                        f"'{spec.key}': index {max(spec.indices)} out of range for {arr.size} values on {spec.topic}"
                    )
                arr = arr[list(spec.indices)]
            if self.width is not None and arr.size != self.width:
                raise DatasetError(f"{spec.topic}: '{spec.key}' changed width {self.width} -> {arr.size}")
            self._direct_sample(log_time_ns, arr)

    def _columns(self, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``values[:, idx]`` (a copy), through a flat 1-D index kept while shape and columns repeat.

        NumPy releases the GIL inside 2-D fancy indexing and ``arange``; on the reading thread each
        release means waiting to get it back from the encoder threads, which cost more than the
        selection itself. A 1-D gather keeps the GIL.
        """
        picks = self._picks
        if picks is None or picks[0] is not idx or picks[1] != values.shape:
            rows, width = values.shape
            flat = (np.arange(rows, dtype=np.intp)[:, None] * width + idx).reshape(-1)
            picks = self._picks = (idx, values.shape, flat)
        return np.ascontiguousarray(values).reshape(-1)[picks[2]].reshape(values.shape[0], len(idx))

    def _direct_sample(self, stamp: int, row: np.ndarray) -> None:
        self.width = row.size
        if self.sink is None:
            self._rows.append(stamp, row)  # checked and scaled in bulk by _direct()
            return
        if not _all_finite(row):  # the same error _direct() raises at the end of a kept series
            raise DatasetError(f"{self.spec.topic}: non-finite value for '{self.spec.key}' at stamp {stamp} ns")
        # ``row`` is the builder's own (a selection of the message's values), so it can be passed on.
        self.sink.sample(stamp, row if self._identity else row * self._scale + self._offset)

    def _direct(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The per-message rows as one (N,) stamp and one (N, D) value block, checked and scaled."""
        times, values = self._rows.arrays()
        self._rows = RowStore()  # the blocks are copied into ``values``; free them before scaling
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            first = int(np.argmax(bad))
            raise DatasetError(
                f"{self.spec.topic}: non-finite value for '{self.spec.key}' at stamp {int(times[first])} ns"
            )
        values *= self._scale
        values += self._offset
        return [times], [values]

    def _push(self, times: np.ndarray, values: np.ndarray, issue_ns: int) -> None:
        if not np.isfinite(values).all():
            raise DatasetError(f"{self.spec.topic}: non-finite value for '{self.spec.key}' at stamp {int(times[0])} ns")
        if self.width is not None and values.shape[1] != self.width:
            raise DatasetError(f"{self.spec.topic}: '{self.spec.key}' changed width {self.width} -> {values.shape[1]}")
        self.width = values.shape[1]
        if self.sink is not None:
            self.sink.chunk(times.astype(np.int64), values * self._scale + self._offset, issue_ns)
            return
        self._times.append(times.astype(np.int64))
        self._values.append(values * self._scale + self._offset)
        self._issue.append(issue_ns)

    def finish(self) -> Series:
        if self.skipped and not self.used:
            raise MappingError(
                f"'{self.spec.key}': none of the {self.skipped} JointStates on {self.spec.topic} has joints "
                f"{list(self.spec.names)} (they have {self._skipped_names})"
            )
        if self.messages > 1 and self.unstamped == self.messages:
            raise unstamped_error(self.spec.topic, self.messages)
        if len(self._rows):
            self._times, self._values = self._direct()
        if not self._times:
            width = self.width or self.spec.dim or 1
            return Series(
                self.spec.key,
                self.spec.topic,
                np.zeros(0, np.int64),
                np.zeros((0, width)),
                0,
                "receive" if self.receive_time else "header",
                self.timed,
                self.offset_ns,
            )
        order = np.argsort(np.array(self._issue), kind="stable") if self.timed else range(len(self._times))
        times_l = [self._times[i] for i in order]
        values_l = [self._values[i] for i in order]
        if self.timed:  # a newer future replaces an older one from its own first step on
            for i in range(len(times_l) - 1):
                keep = times_l[i] < times_l[i + 1][0]
                times_l[i], values_l[i] = times_l[i][keep], values_l[i][keep]
        if len(times_l) == 1:  # direct types: one block already
            times, values = times_l[0], values_l[0]
        else:
            times, values = np.concatenate(times_l), np.concatenate(values_l)
        times, values, dropped = drop_non_increasing(times, values)
        return Series(
            self.spec.key,
            self.spec.topic,
            times,
            values,
            dropped,
            "receive" if self.receive_time else "header",
            self.timed,
            self.offset_ns,
        )
