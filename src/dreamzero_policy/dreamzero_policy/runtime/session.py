"""Policy sessions: the span of one model context (what ``ActionChunk.session_id`` names).

A new session starts on an explicit reset, on a new instruction (the model resets its KV cache when
the prompt changes), after time went backwards (bag loop, sim reset) and after a backend failure
(the model's context is unknown then). Within a session, chunk ids count published chunks from 0.

The model's own rules (dreamzero-architecture.md §4.2, §6): the first call after a reset conditions
on ``frames_first_call`` frames (1 for DROID), later calls on ``frames_per_call`` (4); the model
re-anchors by itself every ``max_calls_per_context`` calls (4 chunks per KV-cache lifetime) and needs
no help from the caller for that, so the session stays the same across that internal refresh.
Backends reset their model when the ``session_id`` of a request changes, like the official server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CallPlan:
    """What the next inference of the current session needs."""

    session_id: str
    n_frames: int
    first_call: bool  # first call of the session (model context starts)
    context_call: int  # 0-based call index within the model's current KV-cache lifetime


class Session:
    """Session id, chunk counter and the model's frame rules. Thread-safe."""

    def __init__(
        self,
        frames_first_call: int,
        frames_per_call: int,
        max_calls_per_context: int = 4,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        if frames_first_call < 1 or frames_per_call < 1 or max_calls_per_context < 1:
            raise ValueError("frame counts and max_calls_per_context must be >= 1")
        self.frames_first_call = frames_first_call
        self.frames_per_call = frames_per_call
        self.max_calls_per_context = max_calls_per_context
        self._new_id = id_factory or (lambda: uuid.uuid4().hex[:12])
        self._lock = threading.Lock()
        self.prompt = ""
        self.session_id = ""
        self.reason = ""
        self.sessions_started = 0
        self._calls_done = 0
        self._chunks = 0
        self.new("start")

    # ------------------------------------------------------------------ transitions

    def new(self, reason: str) -> str:
        """Start a new session (fresh id, counters at 0); returns its id."""
        with self._lock:
            self.session_id = self._new_id()
            self.reason = reason
            self.sessions_started += 1
            self._calls_done = 0
            self._chunks = 0
            return self.session_id

    def set_prompt(self, prompt: str) -> bool:
        """Set the model prompt; a different prompt starts a new session. Returns True if it did."""
        with self._lock:
            changed = prompt != self.prompt
            self.prompt = prompt
        if changed:
            self.new("new instruction")
        return changed

    def clear_prompt(self, reason: str = "instruction cleared") -> str:
        """Forget the prompt and start a new session, so any prompt set later (even the same text)
        starts yet another fresh session. Returns the new id."""
        with self._lock:
            self.prompt = ""
        return self.new(reason)

    # ------------------------------------------------------------------ per call

    def plan(self) -> CallPlan:
        """Frames and flags for the next call of the current session."""
        with self._lock:
            first = self._calls_done == 0
            return CallPlan(
                session_id=self.session_id,
                n_frames=self.frames_first_call if first else self.frames_per_call,
                first_call=first,
                context_call=self._calls_done % self.max_calls_per_context,
            )

    def accept(self, session_id: str) -> int | None:
        """Record a successful call of ``session_id``; returns its chunk id, or None if the result
        belongs to an older session (it must then be discarded, not published)."""
        with self._lock:
            if session_id != self.session_id:
                return None
            chunk_id = self._chunks
            self._chunks += 1
            self._calls_done += 1
            return chunk_id

    @property
    def chunks_published(self) -> int:
        with self._lock:
            return self._chunks

    @property
    def last_chunk_id(self) -> int:
        """Id of the newest chunk of this session (0 when none yet)."""
        with self._lock:
            return max(0, self._chunks - 1)
