"""PoolExecutor (nodes/executor.py): callbacks keep flowing under a high message rate, errors surface, shutdown waits.

The rate test publishes /clock at ~500 Hz from a separate process, as a simulator does. On rclpy 7.1's
MultiThreadedExecutor the same subscriber stalled for 0.3-2.6 s several times in 15 s.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time

import pytest
from dreamzero_policy.nodes.executor import PoolExecutor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

PUBLISHER = """
import time, rclpy
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
rclpy.init()
node = Node("fast_clock")
pub = node.create_publisher(Clock, "/clock", 10)
end, n = time.monotonic() + {seconds}, 0
while time.monotonic() < end:
    n += 1
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = n // 500, (n % 500) * 2_000_000
    pub.publish(msg)
    time.sleep(0.002)
node.destroy_node()
rclpy.shutdown()
"""


def _spin(executor: PoolExecutor) -> threading.Thread:
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return thread


def test_callbacks_keep_flowing_at_500_hz(ros) -> None:
    node = Node("pool_rate", context=ros.context)
    arrivals: list[float] = []
    node.create_subscription(Clock, "/clock", lambda m: arrivals.append(time.monotonic()), 10)
    executor = PoolExecutor(4, context=ros.context)
    executor.add_node(node)
    thread = _spin(executor)
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER.format(seconds=8.0)], env=dict(os.environ))
    try:
        ros.wait_for(lambda: len(arrivals) > 50, 20.0, "/clock from the publisher process")
        start = len(arrivals)
        time.sleep(5.0)
        window = arrivals[start:]
    finally:
        proc.wait(timeout=30)
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)
        node.destroy_node()
    gaps = [b - a for a, b in itertools.pairwise(window)]
    assert len(window) > 5.0 * 200, f"only {len(window)} messages in 5 s at ~500 Hz"
    assert max(gaps) < 0.2, f"callbacks stalled for {max(gaps):.2f} s"


def test_callback_errors_reach_the_spinning_thread(ros) -> None:
    node = ros.node("pool_error_peer")
    pub = node.create_publisher(String, "pool_error", 10)
    target = Node("pool_error", context=ros.context)

    def boom(msg: String) -> None:
        raise RuntimeError(f"bad message {msg.data}")

    target.create_subscription(String, "pool_error", boom, 10)
    executor = PoolExecutor(2, context=ros.context)
    executor.add_node(target)
    try:
        ros.wait_for(lambda: pub.get_subscription_count() > 0, 10.0, "discovery")
        pub.publish(String(data="x"))
        with pytest.raises(RuntimeError, match="bad message x"):
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown(timeout_sec=5.0)
        target.destroy_node()


def test_shutdown_waits_for_running_callbacks(ros) -> None:
    node = Node("pool_shutdown", context=ros.context)
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    timer = node.create_timer(0.01, slow, callback_group=MutuallyExclusiveCallbackGroup())
    executor = PoolExecutor(2, context=ros.context)
    executor.add_node(node)
    thread = _spin(executor)
    try:
        assert started.wait(10.0)
        assert executor.shutdown(timeout_sec=5.0) is True
        assert finished.is_set()  # shutdown returned only after the running callback ended
    finally:
        timer.cancel()
        thread.join(timeout=5.0)
        node.destroy_node()
    with pytest.raises(ValueError):
        PoolExecutor(0, context=ros.context)


def test_shutdown_lets_queued_callbacks_finish_before_rclpy_cleans_up(ros) -> None:
    # One pool thread, a slow callback running and another one queued behind it. rclpy 7.1's
    # Executor.shutdown destroys the guard condition that a task triggers when it starts; shutting
    # rclpy down first made the queued task fail with InvalidHandle once it got the thread.
    node = Node("pool_shutdown_queue", context=ros.context)
    started = threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        time.sleep(0.3)
        ran.append("slow")

    timers = [
        node.create_timer(0.01, slow, callback_group=MutuallyExclusiveCallbackGroup()),
        node.create_timer(0.01, lambda: ran.append("quick"), callback_group=MutuallyExclusiveCallbackGroup()),
    ]
    executor = PoolExecutor(1, context=ros.context)
    executor.add_node(node)
    thread = _spin(executor)
    try:
        assert started.wait(10.0)
        deadline = time.monotonic() + 5.0
        while len(executor._queued) < 2 and time.monotonic() < deadline:  # the quick one waits for the thread
            time.sleep(0.005)
        assert len(executor._queued) == 2
        assert executor.shutdown(timeout_sec=5.0) is True
        assert executor._errors == [] and "slow" in ran and "quick" in ran
    finally:
        for timer in timers:
            timer.cancel()
        thread.join(timeout=5.0)
        node.destroy_node()
