"""Single pass: a one-episode bag (``episodes.split: bag``) converted while pass 1 reads it.

The two-pass path keeps every stamp and low-dimensional sample of the bag, plans the episode
(``plan.py``), then reads the bag again for the frames. Here the grid is followed as the bag is
read: it starts at the latest first sample over the required streams, and tick ``k`` is final once
the grid's end (the earliest newest sample) has passed it and every key can name its nearest
sample. For a final tick each camera's nearest frame goes to the camera encoders and each key's
nearest sample becomes a row, spilled to disk in blocks. Only samples near the newest tick are
held, so memory stays flat in bag length.

The rules are the batch ones (``align.py``, ``streams.py``): samples whose stamp does not increase
are dropped, a newer action chunk replaces an older one from its first step on, ties go to the
earlier sample. What this path does not handle it hands back instead of guessing: chunks arriving
out of issue order, a gap beyond tolerance, a too-short episode, a stream lagging far behind, a
frame that does not decode. The caller then runs the two-pass path, which produces the dataset or
the error exactly as before. Tests convert bags both ways and compare the results.
"""

from __future__ import annotations

import shutil
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_policy.data.align import AlignReport
from dreamzero_policy.data.encode import CameraWorker, FrameDecoder, Target, decode_pool
from dreamzero_policy.data.layout import video_path
from dreamzero_policy.data.mapping import Mapping
from dreamzero_policy.data.plan import clock_went_back, coverage
from dreamzero_policy.data.streams import SeriesBuilder
from dreamzero_policy.data.video import VideoWriter

MAX_BUFFERED = 256  # camera messages held per camera waiting for the grid; more means a stream lags far behind
MAX_SAMPLES = 8192  # low-dimensional samples held per series, likewise
BLOCK_ROWS = 4096  # rows per block spilled to disk
NO_SAMPLE = -(2**63)  # "any sample": what a stream without one is waited for


class _Abandon(Exception):
    """This bag needs the two-pass path; the message says why."""


def _nearer(stamps: Sequence[int], right: int, query: int) -> int:
    """``right`` (the first stamp >= query, else the last) or the one before it, whichever is nearer.

    Ties go to the earlier one, as in ``align.nearest``.
    """
    left = max(right - 1, 0)
    return left if abs(query - stamps[left]) <= abs(stamps[right] - query) else right


