"""The inference worker: one thread owns the backend (model, device, socket).

``submit`` never blocks: the input slot holds at most one waiting item, and a newer item replaces
a waiting one (counted in ``dropped``). Outcomes come back through ``poll()`` / ``wait_result()`` as
:class:`WorkResult` values carrying the submitted item (and so its observation stamp); errors and
timeouts are results too, never exceptions in the caller. A call that overruns ``timeout_s`` is
reported as a timeout result as soon as the caller polls; since a running model call cannot be
interrupted safely, its eventual output is still delivered later, flagged ``late``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dreamzero_policy.core.errors import BackendTimeoutError, ImageDecodeError, ObservationError

_STOP = object()


@dataclass
class WorkResult:
    """Outcome of one item. ``kind``: ``ok``, ``bad_input``, ``error`` or ``timeout``."""

    item: Any
    kind: str
    value: Any = None
    error: str = ""
    started_ns: int = 0  # clock_ns() when processing began
    finished_ns: int = 0  # when it ended (for a timeout result: when the timeout was noticed)
    late: bool = False  # finished after a timeout result was already reported

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def duration_s(self) -> float:
        return (self.finished_ns - self.started_ns) / 1e9


@dataclass
class WorkerStats:
    submitted: int = 0
    dropped: int = 0  # waiting items replaced by newer ones
    completed: int = 0
    failed: int = 0
    timeouts: int = 0
    results_dropped: int = 0  # results nobody polled before the result queue filled
    durations_s: deque[float] = field(default_factory=lambda: deque(maxlen=200))


class InferenceWorker:
    """Runs ``process(item) -> value`` on a single background thread (see module docstring)."""

    def __init__(
        self,
        process: Callable[[Any], Any],
        timeout_s: float | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        name: str = "dreamzero-inference",
        max_results: int = 8,
    ) -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive or None")
        self._process = process
        self.timeout_s = timeout_s
        self._clock = clock_ns
        self._cv = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._current: Any = None
        self._current_started = 0
        self._current_timed_out = False
        self._results: deque[WorkResult] = deque()
        self._max_results = max_results
        self.stats = WorkerStats()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side (never blocks)

    def submit(self, item: Any) -> bool:
        """Queue ``item``; replaces a waiting one (counted as dropped). False once stopped."""
        with self._cv:
            if self._stopping:
                return False
            if self._has_pending:
                self.stats.dropped += 1
            self._pending = item
            self._has_pending = True
            self.stats.submitted += 1
            self._cv.notify_all()
            return True

    @property
    def busy(self) -> bool:
        """True while an item is running or waiting."""
        with self._cv:
            return self._has_pending or self._current is not None

    @property
    def running_for_s(self) -> float:
        """Seconds the current item has been running (0 when idle)."""
        with self._cv:
            return 0.0 if self._current is None else (self._clock() - self._current_started) / 1e9

    def poll(self) -> list[WorkResult]:
        """All results available now (oldest first), including timeouts noticed by this call."""
        with self._cv:
            self._check_timeout_locked()
            out = list(self._results)
            self._results.clear()
            return out

    def wait_result(self, timeout_s: float) -> WorkResult | None:
        """Block up to ``timeout_s`` for the next result (tests, benchmarks, ``serve``)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                self._check_timeout_locked()
                if self._results:
                    return self._results.popleft()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                wait = remaining
                if self._current is not None and self.timeout_s is not None:
                    wait = min(wait, max(0.001, self.timeout_s - (self._clock() - self._current_started) / 1e9))
                self._cv.wait(wait)

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop after the running item; drops a waiting one. True if the thread ended in time."""
        with self._cv:
            self._stopping = True
            self._pending, self._has_pending = None, False
            self._cv.notify_all()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # ------------------------------------------------------------------ worker thread

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._has_pending and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                item = self._pending
                self._pending, self._has_pending = None, False
                self._current = item
                self._current_started = self._clock()
                self._current_timed_out = False
                self._cv.notify_all()  # waiters start their timeout clock now
            started = self._current_started
            try:
                value = self._process(item)
                result = WorkResult(item, "ok", value=value)
            except (ObservationError, ImageDecodeError) as exc:  # the input, not the backend, was wrong
                result = WorkResult(item, "bad_input", error=str(exc))
            except BackendTimeoutError as exc:
                result = WorkResult(item, "timeout", error=str(exc))
            except Exception as exc:  # reported as a result, never raised into callers
                result = WorkResult(item, "error", error=f"{type(exc).__name__}: {exc}")
            result.started_ns = started
            result.finished_ns = self._clock()
            with self._cv:
                result.late = self._current_timed_out
                self._current = None
                if result.ok:
                    self.stats.completed += 1
                    self.stats.durations_s.append(result.duration_s)
                elif result.kind == "timeout":
                    self.stats.timeouts += 1
                else:
                    self.stats.failed += 1
                self._push_locked(result)
                self._cv.notify_all()

    def _check_timeout_locked(self) -> None:
        if self._current is None or self.timeout_s is None or self._current_timed_out:
            return
        now = self._clock()
        if (now - self._current_started) / 1e9 > self.timeout_s:
            self._current_timed_out = True
            self.stats.timeouts += 1
            self._push_locked(
                WorkResult(
                    self._current,
                    "timeout",
                    error=f"inference exceeded {self.timeout_s:.3f} s",
                    started_ns=self._current_started,
                    finished_ns=now,
                )
            )

    def _push_locked(self, result: WorkResult) -> None:
        if len(self._results) >= self._max_results:
            self._results.popleft()
            self.stats.results_dropped += 1
        self._results.append(result)
