"""~/run_task action: feedback, time limit, cancel, rejections (real rclpy action client)."""

from __future__ import annotations

import time

from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration
from rclpy.action import ActionClient
from rclpy.lifecycle import TransitionCallbackReturn

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
    goal = RunTask.Goal(instruction="put the cup in the sink", time_limit=Duration(sec=1, nanosec=500_000_000),
                        reset_session=True)
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
    handle = _wait_future(ros, client.send_goal_async(RunTask.Goal(instruction="sweep"),  # no time limit
                                                      feedback_callback=feedback.append), what="goal")
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
