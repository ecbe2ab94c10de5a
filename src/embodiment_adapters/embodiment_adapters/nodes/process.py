"""How the workspace's node executables run and stop: one helper for the adapter, policy and sim nodes.

Ctrl-C (and ``ros2 launch``'s SIGINT / SIGTERM) must stop a node cleanly with exit code 0, whatever it is doing.
rclpy's default handling does two things at an arbitrary moment: its signal thread shuts the context down while
the main thread may be inside a callback or the executor (Jazzy 7.1 wheels: SIGSEGV seen in CI, ros2/rclpy#215
is the same class), and Python raises ``KeyboardInterrupt`` between any two bytecodes (seen: inside rclpy's
``Task.__init__``, which then fails in ``__del__``). So the nodes take the signals themselves:

* ``rclpy.init(signal_handler_options=NO)`` and Python handlers for SIGINT/SIGTERM that only set a flag;
* the main thread spins in short ``spin_once`` slices and checks the flag between them (stop latency <= one
  slice, ``SLICE_S``);
* then, in this order on the main thread: the executor stops dispatching and its running callbacks finish, the
  node's own clean-up runs (e.g. stop the model worker), the node is destroyed, the context is shut down.

The executor's ``shutdown()`` must wait for running callbacks: a SingleThreadedExecutor runs them on this thread,
and the policy node's ``PoolExecutor`` waits for its pool. rclpy 7.1's MultiThreadedExecutor does neither (its
``shutdown()`` returns while callbacks still run, and a callback publishing into a destroyed node crashed the
adapter with SIGSEGV), so it is not used here.

A signal while the node is being built lets the constructor finish and then stops.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

SLICE_S = 0.1  # s: longest wait between checks of the stop flag
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

N = TypeVar("N", bound=Node)


def run_node(
    make_node: Callable[[], N],
    make_executor: Callable[[], Executor] = SingleThreadedExecutor,
    args: list[str] | None = None,
    before_destroy: Callable[[N], None] | None = None,
    on_started: Callable[[N], None] | None = None,
) -> int:
    """Init rclpy, build the node, spin it on ``make_executor()`` until SIGINT/SIGTERM or context shutdown; returns 0.

    ``before_destroy(node)`` runs after every callback has finished and before ``destroy_node``.
    """
    stop = threading.Event()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in STOP_SIGNALS:  # before init: a signal during start-up must not raise KeyboardInterrupt
        previous[sig] = signal.signal(sig, on_signal)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node: N | None = None
    executor = make_executor()  # executors need an initialised context
    try:
        node = make_node()
        if on_started is not None:
            on_started(node)
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SLICE_S)
    except ExternalShutdownException:
        pass
    finally:
        executor.shutdown(timeout_sec=5.0)
        if node is not None:
            if before_destroy is not None:
                before_destroy(node)
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