class _Stamps:
    """Keeps a stream's stamps strictly increasing, as ``drop_non_increasing`` does, and counts both kinds."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None  # newest kept stamp
        self.kept = self.dropped = 0
        self.offset = 0  # ns: a sample at stamp t serves grid time t - offset (timed futures read one frame ahead)

    def keep(self, stamp: int) -> bool:
        if self.last is not None and stamp <= self.last:
            self.dropped += 1
            return False
        if self.first is None:
            self.first = stamp
        self.last = stamp
        self.kept += 1
        return True


class _Camera(_Stamps):
    """One camera topic: buffered messages (strictly increasing stamps), the frame of the current tick."""

    def __init__(self, topic: str, worker: CameraWorker, time_source: str = "header") -> None:
        super().__init__()
        self.topic, self.worker, self.time_source = topic, worker, time_source
        self.writers: list[tuple[str, VideoWriter]] = []  # (video key, its writer)
        self.frames: deque[tuple[int, int, Any]] = deque()  # (stamp, ordinal, raw)
        self.stamp = 0  # stamp of the frame selected for the current tick
        self.pending: tuple[int, Any, int] | None = None  # (ordinal, raw, repeat) not yet sent to the worker

    def add(self, stamp: int, ordinal: int, raw: Any) -> None:
        if self.keep(stamp):
            self.frames.append((stamp, ordinal, raw))

    def select(self, tick: int) -> tuple[int, Any] | None:
        """Nearest frame to ``tick`` (ties to the earlier one); returns (ordinal, raw) if it is a new frame."""
        frames = self.frames
        stamps = [f[0] for f in frames]  # a few frames: those newer than the previous tick's
        right = min(bisect_left(stamps, tick), len(stamps) - 1)
        for _ in range(_nearer(stamps, right, tick)):
            frames.popleft()  # later ticks never pick an earlier frame
        self.stamp, ordinal, raw = frames[0]
        if self.pending is not None and self.pending[0] == ordinal:
            self.pending = (ordinal, raw, self.pending[2] + 1)  # a held frame: encoded again, decoded once
            return None
        return ordinal, raw


class _Series(_Stamps):
    """One required low-dimensional series, fed by its builder: final samples in time order."""

    def __init__(self, builder: SeriesBuilder) -> None:
        super().__init__()
        self.key, self.topic = builder.spec.key, builder.spec.topic
        self.offset = builder.offset_ns
        self.time_source = "receive" if builder.receive_time else "header"
        self.times: deque[int] = deque()
        self.rows: deque[np.ndarray] = deque()
        self.ended = False
        self._pending: tuple[np.ndarray, np.ndarray, int] | None = None  # newest chunk: a later one may cut it

    def sample(self, stamp: int, row: np.ndarray) -> None:
        if not self.keep(stamp):
            return
        self.times.append(stamp)
        self.rows.append(row)
        if len(self.times) > MAX_SAMPLES:
            raise _Abandon(f"{self.topic}: over {MAX_SAMPLES} samples waiting for another stream to catch up")

    def chunk(self, times: np.ndarray, values: np.ndarray, issue_ns: int) -> None:
        if self._pending is not None:
            p_times, p_values, p_issue = self._pending
            if issue_ns < p_issue:
                raise _Abandon(f"{self.topic}: chunks arrive out of issue order")
            # The newer chunk replaces the older one from its first step on. Steps are in time order,
            # so what is kept is a prefix (a slice: boolean indexing of rows releases the GIL).
            keep = int(np.count_nonzero(p_times < times[0]))
            for t, row in zip(p_times[:keep].tolist(), p_values[:keep], strict=True):
                self.sample(t, row)
        self._pending = (times, values, issue_ns)

    def end(self) -> None:
        if self._pending is not None:
            for t, row in zip(self._pending[0].tolist(), self._pending[1], strict=True):
                self.sample(t, row)
            self._pending = None
        self.ended = True

    def nearest(self, query: int) -> int | None:
        """Index of the nearest final sample (ties to the earlier), or None while a nearer one may come."""
        times = self.times
        right = bisect_left(times, query)  # stamps are strictly increasing
        if right == len(times):
            if not self.ended or not times:
                return None
            right -= 1
        return _nearer(times, right, query)

    def prune(self, query: int) -> None:
        """Forget samples that no query at or after ``query`` can pick."""
        while len(self.times) > 1 and self.times[1] <= query:
            self.times.popleft()
            self.rows.popleft()


class _Sink:
    """What a builder feeds in streaming mode; turns the single pass's give-ups into ``abandon``."""

    def __init__(self, live: LiveConversion, series: _Series) -> None:
        self.live, self.series = live, series

    def sample(self, stamp: int, row: np.ndarray) -> None:
        if not self.live.abandoned:
            try:
                self.series.sample(stamp, row)
            except _Abandon as exc:
                self.live.abandon(str(exc))

    def chunk(self, times: np.ndarray, values: np.ndarray, issue_ns: int) -> None:
        if not self.live.abandoned:
            try:
                self.series.chunk(times, values, issue_ns)
            except _Abandon as exc:
                self.live.abandon(str(exc))


@dataclass
class _Column:
    """One dataset key read at every tick: where from, its sync stamp, its alignment report."""

    sync_key: str  # "video.<key>", "state.<key>", "action.<key>"
    report_key: str
    topic: str
    source: _Series | _Camera
    ahead_ns: int = 0  # next-state actions read the state one period later
    max_ns: int = 0
    sum_s: float = 0.0
    held: int = 0
    stamp: int = 0
    row: np.ndarray | None = None
    query: int = 0
    index: int = 0

    def account(self, stamp: int, query: int, fps: float, tolerance_s: float) -> None:
        err_ns = abs(stamp - query)
        err_s = err_ns / 1e9
        if err_s > tolerance_s + 1e-9:
            raise _Abandon(f"{self.topic} ('{self.report_key}'): a frame beyond the tolerance")
        self.stamp = stamp
        self.max_ns = max(self.max_ns, err_ns)
        self.sum_s += err_s
        self.held += err_s > 0.5 / fps + 1e-9

    def report(self, ticks: int) -> AlignReport:
        src = self.source
        return AlignReport(
            key=self.report_key,
            topic=self.topic,
            samples=src.kept,
            out_of_order=src.dropped,
            max_error_s=self.max_ns / 1e9,
            mean_error_s=self.sum_s / ticks if ticks else 0.0,
            held=self.held,
            time_source=src.time_source,
        )


