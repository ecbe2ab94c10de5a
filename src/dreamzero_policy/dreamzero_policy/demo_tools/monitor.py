"""The demo's observer and operator: watches policy status and traffic, sends the RunTask goal.

Everything it learns is kept in plain attributes guarded by one lock, so the demo's main thread can
poll them while the executor thread runs the callbacks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from builtin_interfaces.msg import Duration
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState

from dreamzero_msgs.action import RunTask
from dreamzero_msgs.msg import ActionChunk, PolicyStatus
from dreamzero_policy.demo_tools.episode import POLICY_STATES

STATUS_TOPIC = "/dreamzero/status"
CHUNK_TOPIC = "/dreamzero/action_chunk"


def state_name(state: int) -> str:
    return POLICY_STATES[state] if 0 <= state < len(POLICY_STATES) else f"state {state}"


class DemoMonitor:
    """Counts chunks / joint states, remembers the newest PolicyStatus, runs one RunTask goal."""

    def __init__(
        self, context: Any, run_task_action: str, node_name: str = "demo_monitor", use_sim_time: bool = False
    ) -> None:
        self.node = Node(
            node_name, context=context, parameter_overrides=[Parameter("use_sim_time", value=bool(use_sim_time))]
        )
        self._lock = threading.Lock()
        self.status: PolicyStatus | None = None
        self.states_seen: set[str] = set()
        self.chunks = 0
        self.joint_states = 0
        self.goal_result: Any = None
        self.goal_error: str | None = None
        self.goal_done = threading.Event()
        self.feedback: Any = None
        # BEST_EFFORT matches both reliable and best-effort publishers.
        status_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(PolicyStatus, STATUS_TOPIC, self._on_status, status_qos)
        self.node.create_subscription(ActionChunk, CHUNK_TOPIC, self._on_chunk, QoSProfile(depth=10))
        self.node.create_subscription(JointState, "/joint_states", self._on_joint_state, qos_profile_sensor_data)
        self._client = ActionClient(self.node, RunTask, run_task_action)
        self._goal_handle: Any = None

    # ------------------------------------------------------------------ callbacks
    def _on_status(self, msg: PolicyStatus) -> None:
        with self._lock:
            self.status = msg
            self.states_seen.add(state_name(msg.state))

    def _on_chunk(self, _msg: ActionChunk) -> None:
        with self._lock:
            self.chunks += 1

    def _on_joint_state(self, _msg: JointState) -> None:
        with self._lock:
            self.joint_states += 1

    # ------------------------------------------------------------------ queries
    def state(self) -> str | None:
        with self._lock:
            return None if self.status is None else state_name(self.status.state)

    def last_status_text(self) -> str:
        with self._lock:
            s = self.status
        if s is None:
            return "no /dreamzero/status message received"
        return f"{state_name(s.state)}: {s.message or '(no message)'}"

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.chunks, self.joint_states

    def now_s(self) -> float:
        """The node clock in s: sim time (from /clock; 0 before the first) with ``use_sim_time``."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def action_server_ready(self) -> bool:
        return self._client.server_is_ready()

    # ------------------------------------------------------------------ the task
    def send_goal(self, instruction: str, time_limit_s: float) -> None:
        """Send the RunTask goal (asynchronously); :attr:`goal_done` is set on result or rejection."""
        goal = RunTask.Goal(instruction=instruction, reset_session=True)
        whole = int(time_limit_s)
        goal.time_limit = Duration(sec=whole, nanosec=round((time_limit_s - whole) * 1e9))
        future = self._client.send_goal_async(goal, feedback_callback=self._on_feedback)
        future.add_done_callback(self._on_goal_response)

    def _on_feedback(self, feedback_msg: Any) -> None:
        with self._lock:
            self.feedback = feedback_msg.feedback

    def _on_goal_response(self, future: Any) -> None:
        try:
            handle = future.result()
        except Exception as exc:  # transport failure
            self.goal_error = f"sending the RunTask goal failed: {exc}"
            self.goal_done.set()
            return
        if not handle.accepted:
            self.goal_error = f"the policy rejected the RunTask goal ({self.last_status_text()})"
            self.goal_done.set()
            return
        self._goal_handle = handle
        handle.get_result_async().add_done_callback(self._on_result)

    def _on_result(self, future: Any) -> None:
        try:
            self.goal_result = future.result().result
        except Exception as exc:
            self.goal_error = f"RunTask result failed: {exc}"
        self.goal_done.set()

    def cancel_goal(self, timeout: float = 3.0) -> None:
        """Cancel a running goal (best effort, used when the demo aborts)."""
        if self._goal_handle is None or self.goal_done.is_set():
            return
        done = threading.Event()
        self._goal_handle.cancel_goal_async().add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
