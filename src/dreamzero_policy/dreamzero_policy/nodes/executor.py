"""The policy node's executor: callbacks on a thread pool, without rclpy 7.1's MultiThreadedExecutor busy loop.

rclpy's ``Executor.wait_for_ready_callbacks`` (Jazzy wheels, 7.1) yields every task that has been handed out but
not started yet *again* on each wait cycle, without waiting. ``MultiThreadedExecutor`` submits it to its pool
again, so under a high message rate (``/clock`` from a simulator at a few hundred Hz) its spinning thread loops,
holds the GIL and starves the pool threads: measured here, every callback of the node stalled for 0.3-2.6 s
several times per 15 s, and the pool's bookkeeping list grew to thousands of entries. A policy node on sim time
then sees its clock stop (RunTask's time limit never arrives) and its sensors go stale.

:class:`PoolExecutor` submits each task once. When rclpy yields a task that is still queued, the spinning thread
sleeps ``REQUEUE_BACKOFF_S`` (releasing the GIL) instead of submitting a duplicate. A task that ran and is not
done (a coroutine waiting for a future) is submitted again when rclpy yields it later, as before. Callback
exceptions are re-raised from ``spin_once`` on the spinning thread, and ``shutdown`` waits for running callbacks
(rclpy 7.1's ``MultiThreadedExecutor.shutdown`` does not).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future as PoolFuture
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from rclpy.executors import (
    ConditionReachedException,
    Executor,
    ExternalShutdownException,
    ShutdownException,
    TimeoutException,
)

REQUEUE_BACKOFF_S = 0.0005  # s: a queued task was yielded again; let a pool thread take the GIL and start it


def _never() -> bool:
    return False


class PoolExecutor(Executor):
    """Runs callbacks on ``num_threads`` pool threads; callback groups keep their usual meaning."""

    def __init__(self, num_threads: int = 4, *, context: Any = None) -> None:
        super().__init__(context=context)
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix="ros-callback")
        self._queued: set[Any] = set()  # tasks submitted to the pool and not finished
        self._in_flight = threading.Condition()
        self._errors: list[BaseException] = []
        self._stopping = False  # shutdown() has begun: nothing new is dispatched

    def spin_once(self, timeout_sec: float | None = None) -> None:
        self._spin_once_impl(timeout_sec, _never)

    def spin_once_until_future_complete(self, future: Any, timeout_sec: float | None = None) -> None:
        future.add_done_callback(lambda _: self.wake())
        self._spin_once_impl(timeout_sec, future.done)

    def _spin_once_impl(self, timeout_sec: float | None, condition: Callable[[], bool]) -> None:
        try:
            task, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            pass
        else:
            with self._in_flight:
                again = self._stopping or task in self._queued
                if not again:
                    self._queued.add(task)
            if again:
                time.sleep(REQUEUE_BACKOFF_S)
            else:
                self._pool.submit(task).add_done_callback(partial(self._finished, task))
        if self._errors:
            raise self._errors.pop(0)

    def _finished(self, task: Any, done: PoolFuture[Any]) -> None:
        # rclpy's Task keeps a callback's exception as its result; the pool future only sees Task's own errors.
        error = done.exception() or (task.exception() if task.done() else None)
        with self._in_flight:
            self._queued.discard(task)
            if error is not None:
                self._errors.append(error)
            self._in_flight.notify_all()

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        """Stop dispatching, wait up to ``timeout_sec`` (None: forever) for running callbacks, then let rclpy clean up.

        In this order because rclpy 7.1's ``Executor.shutdown`` destroys the executor's guard condition at once,
        and a callback that ends after that triggers the destroyed guard (``InvalidHandle`` on the spinning thread).
        """
        with self._in_flight:
            self._stopping = True
            finished = self._in_flight.wait_for(lambda: not self._queued, timeout=timeout_sec)
        super().shutdown(timeout_sec=0)
        self._pool.shutdown(wait=finished, cancel_futures=True)
        return bool(finished)