class _RowSpill:
    """Per-tick rows (state, action, sync stamps) filled into one numpy block; full blocks go to disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[Path] = []
        self.block: dict[str, np.ndarray] = {}
        self.n = 0  # rows in ``block``

    def append(self, state: np.ndarray | None, action: np.ndarray | None, sync: np.ndarray) -> None:
        row = {"sync": sync, "state": state, "action": action}
        if not self.block:
            self.block = {k: np.empty((BLOCK_ROWS, len(v)), v.dtype) for k, v in row.items() if v is not None}
        for k, arr in self.block.items():
            arr[self.n] = row[k]
        self.n += 1
        if self.n == BLOCK_ROWS:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"rows_{len(self.files):05d}.npz"
            np.savez(path, **self.block)
            self.files.append(path)
            self.n = 0  # the block is reused: savez wrote a copy

    def blocks(self) -> Iterator[dict[str, np.ndarray]]:
        for path in self.files:
            with np.load(path) as data:
                yield {k: data[k] for k in data.files}
        if self.n:
            yield {k: v[: self.n] for k, v in self.block.items()}

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class LiveEpisode:
    """The single pass's episode: grid, reports, video sizes and the spilled rows."""

    grid_start: int
    grid_end: int
    length: int
    video_only: bool
    sizes: dict[str, tuple[int, int]]
    reports: list[AlignReport]
    sync_keys: list[str]
    spill: _RowSpill = field(repr=False)
    coverage: dict[str, Any] = field(default_factory=dict)  # plan.coverage()

    def blocks(self, action_width: int) -> Iterator[tuple[np.ndarray | None, np.ndarray | None, dict[str, np.ndarray]]]:
        """(state, action, sync) row blocks in frame order; a video-only episode gets NaN actions."""
        for b in self.spill.blocks():
            n = len(b["sync"])
            action = np.full((n, action_width), np.nan) if self.video_only and action_width else b.get("action")
            yield b.get("state"), action, {k: b["sync"][:, i] for i, k in enumerate(self.sync_keys)}

    def remove(self) -> None:
        """Delete the spilled rows (once the episode is written)."""
        self.spill.remove()


