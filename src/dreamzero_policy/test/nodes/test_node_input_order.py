"""Sensor messages of one topic are handled in order even on a MultiThreadedExecutor.

The bench (4 executor threads, loaded machine) showed consecutive JointStates from one shared
reentrant group running on two threads, the older landing second: "time went backwards", buffers
cleared, new session. The structural asserts pin the fix (one mutually exclusive group per sensor
subscription); the burst is the end-to-end check that rising stamps never look like a time jump.
(On this harness's executor the burst alone did not reproduce the race with the old shared group.)"""

from __future__ import annotations

import time

from builtin_interfaces.msg import Time
from dreamzero_policy.nodes import qos
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Header

NAMES = [*(f"panda_joint{i}" for i in range(1, 8)), "gripper"]


def test_node_sensor_callbacks_keep_per_topic_order(ros, make_policy, scripted_backend):
    node = make_policy(test_backend=scripted_backend(delay_s=0.02), instruction="hold")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    sensor_topics = {"/joint_states", "/sim/exterior_1/image_raw", "/sim/exterior_2/image_raw", "/sim/wrist/image_raw"}
    groups = {s.topic_name: s.callback_group for s in node.subscriptions if s.topic_name in sensor_topics}
    assert set(groups) == sensor_topics
    assert all(isinstance(g, MutuallyExclusiveCallbackGroup) for g in groups.values())
    assert len({id(g) for g in groups.values()}) == len(groups)  # one group per topic

    pub = ros.node("test_joint_burst").create_publisher(JointState, "/joint_states", qos.joint_state_qos)
    ros.wait_for(lambda: pub.get_subscription_count() >= 1, timeout=10, what="the node's subscription")
    t0 = node.get_clock().now().nanoseconds
    n = 0
    for _round in range(150):
        for _ in range(8):  # bursts: several messages wait in the reader at once (its depth is 5)
            n += 1
            ns = t0 + n * 1_000_000
            pub.publish(
                JointState(
                    header=Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9)), name=NAMES, position=[0.1] * 8
                )
            )
        time.sleep(0.005)
    time.sleep(0.3)
    assert len(node.inputs.joint_delays_s) >= 150, f"only {len(node.inputs.joint_delays_s)} of {n} handled"
    assert node.runtime.buffers.time_jumps == 0, node.runtime.buffers.last_jump_message
