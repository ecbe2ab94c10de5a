"""What the policy node reports on /dreamzero/status and /diagnostics, kept in one thread-safe place.

Callbacks, the decision timer and the action server all record events here; the status timer
takes a :class:`StatusReport` copy and converts it. ``PolicyState`` mirrors the constants of
``dreamzero_msgs/PolicyStatus`` (a test checks they match).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class PolicyState(IntEnum):
    UNCONFIGURED = 0
    INACTIVE = 1
    WARMING_UP = 2
    WAITING_FOR_INPUT = 3
    RUNNING = 4
    BACKEND_ERROR = 5
    ERROR = 6


@dataclass(frozen=True)
class StatusReport:
    """A consistent copy of the node's status (latencies in seconds)."""

    state: PolicyState
    message: str
    session_id: str
    last_chunk_id: int
    chunks_published: int
    last_latency_s: float
    mean_latency_s: float
    p95_latency_s: float
    dropped_observations: int
    stale_inputs: int
    rejected_inputs: int
    backend_errors: int
    last_input_problem: str
    backend: str
    model_id: str

    @property
    def state_name(self) -> str:
        return self.state.name


class StatusTracker:
    """Counters and the current state with its reason. Thread-safe; every method is O(1) except
    :meth:`report` (percentile over at most ``window`` latencies)."""

    def __init__(self, window: int = 200) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=window)
        self.backend = ""
        self.model_id = ""
        self._state = PolicyState.UNCONFIGURED
        self._message = "not configured"
        self._session_id = ""
        self._last_chunk_id = 0
        self._chunks = 0
        self._last_latency = 0.0
        self._dropped = 0
        self._stale = 0
        self._rejected = 0
        self._backend_errors = 0
        self._last_input_problem = ""

    def set_state(self, state: PolicyState, message: str) -> None:
        with self._lock:
            self._state, self._message = state, message

    @property
    def state(self) -> PolicyState:
        with self._lock:
            return self._state

    @property
    def session_id(self) -> str:
        with self._lock:
            return self._session_id

    def new_session(self, session_id: str) -> None:
        """Session-scoped numbers (chunk id, latency statistics) start over."""
        with self._lock:
            self._session_id = session_id
            self._last_chunk_id = 0
            self._latencies.clear()
            self._last_latency = 0.0

    def chunk_published(self, chunk_id: int, latency_s: float) -> None:
        with self._lock:
            self._chunks += 1
            self._last_chunk_id = chunk_id
            self._last_latency = latency_s
            self._latencies.append(latency_s)
            self._state, self._message = PolicyState.RUNNING, "producing chunks"

    def input_not_ready(self, message: str) -> None:
        """Missing/stale/skewed inputs or no instruction: no inference this tick."""
        with self._lock:
            self._stale += 1
            self._last_input_problem = message
            self._state, self._message = PolicyState.WAITING_FOR_INPUT, message

    def input_rejected(self, message: str, *, affects_state: bool = True) -> None:
        """A malformed message was dropped (bad encoding, size, NaN, unknown joints)."""
        with self._lock:
            self._rejected += 1
            self._last_input_problem = message
            if affects_state:
                self._state, self._message = PolicyState.WAITING_FOR_INPUT, message

    def backend_failed(self, message: str) -> None:
        with self._lock:
            self._backend_errors += 1
            self._state, self._message = PolicyState.BACKEND_ERROR, message

    def observation_dropped(self, n: int = 1) -> None:
        with self._lock:
            self._dropped += n

    def report(self) -> StatusReport:
        with self._lock:
            lat = np.asarray(self._latencies, dtype=np.float64)
            return StatusReport(
                state=self._state,
                message=self._message,
                session_id=self._session_id,
                last_chunk_id=self._last_chunk_id,
                chunks_published=self._chunks,
                last_latency_s=self._last_latency,
                mean_latency_s=float(lat.mean()) if lat.size else 0.0,
                p95_latency_s=float(np.percentile(lat, 95)) if lat.size else 0.0,
                dropped_observations=self._dropped,
                stale_inputs=self._stale,
                rejected_inputs=self._rejected,
                backend_errors=self._backend_errors,
                last_input_problem=self._last_input_problem,
                backend=self.backend,
                model_id=self.model_id,
            )
