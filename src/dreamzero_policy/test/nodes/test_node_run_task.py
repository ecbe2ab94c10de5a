"""~/run_task action: feedback, time limit (on sim time too), cancel, rejections (real rclpy action client)."""

from __future__ import annotations

import time

from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration, Time
from dreamzero_policy.nodes.converters import ns_from_time
from rclpy.action import ActionClient
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from dreamzero_msgs.action import RunTask


def _wait_future(ros, future, timeout=15.0, what="future"):
    ros.wait_for(future.done, timeout=timeout, what=what)
    return future.result()


def _setup(ros, sensors, make_policy, scripted_backend):
    node = make_policy(test_backend=scripted_backend(delay_s=0.02))
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    sensors()
    client = ActionClient(ros.node("test_task_client"), RunTask, "/dreamzero_policy/run_task")
    assert client.wait_for_server(timeout_sec=5)
    return node, client


def test_node_run_task_time_limit_with_feedback(ros, sensors, collector, make_policy, scripted_backend):
    _, client = _setup(ros, sensors, make_policy, scripted_backend)
    feedback = []
    goal = RunTask.Goal(
        instruction="put the cup in the sink", time_limit=Duration(sec=1, nanosec=500_000_000), reset_session=True
    )
    handle = _wait_future(ros, client.send_goal_async(goal, feedback_callback=feedback.append), what="goal")
    assert handle.accepted
    wrapped = _wait_future(ros, handle.get_result_async(), timeout=20, what="result")
    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED
    res = wrapped.result
    assert res.success and res.chunks_published >= 1 and res.session_id
    assert feedback and any(f.feedback.state == 4 for f in feedback)  # RUNNING seen in feedback
    assert feedback[-1].feedback.elapsed_s <= 1.6
    assert {f.feedback.session_id for f in feedback} == {res.session_id}
    # The task is over: the node holds (no chunks) until a new instruction.
    time.sleep(0.2)
    n = len(collector.chunks)
    time.sleep(0.5)
    assert len(collector.chunks) == n


def test_node_run_task_cancel_and_rejections(ros, sensors, collector, make_policy, scripted_backend):
    node, client = _setup(ros, sensors, make_policy, scripted_backend)
    empty = _wait_future(ros, client.send_goal_async(RunTask.Goal(instruction=" ")), what="empty goal")
    assert not empty.accepted

    feedback = []
    handle = _wait_future(
        ros,
        client.send_goal_async(
            RunTask.Goal(instruction="sweep"),  # no time limit
            feedback_callback=feedback.append,
        ),
        what="goal",
    )
    assert handle.accepted
    ros.wait_for(lambda: len(collector.chunks) >= 1 and feedback, timeout=15, what="chunks and feedback")
    second = _wait_future(ros, client.send_goal_async(RunTask.Goal(instruction="other")), what="second goal")
    assert not second.accepted  # one task at a time
    cancel = _wait_future(ros, handle.cancel_goal_async(), what="cancel response")
    assert len(cancel.goals_canceling) == 1  # accepted (rclpy's default would reject)
    wrapped = _wait_future(ros, handle.get_result_async(), what="result")
    assert wrapped.status == GoalStatus.STATUS_CANCELED
    assert not wrapped.result.success and wrapped.result.chunks_published >= 1

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    inactive = _wait_future(ros, client.send_goal_async(RunTask.Goal(instruction="sweep")), what="goal")
    assert not inactive.accepted


class SlowSimClock:
    """A test peer publishing /clock from a wall-time timer, sim time advancing at ``rate`` x real time."""

    def __init__(self, ros, start_s: float = 100.0, rate: float = 0.25, period_s: float = 0.01) -> None:
        from rosgraph_msgs.msg import Clock

        self.node = ros.node("test_sim_clock")
        self._pub = self.node.create_publisher(Clock, "/clock", 10)
        self._msg = Clock
        self.now_ns = int(start_s * 1e9)
        self._step_ns = int(rate * period_s * 1e9)
        self.node.create_timer(period_s, self._tick)  # this node is on wall time

    def _tick(self) -> None:
        self.now_ns += self._step_ns
        self._pub.publish(self._msg(clock=Time(sec=self.now_ns // 10**9, nanosec=self.now_ns % 10**9)))


def test_node_run_task_time_limit_is_sim_time(ros, sensors, collector, make_policy, scripted_backend):
    """With use_sim_time and /clock at 0.25x real time, a 1 s limit lasts 1 s of sim time (~4 s wall)."""
    clock = SlowSimClock(ros)
    node = make_policy(test_backend=scripted_backend(delay_s=0.02), use_sim_time=True)
    ros.wait_for(lambda: node.get_clock().now().nanoseconds >= 100 * 10**9, timeout=10, what="sim clock")
    peer = sensors()
    peer.node.set_parameters([Parameter("use_sim_time", value=True)])  # stamps on the same sim clock
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    client = ActionClient(ros.node("test_task_client"), RunTask, "/dreamzero_policy/run_task")
    assert client.wait_for_server(timeout_sec=5)

    feedback = []
    goal = RunTask.Goal(instruction="put the cup in the sink", time_limit=Duration(sec=1), reset_session=True)
    sim0, wall0 = clock.now_ns, time.monotonic()
    handle = _wait_future(ros, client.send_goal_async(goal, feedback_callback=feedback.append), what="goal")
    assert handle.accepted
    wrapped = _wait_future(ros, handle.get_result_async(), timeout=30, what="result")
    wall, sim = time.monotonic() - wall0, (clock.now_ns - sim0) / 1e9
    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED and wrapped.result.success
    assert sim >= 1.0  # the limit was reached on the sim clock ...
    assert wall >= 3.0, f"task ended after {wall:.2f} s wall / {sim:.2f} s sim: limit measured on wall time"
    elapsed = [f.feedback.elapsed_s for f in feedback]
    assert elapsed == sorted(elapsed) and 0.85 <= elapsed[-1] < 1.0 + 1e-6  # ... and feedback counts sim time
    # Chunks carry sim-clock times: inference_started between the observation and the sim clock now.
    assert wrapped.result.chunks_published >= 1
    chunks = list(collector.chunks)
    assert chunks
    for c in chunks:
        stamp, started = ns_from_time(c.header.stamp), ns_from_time(c.inference_started)
        assert 100 * 10**9 <= stamp <= started <= clock.now_ns, (stamp, started, clock.now_ns)
