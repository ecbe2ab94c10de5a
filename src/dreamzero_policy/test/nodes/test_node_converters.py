"""Message conversion: every ActionChunk field, time round trips, status constants, image pre-check."""

from __future__ import annotations

import numpy as np
from dreamzero_policy.core.images import check_image
from dreamzero_policy.nodes import converters as conv
from dreamzero_policy.nodes.status import PolicyState
from dreamzero_policy.runtime import load_io_spec, make_chunk
from sensor_msgs.msg import CompressedImage, Image

from dreamzero_msgs.msg import PolicyStatus


def test_node_converters_policy_state_matches_msg_constants():
    for state in PolicyState:
        assert getattr(PolicyStatus, state.name) == state.value


def test_node_converters_time_round_trip():
    for ns in (0, 1, 999_999_999, 1_700_000_000_123_456_789):
        assert conv.ns_from_time(conv.time_from_ns(ns)) == ns
    d = conv.duration_from_ns(1_500_000_000)
    assert (d.sec, d.nanosec) == (1, 500_000_000) and conv.duration_to_s(d) == 1.5


def test_node_converters_chunk_fields():
    spec = load_io_spec("droid_sim")
    data = np.arange(24 * 8, dtype=np.float64).reshape(24, 8) / 100
    chunk = make_chunk(
        spec,
        data,
        stamp_ns=5_000_000_123,
        session_id="abc",
        chunk_id=3,
        inference_started_ns=5_100_000_000,
        inference_latency_ns=250_000_000,
        frame_id="base_link",
    )
    msg = conv.chunk_to_msg(chunk)
    assert conv.ns_from_time(msg.header.stamp) == 5_000_000_123 and msg.header.frame_id == "base_link"
    assert (msg.session_id, msg.chunk_id, msg.embodiment) == ("abc", 3, "droid_franka_sim")
    assert msg.horizon == 24 and msg.execute_horizon == 8 and list(msg.names) == list(spec.action_names)
    assert np.array_equal(np.asarray(msg.data).reshape(24, 8), data)
    assert conv.duration_to_s(msg.inference_latency) == 0.25
    traj = conv.chunk_to_joint_trajectory(chunk, spec.state_joints)
    assert np.allclose(traj.points[5].positions, data[5, :7])
    assert conv.ns_from_time(traj.points[5].time_from_start) == 6 * chunk.step_duration_ns


def test_node_converters_check_image_on_rclpy_messages():
    # The node's callback check (core.images.check_image) on real rclpy messages (array.array data).
    good = Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12))
    assert check_image(good) is None
    assert "unsupported image encoding" in check_image(Image(height=2, width=2, encoding="xyz", step=6, data=bytes(12)))
    assert "expected step*height" in check_image(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(7)))
    # step covers the width in pixels but not in bytes (rgb8 = 3 B/px): the decoder would reject it.
    assert "shorter than one row" in check_image(Image(height=2, width=2, encoding="rgb8", step=2, data=bytes(4)))
    assert "no data" in check_image(CompressedImage(format="jpeg"))
    assert "depth" in check_image(CompressedImage(format="16UC1; compressedDepth", data=bytes(3)))
    assert check_image(CompressedImage(format="jpeg", data=bytes(3))) is None  # payload decoded later
