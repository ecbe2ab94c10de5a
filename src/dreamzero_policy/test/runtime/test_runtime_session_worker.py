"""Sessions (ids, chunk ids, frame rules) and the inference worker (bounded, never blocks)."""

from __future__ import annotations

import threading
import time

import pytest
from dreamzero_policy.core.errors import BackendTimeoutError, ObservationError
from dreamzero_policy.runtime.session import Session
from dreamzero_policy.runtime.worker import InferenceWorker


def test_session_rules() -> None:
    s = Session(frames_first_call=1, frames_per_call=4, max_calls_per_context=4)
    first = s.session_id
    assert s.plan().n_frames == 1 and s.plan().first_call
    assert s.accept(first) == 0
    assert s.plan().n_frames == 4 and not s.plan().first_call
    assert [s.accept(first) for _ in range(4)] == [1, 2, 3, 4]
    assert s.plan().context_call == 1  # 5 calls done: model re-anchored once
    assert s.set_prompt("pick") is True and s.session_id != first
    assert s.set_prompt("pick") is False
    assert s.accept(first) is None  # result of an old session: discard
    assert s.plan().n_frames == 1
    second = s.session_id
    assert s.new("reset") != second and s.chunks_published == 0


def test_worker_submit_never_blocks_and_drops_waiting() -> None:
    gate = threading.Event()
    seen = []

    def slow(item):
        gate.wait(5)
        seen.append(item)
        return item * 10

    w = InferenceWorker(slow)
    try:
        t0 = time.perf_counter()
        assert w.submit(1)
        time.sleep(0.05)  # item 1 is running
        for i in range(2, 6):
            assert w.submit(i)
        assert time.perf_counter() - t0 < 0.5  # never blocked while the model was busy
        assert w.stats.dropped == 3  # 2, 3, 4 were replaced; 5 waits
        gate.set()
        results = [w.wait_result(5), w.wait_result(5)]
        assert [r.value for r in results] == [10, 50] and all(r.ok for r in results)
        assert seen == [1, 5]
        assert w.wait_result(0.05) is None
    finally:
        gate.set()
        assert w.stop()


def test_worker_reports_errors_and_timeouts() -> None:
    def process(item):
        if item == "bad":
            raise ObservationError("broken frame", "bad_input")
        if item == "boom":
            raise RuntimeError("cuda fell over")
        if item == "remote":
            raise BackendTimeoutError("server silent")
        time.sleep(0.4)
        return "done"

    w = InferenceWorker(process, timeout_s=0.1)
    try:
        for item, kind, text in [
            ("bad", "bad_input", "broken"),
            ("boom", "error", "RuntimeError"),
            ("remote", "timeout", "silent"),
        ]:
            w.submit(item)
            r = w.wait_result(5)
            assert r is not None and r.kind == kind and text in r.error and r.item == item
        w.submit("slow")
        r = w.wait_result(5)
        assert r is not None and r.kind == "timeout" and "exceeded" in r.error
        late = w.wait_result(5)
        assert late is not None and late.ok and late.late and late.value == "done"
        assert w.stats.failed == 2 and w.stats.timeouts == 2
    finally:
        assert w.stop()
    assert not w.submit("after stop")


def test_worker_rejects_bad_timeout() -> None:
    with pytest.raises(ValueError):
        InferenceWorker(lambda x: x, timeout_s=0)
