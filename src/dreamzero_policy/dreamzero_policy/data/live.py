"""Single-pass video: encode the camera frames while pass 1 reads the bag (``episodes.split: bag``).

Pass 2 reads the whole bag a second time, which alone costs about as much as the raw read. When
the bag is one episode the grid can be followed while pass 1 runs: it starts at the latest first
sample over the required streams, and tick ``k`` is final once every required stream has a sample
at or after it (one tick later when actions read the next state). Each camera's nearest frame to a
final tick then goes to the same camera workers pass 2 uses.

The batch plan (``plan.py``) stays the only source of truth. After pass 1 the streamed selection
is compared with the plan's; on any difference (stamps that are not monotonic, a chunk replacing
an earlier one, gaps, a bad frame...) the streamed videos are deleted and pass 2 runs as before,
so this path can make conversion faster but never different.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_policy.data.encode import CameraWorker, FrameDecoder, Target, decode_pool
from dreamzero_policy.data.layout import video_path
from dreamzero_policy.data.mapping import Mapping
from dreamzero_policy.data.plan import EpisodePlan
from dreamzero_policy.data.streams import SeriesBuilder
from dreamzero_policy.data.video import VideoWriter

MAX_BUFFERED = 256  # camera messages held per camera waiting for the grid; more means a stream lags far behind


@dataclass
class _Camera:
    """One camera topic: its buffered messages (strictly increasing stamps) and what was selected."""

    topic: str
    writers: list[tuple[str, VideoWriter]]  # (video key, its writer)
    worker: CameraWorker
    frames: deque[tuple[int, int, Any]] = field(default_factory=deque)  # (stamp, ordinal, raw)
    last_stamp: int | None = None  # newest kept stamp (older or equal ones are dropped, like pass 1)
    first_stamp: int | None = None
    selected: array[int] = field(default_factory=lambda: array("q"))  # ordinal per emitted tick (compact)
    pending: tuple[int, Any, int] | None = None  # (ordinal, raw, repeat) not yet sent to the worker


class LiveVideo:
    """Follows one episode's grid during pass 1 and streams the selected frames to the encoders."""

    def __init__(
        self,
        bag: Any,
        mapping: Mapping,
        episode: int,
        stage: Path,
        decoders: dict[str, FrameDecoder],
    ) -> None:
        self.bag, self.mapping, self.episode = bag, mapping, episode
        self.period = mapping.period_ns
        self.lag = 0
        self.series: list[SeriesBuilder] = []
        self._types = {t: info.msgtype for t, info in bag.topics().items()}
        self.cameras: dict[str, _Camera] = {}
        self._pool = decode_pool(len({v.topic for v in mapping.video}))
        for v in mapping.video:
            size = (v.width, v.height) if v.width and v.height else None
            w = VideoWriter(video_path(stage, episode, v.key), mapping.fps, mapping.video_encoding, size)
            cam = self.cameras.get(v.topic)
            if cam is None:
                worker = CameraWorker(bag.path, v.topic, decoders[v.topic], self._pool)
                cam = self.cameras[v.topic] = _Camera(v.topic, [], worker)
            cam.writers.append((v.key, w))
        self.start: int | None = None
        self.ticks = 0
        self.abandoned: str | None = None  # why the live path gave up (pass 2 will run)
        self.finished = False
        for cam in self.cameras.values():
            cam.worker.start()

    def require(self, builders: list[SeriesBuilder], next_state: bool) -> None:
        """The series that bound the grid besides the cameras (state, and actions unless video-only).

        With ``next_state`` actions the plan drops the last frame (it has no next state), so a tick
        is final only once the one after it is covered.
        """
        self.series = list(builders)
        self.lag = 1 if next_state else 0

    # -- feeding ----------------------------------------------------------------------------

    def camera(self, topic: str, ordinal: int, stamp: int, raw: Any) -> None:
        cam = self.cameras[topic]
        if self.abandoned or (cam.last_stamp is not None and stamp <= cam.last_stamp):
            return  # dropped as out of order, exactly as pass 1 drops it
        cam.last_stamp = stamp
        if cam.first_stamp is None:
            cam.first_stamp = stamp
        cam.frames.append((stamp, ordinal, raw))
        if len(cam.frames) > MAX_BUFFERED:
            if self.start is None:
                self._prune_before_start()
            if len(cam.frames) > MAX_BUFFERED:
                self.abandon(f"{topic}: over {MAX_BUFFERED} frames waiting for another stream to catch up")

    def advance(self) -> None:
        """Emit every tick that is now final."""
        if self.abandoned:
            return
        bounds = self._bounds()
        if bounds is None:
            return
        start, end = bounds
        if self.start is None:
            self.start = start
        elif start != self.start:
            self.abandon("a stream's first sample changed after the grid started")
            return
        while (end - self.start) / self.period + 1e-9 >= self.ticks + self.lag:
            tick = self.start + round(self.ticks * self.period)
            for cam in self.cameras.values():
                self._select(cam, tick)
            self.ticks += 1
            if self.abandoned:
                return

    def _bounds(self) -> tuple[int, int] | None:
        """(grid start, newest time every stream covers), or None until every stream has started."""
        firsts, lasts = [], []
        for cam in self.cameras.values():
            if cam.first_stamp is None or cam.last_stamp is None:
                return None
            firsts.append(cam.first_stamp)
            lasts.append(cam.last_stamp)
        for b in self.series:
            if b.first_ns is None or b.last_ns is None:
                return None
            firsts.append(b.first_ns - b.offset_ns)
            lasts.append(b.last_ns - b.offset_ns)
        return max(firsts), min(lasts)

    def _prune_before_start(self) -> None:
        """Drop frames that can never be nearest: the grid starts at or after every started stream's first."""
        known = [c.first_stamp for c in self.cameras.values() if c.first_stamp is not None]
        known += [b.first_ns - b.offset_ns for b in self.series if b.first_ns is not None]
        lower = max(known)
        for cam in self.cameras.values():
            while len(cam.frames) > 1 and cam.frames[1][0] <= lower:
                cam.frames.popleft()

    def _select(self, cam: _Camera, tick: int) -> None:
        """Nearest kept frame to ``tick`` (ties to the earlier one), as ``align.nearest`` picks it."""
        frames = cam.frames
        right = next((i for i, f in enumerate(frames) if f[0] >= tick), None)
        if right is None:  # cannot happen while the camera's newest stamp bounds the grid
            self.abandon(f"{cam.topic}: no frame at or after a final tick")
            return
        left = max(right - 1, 0)
        pick = left if tick - frames[left][0] <= frames[right][0] - tick else right
        for _ in range(pick):
            frames.popleft()  # later ticks never pick an earlier frame
        _, ordinal, raw = frames[0]
        cam.selected.append(ordinal)
        if cam.pending is not None and cam.pending[0] == ordinal:
            cam.pending = (ordinal, raw, cam.pending[2] + 1)  # a held frame: encoded again, decoded once
            return
        self._flush(cam)
        cam.pending = (ordinal, raw, 1)

    def _flush(self, cam: _Camera) -> None:
        if cam.pending is None:
            return
        ordinal, raw, repeat = cam.pending
        cam.pending = None
        try:
            msg = self.bag.deserialize(raw, self._types[cam.topic])
            cam.worker.put(ordinal, msg, [Target(w, repeat) for _, w in cam.writers])
        except Exception as exc:  # a bad frame: pass 2 reports it with the usual context
            self.abandon(f"{cam.topic} message #{ordinal}: {exc}")

    def abandon(self, why: str) -> None:
        if self.abandoned is None:
            self.abandoned = why
        for cam in self.cameras.values():
            cam.frames.clear()
            cam.pending = None

    # -- outcome ----------------------------------------------------------------------------

    def finish(self, plans: list[tuple[int, EpisodePlan]]) -> dict[str, tuple[int, int]] | None:
        """Close the videos if they match the plan and return their sizes; otherwise delete them.

        Returns None when pass 2 has to run (``self.abandoned`` says why).
        """
        if self.finished:
            raise RuntimeError("LiveVideo.finish called twice")
        self.finished = True
        if not self.abandoned:
            for cam in self.cameras.values():
                self._flush(cam)
        for cam in self.cameras.values():
            cam.worker.stop(cancel=self.abandoned is not None)
            if cam.worker.error is not None:
                self.abandon(str(cam.worker.error))
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if not self.abandoned:
            self._check(plans)
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
            return None
        return sizes

    def discard(self) -> None:
        """Stop the workers and delete the videos (conversion of this bag failed)."""
        if not self.finished:
            self.abandon("conversion failed")
            self.finish([])

    def _check(self, plans: list[tuple[int, EpisodePlan]]) -> None:
        if len(plans) != 1 or plans[0][0] != self.episode:
            self.abandon("the bag did not become exactly one episode")
            return
        plan = plans[0][1]
        if plan.length != self.ticks or (plan.length and int(plan.grid[0]) != self.start):
            self.abandon(f"streamed {self.ticks} frames, the plan has {plan.length}")
            return
        for v in self.mapping.video:
            if not np.array_equal(plan.frames[v.key], np.frombuffer(self.cameras[v.topic].selected, np.int64)):
                self.abandon(f"'{v.key}': streamed frames differ from the plan's")
                return
