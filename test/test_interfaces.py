"""dreamzero_msgs: generated classes import under real rclpy, serialize losslessly, and travel over DDS."""

from __future__ import annotations

import math

import pytest
from builtin_interfaces.msg import Duration, Time
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

from dreamzero_msgs.action import RunTask
from dreamzero_msgs.msg import ActionChunk, ObservationStamp, PolicyStatus
from dreamzero_msgs.srv import SetInstruction


def make_chunk(chunk_id: int = 3) -> ActionChunk:
    names = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper"]
    horizon = 24
    msg = ActionChunk()
    msg.header.stamp = Time(sec=1700000000, nanosec=123456789)
    msg.header.frame_id = "base_link"
    msg.session_id = "session-0001"
    msg.chunk_id = chunk_id
    msg.embodiment = "droid_franka"
    msg.action_space = ActionChunk.JOINT_POSITION
    msg.step_duration = Duration(sec=0, nanosec=66_666_667)
    msg.horizon = horizon
    msg.execute_horizon = 8
    msg.names = names
    # values that do not survive a float32 round trip, to catch a wrong field type
    msg.data = [math.pi * (i + 1) / 7.0 + 1e-12 * i for i in range(horizon * len(names))]
    msg.inference_started = Time(sec=1700000000, nanosec=200000000)
    msg.inference_latency = Duration(sec=1, nanosec=500_000_000)
    return msg


def fields(msg: object) -> dict[str, object]:
    return {name: getattr(msg, name) for name in msg.get_fields_and_field_types()}


def test_action_space_constants_are_distinct() -> None:
    values = [
        ActionChunk.JOINT_POSITION,
        ActionChunk.JOINT_POSITION_DELTA,
        ActionChunk.JOINT_VELOCITY,
        ActionChunk.EEF_POSE,
        ActionChunk.EEF_POSE_DELTA,
    ]
    assert len(set(values)) == len(values)
    states = [
        PolicyStatus.UNCONFIGURED,
        PolicyStatus.INACTIVE,
        PolicyStatus.WARMING_UP,
        PolicyStatus.WAITING_FOR_INPUT,
        PolicyStatus.RUNNING,
        PolicyStatus.BACKEND_ERROR,
        PolicyStatus.ERROR,
    ]
    assert len(set(states)) == len(states)


def test_action_chunk_data_is_float64_row_major() -> None:
    msg = make_chunk()
    types = msg.get_fields_and_field_types()
    assert types["data"] == "sequence<double>"
    assert types["chunk_id"] == "uint64"
    back = deserialize_message(serialize_message(msg), ActionChunk)
    assert list(back.data) == list(msg.data)  # bit-exact, not float32
    assert len(back.data) == back.horizon * len(back.names)


def _status() -> PolicyStatus:
    msg = PolicyStatus()
    msg.state = PolicyStatus.WAITING_FOR_INPUT
    msg.session_id = "s"
    msg.last_chunk_id = 7
    msg.chunks_published = 8
    msg.last_latency_s = 0.25
    msg.dropped_observations = 3
    msg.stale_inputs = 2
    msg.rejected_inputs = 1
    msg.backend = "inprocess"
    msg.model_id = "tiny"
    msg.message = "camera /wrist/image_raw is stale (0.8 s > 0.2 s)"
    return msg


def _obs_stamp() -> ObservationStamp:
    msg = ObservationStamp()
    msg.session_id = "s"
    msg.chunk_id = 9
    msg.topics = ["/cam/image_raw", "/joint_states"]
    msg.stamps = [Time(sec=5, nanosec=1), Time(sec=5, nanosec=2)]
    msg.age_s = [0.01, 0.002]
    return msg


@pytest.mark.parametrize(
    "msg",
    [
        make_chunk(),
        _status(),
        _obs_stamp(),
        SetInstruction.Request(instruction="pick up the cup", reset_session=True),
        SetInstruction.Response(success=False, message="empty instruction", session_id="s"),
        RunTask.Goal(instruction="open the drawer", time_limit=Duration(sec=30), reset_session=True),
        RunTask.Result(success=True, message="time limit reached", session_id="s", chunks_published=42),
        RunTask.Feedback(session_id="s", chunk_id=4, last_latency_s=0.5, state=PolicyStatus.RUNNING, elapsed_s=2.0),
    ],
    ids=lambda m: type(m).__name__,
)
def test_serialization_round_trip(msg: object) -> None:
    back = deserialize_message(serialize_message(msg), type(msg))
    assert back == msg
    assert fields(back) == fields(msg)


def test_action_chunk_travels_between_nodes(ros) -> None:
    qos = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.VOLATILE)
    talker = ros.node("chunk_talker")
    listener = ros.node("chunk_listener")
    received: list[ActionChunk] = []
    listener.create_subscription(ActionChunk, "/dreamzero/action_chunk", received.append, qos)
    pub = talker.create_publisher(ActionChunk, "/dreamzero/action_chunk", qos)
    ros.wait_for(lambda: pub.get_subscription_count() > 0, what="subscription discovery")
    sent = [make_chunk(chunk_id=i) for i in range(3)]
    for msg in sent:
        pub.publish(msg)
    ros.wait_for(lambda: len(received) >= 3, what="3 ActionChunks")
    assert [m.chunk_id for m in received] == [0, 1, 2]
    assert received[0] == sent[0]
    assert received[2].data.tolist() == sent[2].data.tolist()
