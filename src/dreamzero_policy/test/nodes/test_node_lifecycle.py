"""Lifecycle transitions of the policy node: via trigger_* and via the real change_state service."""

from __future__ import annotations

import time

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.lifecycle import TransitionCallbackReturn

from dreamzero_msgs.msg import PolicyStatus

SUCCESS = TransitionCallbackReturn.SUCCESS


def test_node_lifecycle_full_cycle(ros, sensors, collector, make_policy, scripted_backend):
    backend = scripted_backend(delay_s=0.02)
    node = make_policy(test_backend=backend, instruction="push the button")
    sensors()
    ros.wait_for(
        lambda: any(s.state == PolicyStatus.UNCONFIGURED for s in collector.status),
        timeout=5,
        what="UNCONFIGURED status before configure",
    )
    assert node.trigger_configure() == SUCCESS
    assert backend.calls == 1 and backend.resets == 1  # warm-up ran once and left no context behind
    ros.wait_for(
        lambda: collector.status and collector.status[-1].state == PolicyStatus.INACTIVE,
        timeout=5,
        what="INACTIVE status",
    )
    time.sleep(0.3)
    assert collector.chunks == []  # configured but inactive: no output

    assert node.trigger_activate() == SUCCESS
    ros.wait_for(lambda: len(collector.chunks) >= 2, timeout=15, what="chunks while active")

    assert node.trigger_deactivate() == SUCCESS
    assert not node.runtime.worker.busy  # drained
    n = len(collector.chunks)
    time.sleep(0.4)
    assert len(collector.chunks) == n
    assert not backend.closed  # deactivate keeps the model

    assert node.trigger_activate() == SUCCESS  # re-activation: a new session
    ros.wait_for(lambda: len(collector.chunks) > n, timeout=15, what="chunks after re-activation")
    assert collector.chunks[-1].session_id != collector.chunks[n - 1].session_id

    assert node.trigger_deactivate() == SUCCESS
    assert node.trigger_cleanup() == SUCCESS
    assert backend.closed and node.runtime is None  # cleanup frees the model
    ros.wait_for(
        lambda: collector.status[-1].state == PolicyStatus.UNCONFIGURED, timeout=5, what="UNCONFIGURED after cleanup"
    )


def test_node_configure_failure_keeps_node_alive(ros, collector, make_policy, scripted_backend):
    node = make_policy(test_backend=scripted_backend(), embodiment="no_such_robot")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    ros.wait_for(
        lambda: any(s.state == PolicyStatus.ERROR and "no_such_robot" in s.message for s in collector.status),
        timeout=5,
        what="ERROR status with the reason",
    )
    assert node.runtime is None and node.status.state == PolicyStatus.ERROR  # alive, nothing loaded

    # A backend that fails to build (model load error) is a reported FAILURE too.
    def broken(params, spec):
        raise RuntimeError("GPU out of memory (simulated)")

    from dreamzero_policy.nodes.policy_node import PolicyNode

    node2 = ros.add(PolicyNode("policy_broken", backend_factory=broken, context=ros.context))
    assert node2.trigger_configure() == TransitionCallbackReturn.FAILURE
    ros.wait_for(
        lambda: any("GPU out of memory" in s.message for s in collector.status),
        timeout=5,
        what="backend failure reason",
    )
    assert node2.runtime is None


def test_node_lifecycle_via_change_state_service(ros, sensors, collector, make_policy, scripted_backend):
    make_policy(test_backend=scripted_backend(delay_s=0.02), instruction="push the button")
    sensors()
    client_node = ros.node("test_lifecycle_manager")
    change = client_node.create_client(ChangeState, "/dreamzero_policy/change_state")
    get = client_node.create_client(GetState, "/dreamzero_policy/get_state")
    assert change.wait_for_service(timeout_sec=5) and get.wait_for_service(timeout_sec=5)

    def transition(tid: int) -> bool:
        resp = change.call(ChangeState.Request(transition=Transition(id=tid)), timeout_sec=10)
        return resp is not None and resp.success

    assert transition(Transition.TRANSITION_CONFIGURE)
    assert get.call(GetState.Request(), timeout_sec=5).current_state.id == State.PRIMARY_STATE_INACTIVE
    assert transition(Transition.TRANSITION_ACTIVATE)
    assert get.call(GetState.Request(), timeout_sec=5).current_state.id == State.PRIMARY_STATE_ACTIVE
    ros.wait_for(lambda: len(collector.chunks) >= 1, timeout=15, what="a chunk")
    assert transition(Transition.TRANSITION_DEACTIVATE)
    assert transition(Transition.TRANSITION_CLEANUP)
    assert get.call(GetState.Request(), timeout_sec=5).current_state.id == State.PRIMARY_STATE_UNCONFIGURED
