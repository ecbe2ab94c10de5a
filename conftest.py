"""Workspace-wide pytest configuration and the shared real-ROS test harness.

Every test that creates an rclpy context must run inside the loopback-only network namespace that
``scripts/run_tests.sh`` (``make test``) sets up. If a test module imports rclpy and the run is not
isolated, the session stops with an explanation instead of letting DDS discovery leave the machine.

Fixtures:
    ros: a :class:`RosHarness` with its own rclpy context and a PoolExecutor spinning in a
        background thread; torn down in the safe order (executor, thread, nodes, context).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ISOLATION_ENV = "DREAMZERO_TEST_NETNS"


def pytest_collection_finish(session: pytest.Session) -> None:
    if "rclpy" in sys.modules and not os.environ.get(ISOLATION_ENV):
        pytest.exit(
            "tests that use ROS must run in a loopback-only network namespace: "
            "run them with 'make test' or 'scripts/run_tests.sh <pytest args>'",
            returncode=3,
        )


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Skips hide missing coverage: under `make test` every collected test must run.
    if os.environ.get(ISOLATION_ENV) and _skipped and exitstatus == 0:
        print(f"\nERROR: {len(_skipped)} test(s) were skipped; skipped tests are not allowed in make test:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = 1


class RosHarness:
    """Real rclpy context + a thread-pool executor (the policy node's PoolExecutor) spinning in a background thread."""

    _instances = 0

    def __init__(self) -> None:
        import rclpy
        from dreamzero_policy.nodes.executor import PoolExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        # A fresh DDS domain per test: participants of an earlier test that the middleware has not torn
        # down yet cannot leak messages into this one. Subprocesses started by the test inherit it.
        RosHarness._instances += 1
        base = int(os.environ.get("ROS_DOMAIN_ID", "42"))
        self._saved_domain = os.environ.get("ROS_DOMAIN_ID")
        self.domain_id = 1 + (base + RosHarness._instances) % 101
        os.environ["ROS_DOMAIN_ID"] = str(self.domain_id)
        rclpy.init(context=self.context, domain_id=self.domain_id)
        # The policy node's own executor (rclpy 7.1's MultiThreadedExecutor stalls under high message rates).
        self.executor = PoolExecutor(num_threads=4, context=self.context)
        self.nodes: list[Any] = []
        self._isolated: list[tuple[Any, threading.Thread]] = []
        self._thread = threading.Thread(target=self._spin, name="ros-test-executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        self._spin_executor(self.executor)

    def add(self, node: Any) -> Any:
        """Register a node with the executor (and for teardown); returns it."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def add_isolated(self, node: Any) -> Any:
        """Spin ``node`` on its own SingleThreadedExecutor thread, as its console script does."""
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        thread = threading.Thread(target=self._spin_executor, args=(executor,), daemon=True)
        thread.start()
        self._isolated.append((executor, thread))
        self.nodes.append(node)
        return node

    @staticmethod
    def _spin_executor(executor: Any) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            executor.spin()

    def node(self, name: str, **kwargs: Any) -> Any:
        """Create a plain test peer node in this harness's context."""
        from rclpy.node import Node

        return self.add(Node(name, context=self.context, **kwargs))

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.01)
        pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")

    def close(self) -> None:
        for executor, thread in self._isolated:
            executor.shutdown(timeout_sec=5.0)
            thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        for node in self.nodes:
            node.destroy_node()
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)
        if self._saved_domain is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = self._saved_domain


@pytest.fixture
def ros() -> Iterator[RosHarness]:
    harness = RosHarness()
    try:
        yield harness
    finally:
        harness.close()
