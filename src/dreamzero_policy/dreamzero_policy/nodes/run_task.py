"""``~/run_task`` (dreamzero_msgs/action/RunTask): run the policy on one instruction until the time
limit, a cancel, or the node leaving the active state.

One goal at a time: a goal arriving while another runs, while the node is not active, or with an
empty instruction is rejected. Cancel is accepted (rclpy's default rejects). When the task ends,
the instruction is cleared, so no further chunks are produced and the robot holds.

The execute callback waits in a loop (sending feedback every ``FEEDBACK_PERIOD_S`` of wall time), so it
has its own reentrant callback group and never blocks the node's decision timer or services.

``time_limit`` and feedback ``elapsed_s`` are on the node's clock, so with ``use_sim_time`` a 25 s limit is
25 s of simulated time. Elapsed time only accumulates forward steps of that clock: a sim reset or bag loop
(time going backwards) neither ends the task early nor makes it wait for the old time to come back.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup

from dreamzero_msgs.action import RunTask
from dreamzero_policy.nodes.converters import duration_to_s
from dreamzero_policy.nodes.status import PolicyState

if TYPE_CHECKING:
    from dreamzero_policy.nodes.policy_node import PolicyNode

FEEDBACK_PERIOD_S = 0.1


class RunTaskServer:
    """The action server of a :class:`PolicyNode` (uses its public instruction/status API)."""

    def __init__(self, node: PolicyNode) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._running = False
        self._server = ActionServer(
            node,
            RunTask,
            "~/run_task",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )

    def _on_goal(self, goal: RunTask.Goal) -> GoalResponse:
        why = None
        if not self._node.is_active:
            why = "node is not active"
        elif not goal.instruction.strip():
            why = "empty instruction"
        elif duration_to_s(goal.time_limit) < 0:
            why = "negative time limit"
        with self._lock:
            if why is None and self._running:
                why = "another task is running"
            if why is None:
                self._running = True  # reserved until the execute callback ends
        if why is not None:
            self._node.get_logger().warning(f"run_task goal rejected: {why}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle: Any) -> RunTask.Result:
        try:
            return self._run(goal_handle)
        finally:
            with self._lock:
                self._running = False

    def _run(self, goal_handle: Any) -> RunTask.Result:
        node, goal = self._node, goal_handle.request
        result = RunTask.Result()
        ok, message, sid = node.set_instruction(goal.instruction, reset_session=goal.reset_session)
        if not ok:
            goal_handle.abort()
            result.success, result.message, result.session_id = False, message, sid
            return result
        limit = duration_to_s(goal.time_limit)
        start_chunks = node.report().chunks_published
        clock = node.get_clock()
        last_ns, elapsed = clock.now().nanoseconds, 0.0
        outcome, success, text = "succeed", True, "time limit reached"
        while True:
            rep = node.report()
            now_ns = clock.now().nanoseconds
            elapsed += max(0, now_ns - last_ns) * 1e-9
            last_ns = now_ns
            if goal_handle.is_cancel_requested:
                outcome, success, text = "canceled", False, "canceled"
                break
            if not node.is_active or not goal_handle.is_active:
                outcome, success, text = "abort", False, "policy node left the active state"
                break
            if rep.state == PolicyState.ERROR:
                outcome, success, text = "abort", False, f"policy error: {rep.message}"
                break
            if limit > 0 and elapsed >= limit:
                break
            fb = RunTask.Feedback(
                session_id=rep.session_id,
                chunk_id=rep.last_chunk_id,
                last_latency_s=rep.last_latency_s,
                state=int(rep.state),
                elapsed_s=elapsed,
            )
            goal_handle.publish_feedback(fb)
            time.sleep(FEEDBACK_PERIOD_S)
        rep = node.report()  # before the clear below starts a new session
        node.clear_instruction()  # the task is over: no more chunks, the robot holds
        if goal_handle.is_active:
            getattr(goal_handle, outcome)()
        result.success, result.message, result.session_id = success, text, rep.session_id
        result.chunks_published = rep.chunks_published - start_chunks
        return result
