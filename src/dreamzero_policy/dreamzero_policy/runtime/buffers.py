"""Observation buffers: per-camera frame rings and a joint-state history, plus the checks that decide
whether the inputs can form a model observation now.

Callbacks only append (O(1), no decoding): frames are stored as opaque payloads (a ROS message, a
bag message or an array) and decoded later in the inference worker. All times are integer
nanoseconds on the node's clock (header stamps); limits are in seconds.

Rules (why):
- Frames are kept at most one per ``store_period_s`` (the newest always replaces a too-close
  predecessor) so memory is bounded by ``history_s / store_period_s`` whatever the camera rate.
- A stamp older than the stream's previous one (bag loop, sim reset, clock jump) clears every
  buffer and bumps ``epoch``; mixing two timelines would feed the model nonsense history.
- ``snapshot`` samples ``n_frames`` per camera at ``frame_interval_s`` ending at the observation
  time; when history is short (session start) it left-pads with the oldest frame, as the official
  DreamZero server does.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dreamzero_policy.core.errors import ObservationError
from dreamzero_policy.runtime.io_spec import IoSpec

NS = 1_000_000_000


@dataclass(frozen=True)
class BufferLimits:
    """Freshness and consistency limits (seconds)."""

    max_age_s: float = 0.2  # newest frame / joint state of each required input vs. now
    max_skew_s: float = 0.05  # spread of the newest frames used across cameras
    max_joint_gap_s: float = 0.1  # joint samples bracketing the observation time may be this far apart
    history_s: float = 2.5  # frame history kept per camera
    store_period_s: float = 1.0 / 15.0  # at most one stored frame per period (memory bound)
    backwards_tolerance_s: float = 0.0  # stamps may go back this much before it counts as a time jump
    reject_extra_joints: bool = False  # extra names in JointState are fine by default (other joints)

    def __post_init__(self) -> None:
        for name in ("max_age_s", "max_skew_s", "max_joint_gap_s", "history_s", "store_period_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"BufferLimits.{name}: expected a positive number, got {v!r}")
        if not (math.isfinite(self.backwards_tolerance_s) and self.backwards_tolerance_s >= 0):
            raise ValueError("BufferLimits.backwards_tolerance_s: expected >= 0")


@dataclass(frozen=True)
class Snapshot:
    """Everything the worker needs for one inference, taken under the buffer lock.

    ``frames[cam]``: ``n_frames`` payloads oldest -> newest (None for an absent optional camera);
    ``state_raw``: (state_dim,) float64 in robot units (joints, then the raw gripper joint value),
    interpolated to ``stamp_ns``; ``sources``: (topic, stamp_ns, age_s) of the newest message used
    from each input, for ``ObservationStamp``.
    """

    stamp_ns: int
    created_ns: int
    n_frames: int
    frames: dict[str, list[Any]]
    frame_stamps_ns: dict[str, list[int]]
    state_raw: np.ndarray
    sources: tuple[tuple[str, int, float], ...]
    padded_frames: int = 0
    missing_optional: tuple[str, ...] = field(default_factory=tuple)


class _Ring:
    """Frames of one camera, oldest first, spaced at least ``store_period`` apart (except the newest)."""

    def __init__(self, capacity: int, store_period_ns: int) -> None:
        self.items: deque[tuple[int, Any]] = deque(maxlen=capacity)
        self.store_period_ns = store_period_ns

    def add(self, stamp_ns: int, payload: Any) -> None:
        if self.items and stamp_ns == self.items[-1][0]:
            self.items[-1] = (stamp_ns, payload)  # same capture re-sent: keep one
            return
        if len(self.items) >= 2 and stamp_ns - self.items[-2][0] < self.store_period_ns:
            self.items[-1] = (stamp_ns, payload)
            return
        self.items.append((stamp_ns, payload))

    def nearest(self, t_ns: int) -> tuple[int, Any]:
        return min(self.items, key=lambda it: abs(it[0] - t_ns))


class ObservationBuffers:
    """Thread-safe input cache for one embodiment spec (see module docstring)."""

    def __init__(
        self, spec: IoSpec, limits: BufferLimits | None = None, joint_state_topic: str = "/joint_states"
    ) -> None:
        self.spec = spec
        self.limits = limits or BufferLimits()
        self.joint_state_topic = joint_state_topic
        self._lock = threading.Lock()
        lim = self.limits
        cap = max(4, math.ceil(lim.history_s / lim.store_period_s) + 2)
        self._store_ns = int(lim.store_period_s * NS)
        self._cap = cap
        self._rings = {c.name: _Ring(cap, self._store_ns) for c in spec.cameras}
        self._names = (*spec.state_joints, *([spec.gripper_joint] if spec.gripper_joint else []))
        self._joints: deque[tuple[int, np.ndarray]] = deque(maxlen=256)
        self._last_now_ns: int | None = None
        self.epoch = 0  # bumped on every clear (time jump or explicit)
        self.time_jumps = 0  # backwards-time events seen
        self.last_jump_message = ""

    # ------------------------------------------------------------------ producers (callbacks)

    def add_image(self, camera: str, stamp_ns: int, payload: Any) -> None:
        """Cache one frame of ``camera`` (no decoding here). Unknown cameras raise ObservationError."""
        ring = self._rings.get(camera)
        if ring is None:
            raise ObservationError(f"unknown camera {camera!r} (spec has {sorted(self._rings)})", "bad_input")
        with self._lock:
            if ring.items and self._is_backwards(stamp_ns, ring.items[-1][0]):
                self._jump(f"camera {camera}: stamp went back {(ring.items[-1][0] - stamp_ns) / NS:.3f} s")
            ring.add(int(stamp_ns), payload)

    def add_joint_state(self, stamp_ns: int, names: list[str] | tuple[str, ...], positions: Any) -> None:
        """Cache a JointState sample; raises ObservationError (``bad_input``) on malformed input:
        length mismatch, duplicate names, missing joints, NaN/inf in a used joint, or extra names
        when ``limits.reject_extra_joints``."""
        names = list(names)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        if len(names) != pos.shape[0]:
            raise ObservationError(f"joint_states: {len(names)} names but {pos.shape[0]} positions", "bad_input")
        index = {n: i for i, n in enumerate(names)}
        if len(index) != len(names):
            raise ObservationError("joint_states: duplicate joint names", "bad_input")
        missing = [n for n in self._names if n not in index]
        if missing:
            raise ObservationError(f"joint_states: missing joints {missing}", "bad_input")
        if self.limits.reject_extra_joints:
            extra = [n for n in names if n not in self._names]
            if extra:
                raise ObservationError(f"joint_states: unexpected joints {extra}", "bad_input")
        vec = pos[[index[n] for n in self._names]]
        if not np.all(np.isfinite(vec)):
            bad = [n for n, v in zip(self._names, vec, strict=True) if not math.isfinite(v)]
            raise ObservationError(f"joint_states: non-finite values for {bad}", "bad_input")
        with self._lock:
            if self._joints and self._is_backwards(stamp_ns, self._joints[-1][0]):
                self._jump(f"joint_states: stamp went back {(self._joints[-1][0] - stamp_ns) / NS:.3f} s")
            if self._joints and stamp_ns == self._joints[-1][0]:
                self._joints[-1] = (int(stamp_ns), vec)
            else:
                self._joints.append((int(stamp_ns), vec))

    def clear(self) -> None:
        """Drop every cached input (explicit reset); bumps ``epoch``."""
        with self._lock:
            self._clear_locked()

    # ------------------------------------------------------------------ consumer (timer)

    def snapshot(self, now_ns: int, n_frames: int, frame_interval_s: float | None = None) -> Snapshot:
        """Sample ``n_frames`` per camera ending at the observation time, with the joint state
        interpolated to it. Raises ObservationError with reason ``missing``/``stale``/``skew``/
        ``history``/``time_backwards`` when the inputs cannot form an observation now."""
        if n_frames < 1:
            raise ValueError("n_frames must be >= 1")
        lim = self.limits
        interval_ns = int((frame_interval_s or self.spec.frame_interval_s) * NS)
        with self._lock:
            if self._last_now_ns is not None and self._is_backwards(now_ns, self._last_now_ns):
                self._jump(f"clock went back {(self._last_now_ns - now_ns) / NS:.3f} s")
                self._last_now_ns = now_ns
                raise ObservationError(self.last_jump_message, "time_backwards")
            self._last_now_ns = now_ns

            newest: dict[str, int] = {}
            missing_opt: list[str] = []
            for cam in self.spec.cameras:
                ring = self._rings[cam.name]
                if not ring.items:
                    if cam.required:
                        raise ObservationError(f"no frames yet from camera {cam.name} ({cam.topic})", "missing")
                    missing_opt.append(cam.name)
                    continue
                age = (now_ns - ring.items[-1][0]) / NS
                if age > lim.max_age_s:
                    if cam.required:
                        raise ObservationError(
                            f"camera {cam.name} is stale: newest frame {age:.3f} s old (limit {lim.max_age_s:.3f} s)",
                            "stale",
                        )
                    missing_opt.append(cam.name)
                    continue
                newest[cam.name] = ring.items[-1][0]
            if not newest:
                raise ObservationError("no camera has fresh frames", "missing")
            if not self._joints:
                raise ObservationError(f"no joint states yet ({self.joint_state_topic})", "missing")
            j_age = (now_ns - self._joints[-1][0]) / NS
            if j_age > lim.max_age_s:
                raise ObservationError(
                    f"joint states are stale: newest {j_age:.3f} s old (limit {lim.max_age_s:.3f} s)", "stale"
                )

            # The reference is the newest stamp all cameras have reached; each camera contributes
            # its frame nearest to it, and the spread of those stamps is the skew.
            t_ref = min(newest.values())
            chosen = {name: self._rings[name].nearest(t_ref) for name in newest}
            stamps = [s for s, _ in chosen.values()]
            skew = (max(stamps) - min(stamps)) / NS
            if skew > lim.max_skew_s:
                worst = max(chosen, key=lambda n: abs(chosen[n][0] - t_ref))
                raise ObservationError(
                    f"camera skew {skew:.3f} s exceeds {lim.max_skew_s:.3f} s (worst: {worst})", "skew"
                )
            t_obs = max(stamps)

            frames: dict[str, list[Any]] = {}
            frame_stamps: dict[str, list[int]] = {}
            padded = 0
            tol = max(interval_ns // 2, self._store_ns)
            for name, (stamp_last, payload_last) in chosen.items():
                ring = self._rings[name]
                seq_p: list[Any] = []
                seq_s: list[int] = []
                for k in range(n_frames - 1, 0, -1):
                    target = stamp_last - k * interval_ns
                    if target < ring.items[0][0] - tol:
                        s, p = ring.items[0]  # not enough history yet: left-pad with the oldest
                        padded += 1
                    else:
                        s, p = ring.nearest(target)
                        s, p = (s, p) if s <= stamp_last else (stamp_last, payload_last)
                    seq_s.append(s)
                    seq_p.append(p)
                seq_s.append(stamp_last)
                seq_p.append(payload_last)
                frames[name], frame_stamps[name] = seq_p, seq_s
            for name in missing_opt:
                frames[name], frame_stamps[name] = [None] * n_frames, [0] * n_frames

            state = self._interpolate(t_obs)
            sources = [(self.spec.camera(n).topic, chosen[n][0], (now_ns - chosen[n][0]) / NS) for n in chosen]
            j_stamp = self._joints[-1][0]
            sources.append((self.joint_state_topic, j_stamp, (now_ns - j_stamp) / NS))
        return Snapshot(
            stamp_ns=t_obs,
            created_ns=now_ns,
            n_frames=n_frames,
            frames=frames,
            frame_stamps_ns=frame_stamps,
            state_raw=state,
            sources=tuple(sources),
            padded_frames=padded,
            missing_optional=tuple(missing_opt),
        )

    # ------------------------------------------------------------------ internals

    def _interpolate(self, t_ns: int) -> np.ndarray:
        """Joint vector at ``t_ns`` (lock held): linear between bracketing samples; the nearest
        sample if ``t_ns`` is outside the history but within ``max_joint_gap_s`` of it."""
        gap_ns = self.limits.max_joint_gap_s * NS
        items = self._joints
        if t_ns >= items[-1][0]:
            if t_ns - items[-1][0] > gap_ns:
                raise ObservationError(
                    f"joint states end {(t_ns - items[-1][0]) / NS:.3f} s before the observation time", "stale"
                )
            return items[-1][1].copy()
        if t_ns <= items[0][0]:
            if items[0][0] - t_ns > gap_ns:
                raise ObservationError("joint state history does not reach back to the observation time", "history")
            return items[0][1].copy()
        # Newest-first scan: the observation time is almost always near the end.
        for i in range(len(items) - 1, 0, -1):
            t0, v0 = items[i - 1]
            t1, v1 = items[i]
            if t0 <= t_ns <= t1:
                if t1 - t0 > gap_ns:
                    raise ObservationError(
                        f"joint state gap of {(t1 - t0) / NS:.3f} s around the observation time", "stale"
                    )
                w = (t_ns - t0) / (t1 - t0)
                return (1.0 - w) * v0 + w * v1
        raise AssertionError("unreachable: bracketing samples must exist")

    def _is_backwards(self, stamp_ns: int, last_ns: int) -> bool:
        return stamp_ns < last_ns - self.limits.backwards_tolerance_s * NS

    def _jump(self, message: str) -> None:
        self.time_jumps += 1
        self.last_jump_message = f"time went backwards ({message}); buffers cleared"
        self._clear_locked()

    def _clear_locked(self) -> None:
        for ring in self._rings.values():
            ring.items.clear()
        self._joints.clear()
        self._last_now_ns = None
        self.epoch += 1
