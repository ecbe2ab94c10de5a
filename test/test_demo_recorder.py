"""The demo's bag recorder records real ROS messages into an MCAP bag that ``rosbags`` reads back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from dreamzero_policy.demo_tools.recorder import BagRecorder, adapted_qos, message_class
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from dreamzero_msgs.msg import ActionChunk


def _image(i: int) -> Image:
    msg = Image(height=4, width=6, encoding="rgb8", step=18)
    msg.data = bytes(np.full(72, i % 256, np.uint8))
    return msg


def test_recorder_writes_every_existing_topic_and_reads_back(ros, tmp_path: Path) -> None:
    peer = ros.node("demo_recorder_peer")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    instr_pub = peer.create_publisher(String, "/dreamzero_policy/instruction", latched)
    instr_pub.publish(String(data="pick up the cube"))  # before the recorder exists: only latching delivers it
    js_pub = peer.create_publisher(JointState, "/joint_states", 10)
    img_pub = peer.create_publisher(Image, "/sim/wrist/image_raw", qos_profile_sensor_data)
    chunk_pub = peer.create_publisher(ActionChunk, "/dreamzero/action_chunk", 10)

    topics = (
        "/joint_states",
        "/sim/wrist/image_raw",
        "/dreamzero/action_chunk",
        "/dreamzero_policy/instruction",
        "/tf",
    )
    rec = BagRecorder(ros.context, tmp_path / "bag", topics)
    ros.add(rec.node)
    ros.wait_for(lambda: len(rec.summary.topics) == 4, timeout=10.0, what="recorder to subscribe to 4 topics")
    for sub_topic in ("/joint_states", "/sim/wrist/image_raw", "/dreamzero/action_chunk"):
        ros.wait_for(lambda t=sub_topic: peer.count_subscribers(t) >= 1, what=f"subscription on {sub_topic}")
    time.sleep(0.3)  # let the subscriptions match their publishers
    n = 20
    for i in range(n):
        js_pub.publish(JointState(name=["a", "b"], position=[0.1 * i, -0.1 * i]))
        img_pub.publish(_image(i))
        chunk = ActionChunk(
            chunk_id=i, horizon=2, names=["a"], data=[1.0 * i, 2.0 * i], step_duration=Duration(nanosec=66_666_667)
        )
        chunk_pub.publish(chunk)
        time.sleep(0.01)
    ros.wait_for(
        lambda: (
            rec.message_counts.get("/joint_states", 0) == n
            and rec.message_counts.get("/dreamzero/action_chunk", 0) == n
        ),
        what="messages recorded",
    )
    summary = rec.close()
    assert summary.missing == ["/tf"]
    assert summary.topics["/dreamzero_policy/instruction"].messages == 1

    with AnyReader([tmp_path / "bag"]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {
            "/joint_states": "sensor_msgs/msg/JointState",
            "/sim/wrist/image_raw": "sensor_msgs/msg/Image",
            "/dreamzero/action_chunk": "dreamzero_msgs/msg/ActionChunk",
            "/dreamzero_policy/instruction": "std_msgs/msg/String",
        }
        got: dict[str, list] = {t: [] for t in types}
        for conn, _t, raw in reader.messages():
            got[conn.topic].append(reader.deserialize(raw, conn.msgtype))
    assert [m.chunk_id for m in got["/dreamzero/action_chunk"]] == list(range(n))
    assert list(got["/dreamzero/action_chunk"][5].data) == [5.0, 10.0]
    assert got["/dreamzero_policy/instruction"][0].data == "pick up the cube"
    assert [round(m.position[0], 6) for m in got["/joint_states"]] == [round(0.1 * i, 6) for i in range(n)]
    assert len(got["/sim/wrist/image_raw"]) >= n // 2  # best effort, but loopback should deliver nearly all
    assert got["/sim/wrist/image_raw"][3].data.tolist() == [3] * 72


def test_recorder_refuses_to_overwrite(ros, tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        BagRecorder(ros.context, tmp_path / "bag", ["/joint_states"])


def test_adapted_qos_follows_publishers() -> None:
    reliable_latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    q = adapted_qos([reliable_latched])
    assert (q.reliability, q.durability) == (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)
    q = adapted_qos([reliable_latched, qos_profile_sensor_data])
    assert (q.reliability, q.durability) == (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)


def test_message_class_resolves_and_rejects() -> None:
    assert message_class("sensor_msgs/msg/Image") is Image
    with pytest.raises(ValueError, match="not installed"):
        message_class("sensor_msgs/msg/NoSuchThing")
    with pytest.raises(ValueError, match="not a message type"):
        message_class("Image")