class LiveConversion:
    """Follows one episode's grid during pass 1: frames to the encoders, rows to a spill."""

    def __init__(
        self,
        bag: Any,
        mapping: Mapping,
        episode: int,
        stage: Path,
        decoders: dict[str, FrameDecoder],
        cores: int | None = None,
    ) -> None:
        self.bag, self.mapping = bag, mapping
        self.period = mapping.period_ns
        self._types = {t: info.msgtype for t, info in bag.topics().items()}
        self.cameras: dict[str, _Camera] = {}
        self._pool = decode_pool(len({v.topic for v in mapping.video}), cores)
        self.columns: list[_Column] = []
        for v in mapping.video:
            cam = self.cameras.get(v.topic)
            if cam is None:
                cam = self.cameras[v.topic] = _Camera(
                    v.topic,
                    CameraWorker(bag.path, v.topic, decoders[v.topic], self._pool),
                    "receive" if v.topic in mapping.receive_time_topics else "header",
                )
            size = (v.width, v.height) if v.width and v.height else None
            cam.writers.append(
                (v.key, VideoWriter(video_path(stage, episode, v.key), mapping.fps, mapping.video_encoding, size))
            )
            self.columns.append(_Column(f"video.{v.key}", v.key, v.topic, cam))
        self.series: list[_Series] = []
        self._series_columns: list[_Column] = []  # the columns read from series, in column order (set by require)
        self._prune_by: list[tuple[_Series, list[_Column]]] = []  # each series and the columns that read it
        self.video_only = False
        self.lag = 0
        self.spill = _RowSpill(stage / f".rows-{episode:06d}")
        self.start: int | None = None
        self.ticks = 0
        self.abandoned: str | None = None  # why the single pass gave up (the two-pass path will run)
        self._wait: tuple[_Stamps, int] | None = None  # no tick is final until this stream's newest stamp is here
        self.finished = False
        for cam in self.cameras.values():
            cam.worker.start()

    def require(self, builders: list[tuple[str, SeriesBuilder]], video_only: bool) -> None:
        """The series that take part besides the cameras: ("state" | "action", builder), in index order.

        Each builder then feeds its samples here instead of keeping them. ``next_state`` actions
        read the state one frame later, so the plan drops the last frame and a tick is final only
        once the next one is covered too.
        """
        self.video_only = video_only
        by_key: dict[tuple[str, str], _Series] = {}
        for role, b in builders:
            series = by_key[(role, b.spec.key)] = _Series(b)
            self.series.append(series)
            b.sink = _Sink(self, series)
        for role in ("state", "action"):  # batch order: state keys, then action keys, then next-state actions
            for (r, key), series in by_key.items():
                if r == role:
                    self.columns.append(_Column(f"{role}.{key}", key, series.topic, series))
        ahead = round(self.period)
        for a in self.mapping.action if not video_only else ():
            if a.next_state:
                series = by_key[("state", a.next_state)]
                name = f"action.{a.key} (next {a.next_state})"
                self.columns.append(_Column(f"action.{a.key}", name, series.topic, series, ahead_ns=ahead))
                self.lag = 1
        self._series_columns = [c for c in self.columns if isinstance(c.source, _Series)]
        self._prune_by = [(s, [c for c in self._series_columns if c.source is s]) for s in self.series]

    # -- feeding ----------------------------------------------------------------------------

    def camera(self, topic: str, ordinal: int, stamp: int, raw: Any) -> None:
        if self.abandoned:
            return
        cam = self.cameras[topic]
        cam.add(stamp, ordinal, raw)
        if len(cam.frames) > MAX_BUFFERED:
            if self.start is None:
                self._prune_before_start()
            if len(cam.frames) > MAX_BUFFERED:
                self.abandon(f"{topic}: over {MAX_BUFFERED} frames waiting for another stream to catch up")

    def advance(self) -> None:
        """Emit every tick that is now final."""
        if self.abandoned:
            return
        try:
            self._advance()
        except _Abandon as exc:
            self.abandon(str(exc))

    def _advance(self) -> None:
        if self._wait is not None:  # called for every message; most cannot move the grid
            stream, need = self._wait
            if stream.last is None or stream.last < need:
                return
            self._wait = None
        bounds = self._bounds()
        if bounds is None:
            return
        start, end, limit = bounds
        if self.start is None:
            self.start = start
        fps, tol = self.mapping.fps, self.mapping.tolerance_s
        while (end - self.start) / self.period + 1e-9 >= self.ticks + self.lag:
            tick = self.start + round(self.ticks * self.period)
            for c in self._series_columns:  # first make sure every key can decide
                c.query = tick + c.ahead_ns + c.source.offset
                index = c.source.nearest(c.query)
                if index is None:  # until a sample at or after the query arrives
                    self._wait = (c.source, c.query)
                    return
                c.index = index
            for cam in self.cameras.values():
                fresh = cam.select(tick)
                if fresh is not None:
                    self._flush(cam)
                    cam.pending = (*fresh, 1)
            if self.abandoned:  # a frame did not decode
                return
            for c in self.columns:
                if isinstance(c.source, _Camera):
                    c.account(c.source.stamp, tick, fps, tol)
                else:
                    c.account(c.source.times[c.index], c.query, fps, tol)
                    c.row = c.source.rows[c.index]
            for series, columns in self._prune_by:
                series.prune(min(c.query for c in columns))
            self._emit(tick)
            self.ticks += 1
        # The grid's end is the limiting stream's newest stamp; the next tick needs it this far.
        # Rounded down by a microsecond so that the loop's own float test decides the boundary.
        self._wait = (limit, self.start + int((self.ticks + self.lag - 1e-6) * self.period) - 1000 + limit.offset)

    def _emit(self, tick: int) -> None:
        rows = {c.sync_key: c.row for c in self.columns}
        state = np.concatenate([rows[f"state.{s.key}"] for s in self.mapping.state]) if self.mapping.state else None
        action = None
        if self.mapping.action and not self.video_only:
            action = np.concatenate([rows[f"action.{a.key}"] for a in self.mapping.action])  # type: ignore[misc]
        sync = np.array([tick, *(c.stamp for c in self.columns)], np.int64)
        self.spill.append(state, action, sync)

    def _bounds(self) -> tuple[int, int, _Stamps] | None:
        """(grid start, newest time every stream covers, the stream that sets it).

        None until every stream has a final sample.
        """
        first, last, limit = None, None, None
        for src in (*self.cameras.values(), *self.series):
            if src.first is None or src.last is None:
                self._wait = (src, NO_SAMPLE)
                return None
            if first is None or src.first - src.offset > first:
                first = src.first - src.offset
            if last is None or src.last - src.offset < last:
                last, limit = src.last - src.offset, src
        assert first is not None and last is not None and limit is not None
        return first, last, limit

    def _prune_before_start(self) -> None:
        """Drop frames that can never be nearest: the grid starts at or after every started stream's first."""
        known = [c.first for c in self.cameras.values() if c.first is not None]
        known += [s.first - s.offset for s in self.series if s.first is not None]
        lower = max(known)
        for cam in self.cameras.values():
            while len(cam.frames) > 1 and cam.frames[1][0] <= lower:
                cam.frames.popleft()

    def _flush(self, cam: _Camera) -> None:
        if cam.pending is None:
            return
        ordinal, raw, repeat = cam.pending
        cam.pending = None
        try:
            msg = self.bag.deserialize(raw, self._types[cam.topic])
            cam.worker.put(ordinal, msg, [Target(w, repeat) for _, w in cam.writers])
        except Exception as exc:  # a bad frame: the two-pass path reports it with the usual context
            self.abandon(f"{cam.topic} message #{ordinal}: {exc}")

    def abandon(self, why: str) -> None:
        if self.abandoned is None:
            self.abandoned = why
        for cam in self.cameras.values():
            cam.frames.clear()
            cam.pending = None
        for s in self.series:
            s.times.clear()
            s.rows.clear()

    # -- outcome ----------------------------------------------------------------------------

    def finish(self) -> LiveEpisode | None:
        """After pass 1: emit the last ticks, close the videos and return the episode.

        Returns None when the two-pass path has to run (``self.abandoned`` says why); the videos
        and rows written so far are then deleted.
        """
        if self.finished:
            raise RuntimeError("LiveConversion.finish called twice")
        self.finished = True
        if not self.abandoned:
            for s in self.series:
                s.end()
            self._wait = None  # an ended series can decide ticks it could not before
            self.advance()
        if not self.abandoned:
            for c in self.columns:  # the two-pass path reports it as the episode's error
                why = clock_went_back(c.topic, c.report_key, c.source.dropped, c.source.kept)
                if why:
                    self.abandon(why)
                    break
        if not self.abandoned and self.start is None:
            self.abandon("a required stream has no samples")
        if not self.abandoned and self.ticks < max(self.mapping.min_episode_frames, 1):
            self.abandon(f"only {self.ticks} frames")
        if not self.abandoned:
            for cam in self.cameras.values():
                self._flush(cam)
        for cam in self.cameras.values():
            cam.worker.stop(cancel=self.abandoned is not None)
            if cam.worker.error is not None:
                self.abandon(str(cam.worker.error))
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        sizes: dict[str, tuple[int, int]] = {}
        writers = [kw for cam in self.cameras.values() for kw in cam.writers]
        if not self.abandoned:
            try:
                for key, w in writers:
                    w.close()
                    if w.frames != self.ticks:
                        raise RuntimeError(f"{w.path.name}: wrote {w.frames} frames, expected {self.ticks}")
                    if w.frame_size is not None:
                        sizes[key] = w.frame_size
            except Exception as exc:
                self.abandon(str(exc))
        if self.abandoned:
            for _, w in writers:
                w.abort()
                w.path.unlink(missing_ok=True)
            self.spill.remove()
            return None
        assert self.start is not None
        grid_end = self.start + round((self.ticks - 1) * self.period)
        spans = []
        for src in (*self.cameras.values(), *self.series):
            assert src.first is not None and src.last is not None
            spans.append((src.topic, src.first - src.offset, src.last - src.offset))
        return LiveEpisode(
            grid_start=self.start,
            grid_end=grid_end,
            length=self.ticks,
            video_only=self.video_only,
            sizes=sizes,
            reports=[c.report(self.ticks) for c in self.columns],
            sync_keys=["stamp_ns", *(c.sync_key for c in self.columns)],
            spill=self.spill,
            coverage=coverage(spans, self.start, grid_end),
        )

    def discard(self) -> None:
        """Stop the workers and delete what was written (conversion of this bag failed)."""
        if not self.finished:
            self.abandon("conversion failed")
            self.finish()
        self.spill.remove()
