"""Activate/deactivate (and configure/cleanup) while sensors stream and the executor spins must not
kill the executor. rclpy (Jazzy) raises InvalidHandle out of spin() when a QoS event handler is
destroyed while another thread builds the wait set, so the entities the node creates and destroys at
run time carry no event handlers; the cycles check the whole node still works afterwards."""

from __future__ import annotations

from rclpy.event_handler import EventHandler
from rclpy.lifecycle import TransitionCallbackReturn


def _event_handlers(node) -> int:
    return sum(isinstance(w, EventHandler) for w in node.waitables)


def test_node_runtime_entities_have_no_event_handlers(ros, sensors, make_policy, scripted_backend):
    node = make_policy(test_backend=scripted_backend(delay_s=0.01), instruction="hold")
    base = _event_handlers(node)  # status/diagnostics publishers: live as long as the node
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert _event_handlers(node) == base  # lifecycle publishers added none
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert len(list(node.subscriptions)) >= 5 and _event_handlers(node) == base  # subscriptions added none


def test_node_survives_activation_cycles_under_traffic(ros, sensors, collector, make_policy, scripted_backend):
    node = make_policy(test_backend=scripted_backend(delay_s=0.005), instruction="hold", publish_joint_trajectory=True)
    sensors(rate_hz=50.0)
    for cycle in range(6):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, cycle
        for _ in range(3):
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS, cycle
            n = len(collector.chunks)
            ros.wait_for(lambda n=n: len(collector.chunks) > n, timeout=15, what=f"chunks in cycle {cycle}")
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS, cycle
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS, cycle
    assert ros._thread.is_alive(), "the executor's spin thread died"
