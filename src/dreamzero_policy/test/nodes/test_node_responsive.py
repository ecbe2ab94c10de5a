"""Callbacks stay responsive while the worker runs a slow inference (the model never runs in a callback)."""

from __future__ import annotations

import time

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn


def test_node_callbacks_responsive_during_inference(ros, sensors, collector, make_policy, scripted_backend):
    backend = scripted_backend(delay_s=0.02)
    node = make_policy(test_backend=backend, instruction="hold still", inference_timeout_s=30.0)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    peer = sensors()
    ros.wait_for(lambda: len(collector.chunks) >= 1, timeout=15, what="a first chunk")

    backend.delay_s = 2.0  # a slow model: every inference now takes 2 s
    ros.wait_for(lambda: node.runtime.worker.running_for_s > 0.1, timeout=5, what="a slow inference running")
    node.arrival_delays_s.clear()
    node.inputs.image_dispatch_s.clear()
    node.inputs.joint_dispatch_s.clear()
    sent_before = len(peer.published)
    time.sleep(1.0)
    assert node.runtime.worker.busy  # the measurement window lies inside one inference
    delays = np.array(list(node.arrival_delays_s))
    sent = len(peer.published) - sent_before
    # Every published message was handled during the inference (4 messages per peer tick), and
    # none waited for the model: the worst arrival delay is a small fraction of the inference time.
    assert sent >= 10
    assert len(delays) >= 0.8 * 4 * sent
    assert delays.max() < 0.25, f"callback delay {delays.max():.3f} s while inference ran"
    # The middleware reports when it received each message: reception -> callback is measured for every
    # message, is never negative, and is part of the end-to-end delay (header stamp -> callback).
    dispatch = np.array(list(node.inputs.image_dispatch_s) + list(node.inputs.joint_dispatch_s))
    assert len(dispatch) >= 0.8 * 4 * sent
    assert dispatch.min() >= 0.0 and dispatch.max() < 0.25
    assert np.median(dispatch) <= np.median(delays) + 1e-3
    # Status keeps being published while the worker is busy, too.
    n_status = len(collector.status)
    time.sleep(0.35)
    assert len(collector.status) > n_status
