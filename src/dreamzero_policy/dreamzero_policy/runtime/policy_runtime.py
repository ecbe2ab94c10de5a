"""``PolicyRuntime``: buffers + session + worker + backend + post-processing behind five calls.

The rclpy node is a thin shell around it (callbacks -> ``add_*``; a timer -> ``tick`` then
``poll``; services -> ``set_instruction`` / ``reset``). Nothing here blocks on the model, and
nothing raises into the caller for bad inputs or backend failures: those come back as reasons,
counters and events.

Times passed in (``stamp_ns``, ``now_ns``) are on the node's clock (ROS time, sim-time aware). So is
a chunk's ``inference_started`` (read from ``clock_ns`` by the worker as it starts the request);
``inference_latency`` is wall time (monotonic), as it measures the compute, not the robot's time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamzero_policy.backends.base import PolicyBackend, check_actions
from dreamzero_policy.core.errors import BackendError, IoSpecError, ObservationError
from dreamzero_policy.runtime.buffers import BufferLimits, ObservationBuffers, Snapshot
from dreamzero_policy.runtime.io_spec import IoSpec
from dreamzero_policy.runtime.observation import build_request
from dreamzero_policy.runtime.postprocess import ChunkData, make_chunk
from dreamzero_policy.runtime.session import CallPlan, Session
from dreamzero_policy.runtime.worker import InferenceWorker


@dataclass
class Job:
    """One request. ``started_now_ns`` (node clock) is written by the worker thread as it starts the
    request and read by ``poll`` after the result came back (the worker's queue orders the two)."""

    snapshot: Snapshot
    plan: CallPlan
    prompt: str
    submit_now_ns: int  # node clock at submit
    return_video: bool
    started_now_ns: int = 0  # node clock when the worker started it


@dataclass(frozen=True)
class TickOutcome:
    """``submitted`` or why not: ``reason`` in {busy, no_new_observation, no_instruction, missing, stale, skew,
    history, time_backwards, bad_input}; ``message`` for status/diagnostics. ``new_session`` is non-empty
    when this tick started a new session by itself, and says why (time went backwards: bag loop,
    sim reset); the new id is ``runtime.session.session_id``."""

    submitted: bool
    reason: str = ""
    message: str = ""
    new_session: str = ""


@dataclass(frozen=True)
class RuntimeEvent:
    """One finished inference. ``kind``: ``chunk`` (publish ``chunk``), ``discarded`` (result of an
    older session), ``bad_input``, ``error`` or ``timeout`` (see ``message``)."""

    kind: str
    message: str = ""
    chunk: ChunkData | None = None
    session_id: str = ""
    stamp_ns: int = 0  # observation time
    sources: tuple[tuple[str, int, float], ...] = ()  # (topic, stamp_ns, age_s) for ObservationStamp
    latency_s: float = 0.0
    late: bool = False
    video: np.ndarray | None = None  # predicted frames uint8 (T, H, W, 3) if asked


class PolicyRuntime:
    """See module docstring. ``decode`` turns a cached image payload into RGB uint8 (H, W, 3).

    ``clock_ns``: the node's clock in ns (``lambda: node.get_clock().now().nanoseconds``), called from
    the worker thread; without it a request counts as started when ``tick`` submitted it (the worker
    is idle then, so it starts at once), which is exact enough for ROS-free use.
    """

    def __init__(
        self,
        spec: IoSpec,
        backend: PolicyBackend,
        *,
        limits: BufferLimits | None = None,
        timeout_s: float | None = None,
        decode: Callable[[Any], np.ndarray] | None = None,
        joint_state_topic: str = "/joint_states",
        frame_id: str = "",
        max_calls_per_context: int = 4,
        clock_ns: Callable[[], int] | None = None,
    ) -> None:
        if decode is None:
            from dreamzero_policy.core.images import decode_any_image

            decode = decode_any_image
        self.spec = spec
        self.backend = backend
        self.frame_id = frame_id
        self._decode = decode
        self._clock_ns = clock_ns
        self.buffers = ObservationBuffers(spec, limits, joint_state_topic)
        self.session = Session(spec.frames_first_call, spec.frames_per_call, max_calls_per_context)
        self.worker = InferenceWorker(self._process, timeout_s=timeout_s)
        self._lock = threading.Lock()
        self._epoch = self.buffers.epoch
        self._last_submitted: tuple[str, int] = ("", -1)  # (session id, observation stamp) of the last call
        self._instruction = ""
        self.return_video = False
        self.stale_inputs = 0
        self.rejected_inputs = 0
        self.last_problem = ""
        self.latencies_s: deque[float] = deque(maxlen=200)

    # ------------------------------------------------------------------ callbacks (cheap)

    def add_image(self, camera: str, stamp_ns: int, payload: Any) -> str | None:
        """Cache a frame; returns an error message (and counts it) if it was rejected."""
        return self._guard(lambda: self.buffers.add_image(camera, stamp_ns, payload))

    def add_joint_state(self, stamp_ns: int, names: Any, positions: Any) -> str | None:
        """Cache a joint-state sample; returns an error message if rejected (missing joints, NaN...)."""
        return self._guard(lambda: self.buffers.add_joint_state(stamp_ns, list(names), positions))

    def _guard(self, fn: Callable[[], None]) -> str | None:
        try:
            fn()
            return None
        except ObservationError as exc:
            with self._lock:
                self.rejected_inputs += 1
                self.last_problem = str(exc)
            return str(exc)

    # ------------------------------------------------------------------ control

    def set_instruction(self, instruction: str, reset_session: bool = False) -> str:
        """Set the task instruction; a new one (or ``reset_session``) starts a new session.
        Raises IoSpecError for an empty instruction. Returns the current session id."""
        prompt = self.spec.format_prompt(instruction)
        with self._lock:
            self._instruction = instruction.strip()
        changed = self.session.set_prompt(prompt)
        if reset_session and not changed:
            self.session.new("reset requested")
        if changed or reset_session:
            self.buffers.clear()
            self._epoch = self.buffers.epoch
        return self.session.session_id

    @property
    def instruction(self) -> str:
        return self._instruction

    def clear_instruction(self, reason: str = "instruction cleared") -> str:
        """Stop inference until a new instruction is set: no instruction, new session, cleared
        buffers. A result still in flight belongs to the old session and is discarded by ``poll``.
        Setting any instruction afterwards (even the same text) starts a fresh session. Returns the id."""
        with self._lock:
            self._instruction = ""
        sid = self.session.clear_prompt(reason)
        self.buffers.clear()
        self._epoch = self.buffers.epoch
        return sid

    @property
    def session_reason(self) -> str:
        """Why the current session started (``start``, ``new instruction``, ``reset requested``,
        ``time went backwards (...)``, ``backend error``...)."""
        return self.session.reason

    def reset(self, reason: str = "reset requested") -> str:
        """New session + cleared buffers; the backend resets on the next request. Returns the id."""
        sid = self.session.new(reason)
        self.buffers.clear()
        self._epoch = self.buffers.epoch
        return sid

    def tick(self, now_ns: int) -> TickOutcome:
        """Start an inference if the worker is idle and the inputs are good (timer callback)."""
        restarted = self._check_epoch()
        if not self._instruction:
            return TickOutcome(False, "no_instruction", "no instruction set", restarted)
        if self.worker.busy:
            return TickOutcome(False, "busy", "inference running", restarted)
        plan = self.session.plan()
        try:
            snap = self.buffers.snapshot(now_ns, plan.n_frames)
        except ObservationError as exc:
            restarted = self._check_epoch() or restarted  # the snapshot itself may see the clock jump
            with self._lock:
                self.stale_inputs += 1
                self.last_problem = str(exc)
            return TickOutcome(False, exc.reason, str(exc), restarted)
        # One call per observation: the model appends the observed frames to its context, so the same
        # frames twice would corrupt it (and the chunk would repeat the previous one's stamp).
        last_session, last_stamp = self._last_submitted
        if last_session == plan.session_id and snap.stamp_ns <= last_stamp:
            return TickOutcome(
                False, "no_new_observation", "waiting for an observation newer than the last one used", restarted
            )
        self._last_submitted = (plan.session_id, snap.stamp_ns)
        job = Job(snap, plan, self.session.prompt, now_ns, self.return_video)
        self.worker.submit(job)
        return TickOutcome(True, new_session=restarted)

    def poll(self) -> list[RuntimeEvent]:
        """Finished inferences since the last call, as events (oldest first)."""
        events = []
        for res in self.worker.poll():
            job: Job = res.item
            base = {
                "session_id": job.plan.session_id,
                "stamp_ns": job.snapshot.stamp_ns,
                "sources": job.snapshot.sources,
                "latency_s": res.duration_s,
                "late": res.late,
            }
            if res.ok:
                events.append(self._chunk_event(job, res.value, res.started_ns, res.finished_ns, base))
                continue
            if res.kind == "bad_input":
                with self._lock:
                    self.rejected_inputs += 1
                    self.last_problem = res.error
            else:
                # The model context is unknown after a failure or timeout: new session.
                if job.plan.session_id == self.session.session_id:
                    self.session.new(f"backend {res.kind}")
                with self._lock:
                    self.last_problem = res.error
            events.append(RuntimeEvent(res.kind, res.error, **base))
        return events

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop the worker (after a running call) and close the backend."""
        stopped = self.worker.stop(timeout_s)
        if stopped:
            self.backend.close()
        return stopped

    # ------------------------------------------------------------------ status helpers

    def latency_stats(self) -> tuple[float, float, float]:
        """(last, mean, p95) inference latency in seconds over recent chunks (zeros when none)."""
        lat = list(self.latencies_s)
        if not lat:
            return 0.0, 0.0, 0.0
        return lat[-1], float(np.mean(lat)), float(np.percentile(lat, 95))

    # ------------------------------------------------------------------ internals

    def _check_epoch(self) -> str:
        """New session if the buffers were cleared by a time jump since the last look; returns the
        reason ("" when nothing happened). Explicit clears update ``_epoch`` themselves."""
        if self.buffers.epoch == self._epoch:
            return ""
        self._epoch = self.buffers.epoch
        reason = f"{self.buffers.last_jump_message or 'time went backwards'}; new session"
        self.session.new(reason)
        return reason

    def _process(self, job: Job) -> dict[str, Any]:
        """Worker thread: decode + assemble + backend call."""
        job.started_now_ns = self._clock_ns() if self._clock_ns is not None else job.submit_now_ns
        snap = job.snapshot
        request = build_request(
            self.spec, snap.frames, snap.state_raw, job.prompt, job.plan.session_id, decode=self._decode
        )
        if job.return_video:
            request["return_video"] = True
        result = self.backend.infer(request)
        result["actions"] = check_actions(result, self.spec.action_dim)
        return result

    def _chunk_event(
        self, job: Job, result: dict[str, Any], started: int, finished: int, base: dict[str, Any]
    ) -> RuntimeEvent:
        chunk_id = self.session.accept(job.plan.session_id)
        if chunk_id is None:
            return RuntimeEvent("discarded", "result of an earlier session", **base)
        try:
            chunk = make_chunk(
                self.spec,
                result["actions"],
                stamp_ns=job.snapshot.stamp_ns,
                session_id=job.plan.session_id,
                chunk_id=chunk_id,
                inference_started_ns=job.started_now_ns,
                inference_latency_ns=finished - started,
                frame_id=self.frame_id,
            )
        except (BackendError, IoSpecError) as exc:
            self.session.new("backend error")
            return RuntimeEvent("error", str(exc), **base)
        self.latencies_s.append((finished - started) / 1e9)
        video = result.get("video")
        return RuntimeEvent("chunk", "", chunk=chunk, video=video if isinstance(video, np.ndarray) else None, **base)
