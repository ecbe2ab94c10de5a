"""``~/predicted/image``: off by default (the backend is not even asked for video), switchable at run
time, throttled to ``predicted_video.max_rate_hz``, the newest predicted frame as rgb8 stamped with
the chunk's observation time; the tiny in-process model's real decoded frames come through too."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from dreamzero_policy.nodes import qos
from dreamzero_policy.nodes.converters import ns_from_time
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

PREVIEW_TOPIC = "/dreamzero_policy/predicted/image"


class VideoBackend:
    """A PolicyBackend that returns (3, 32, 48, 3) predicted frames when the request asks for them;
    the last frame's pixels carry the call number so a published frame can be traced to its call."""

    def __init__(self) -> None:
        self.calls = 0
        self.video_requests = 0

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        time.sleep(0.02)
        out: dict[str, Any] = {"actions": np.zeros((24, 8), np.float32)}
        if obs.get("return_video"):
            self.video_requests += 1
            video = np.zeros((3, 32, 48, 3), np.uint8)
            video[-1, ..., 0] = self.calls % 256
            video[-1, ..., 2] = 7
            out["video"] = video
        return out

    def reset(self) -> None:
        pass

    def metadata(self) -> dict[str, Any]:
        return {"backend": "video-test", "model_id": "video-test"}

    def close(self) -> None:
        pass


def _frames(ros) -> list[Any]:
    frames: list[Any] = []
    ros.node("test_preview_viewer").create_subscription(Image, PREVIEW_TOPIC, frames.append, qos.preview_qos)
    return frames


def test_node_predicted_video_off_by_default_switchable_and_throttled(ros, sensors, collector, make_policy):
    backend = VideoBackend()
    node = make_policy(test_backend=backend, instruction="wave", predicted_video__max_rate_hz=2.0)
    frames = _frames(ros)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    sensors()
    ros.wait_for(lambda: len(collector.chunks) >= 5, timeout=15, what="chunks")
    assert backend.video_requests == 0 and frames == []  # off by default: no decode cost, nothing sent

    res = node.set_parameters([Parameter("predicted_video.enabled", value=True)])[0]
    assert res.successful, res.reason
    ros.wait_for(lambda: len(frames) >= 1, timeout=10, what="a predicted frame")
    t0, n0, c0 = time.monotonic(), len(frames), len(collector.chunks)
    time.sleep(2.0)
    window = time.monotonic() - t0
    n_frames, n_chunks = len(frames) - n0, len(collector.chunks) - c0
    assert n_chunks >= 10, "too few chunks to show throttling"
    assert 1 <= n_frames <= 2.0 * window + 1, f"{n_frames} frames in {window:.1f} s at max 2 Hz"

    seen = list(frames)
    time.sleep(0.3)  # chunks (RELIABLE) and frames (BEST_EFFORT) reach the test on separate subscriptions
    chunk_stamps = {ns_from_time(c.header.stamp) for c in collector.chunks}
    for f in seen:
        assert (f.encoding, f.height, f.width, f.step) == ("rgb8", 32, 48, 48 * 3)
        px = np.frombuffer(bytes(f.data), np.uint8).reshape(32, 48, 3)
        assert np.all(px[..., 2] == 7) and np.all(px[..., 1] == 0)  # the last predicted frame, RGB order
        assert ns_from_time(f.header.stamp) in chunk_stamps  # stamped with its chunk's observation time

    res = node.set_parameters([Parameter("predicted_video.enabled", value=False)])[0]
    assert res.successful
    time.sleep(0.6)  # let a request in flight with return_video finish
    requests, n_off = backend.video_requests, len(frames)
    ros.wait_for(lambda: len(collector.chunks) >= c0 + n_chunks + 10, timeout=10, what="chunks with video off")
    assert backend.video_requests == requests and len(frames) == n_off


def test_node_predicted_video_from_tiny_model(ros, sensors, collector, make_policy):
    node = make_policy(
        backend="inprocess",
        checkpoint="tiny",
        instruction="pick up the cube",
        inference_timeout_s=60.0,
        predicted_video__enabled=True,
        predicted_video__max_rate_hz=10.0,
    )
    frames = _frames(ros)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    sensors()
    ros.wait_for(lambda: len(frames) >= 1 and len(collector.chunks) >= 1, timeout=60, what="a frame from tiny")
    f = frames[0]
    h, w = node.runtime.backend.pipeline.image_size  # the model's own frame size (decoded latents)
    assert (f.encoding, f.height, f.width) == ("rgb8", h, w) and len(f.data) == h * w * 3
    ros.wait_for(
        lambda: ns_from_time(f.header.stamp) in {ns_from_time(c.header.stamp) for c in collector.chunks},
        timeout=10,
        what="the frame's chunk",
    )
