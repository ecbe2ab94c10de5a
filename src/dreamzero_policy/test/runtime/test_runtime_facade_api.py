"""PolicyRuntime's public API around sessions and bad frames, and the decoder's header check:
``check_image`` agrees with the decoder, decode failures in the worker are ``bad_input`` (no new
session), ``clear_instruction``, and the reason a tick started a new session."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from dreamzero_policy.core.errors import ImageDecodeError
from dreamzero_policy.core.images import _RAW_ENCODINGS, SUPPORTED_ENCODINGS, check_image, decode_any_image
from dreamzero_policy.runtime import BufferLimits, PolicyRuntime, RuntimeEvent, load_io_spec

SPEC = load_io_spec("droid_sim")
NS = 1_000_000_000
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper"]


class CountingBackend:
    """A PolicyBackend returning constant actions; records the session ids it was asked for."""

    def __init__(self) -> None:
        self.sessions: list[str] = []

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        self.sessions.append(obs["session_id"])
        return {"actions": np.zeros((24, SPEC.action_dim), np.float32)}

    def reset(self) -> None:
        pass

    def metadata(self) -> dict[str, Any]:
        return {"backend": "counting", "model_id": "counting"}

    def close(self) -> None:
        pass


def raw(encoding: str = "rgb8", h: int = 6, w: int = 8, pad: int = 0, cut: int = 0) -> SimpleNamespace:
    ch, depth, _ = _RAW_ENCODINGS[encoding]
    step = w * ch * depth + pad
    return SimpleNamespace(
        height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=bytes(max(0, step * h - cut))
    )


def jpeg(value: int = 120) -> SimpleNamespace:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))
    assert ok
    return SimpleNamespace(format="jpeg", data=buf.tobytes())


# ------------------------------------------------------------------ check_image vs. the decoder


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_check_image_agrees_with_decoder(encoding: str) -> None:
    w = 8  # even: packed YUV needs pixel pairs
    good = raw(encoding, w=w, pad=5)
    assert check_image(good) is None
    assert decode_any_image(good).shape == (6, w, 3)
    for bad in (raw(encoding, w=w, cut=1), raw(encoding, h=0, w=w), raw(encoding, w=w, pad=-1)):
        reason = check_image(bad)
        assert reason is not None
        with pytest.raises(ImageDecodeError) as exc:
            decode_any_image(bad)
        assert str(exc.value) == reason  # one source of truth for the wording


def test_check_image_cases() -> None:
    weird = raw()
    weird.encoding = "weird16"
    assert "unsupported image encoding 'weird16'" in check_image(weird)
    assert "has no field 'step'" in check_image(SimpleNamespace(height=1, width=1, encoding="rgb8", data=b"abc"))
    assert "malformed image header" in check_image(
        SimpleNamespace(height="x", width=1, encoding="rgb8", step=3, data=b"abc")
    )
    assert check_image(jpeg()) is None
    assert "no data" in check_image(SimpleNamespace(format="png", data=b""))
    assert "not colour images" in check_image(SimpleNamespace(format="16UC1; compressedDepth png", data=b"x"))
    # A numpy payload is measured in bytes, not elements.
    arr = SimpleNamespace(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=np.zeros(12, np.uint8))
    assert check_image(arr) is None


# ------------------------------------------------------------------ runtime API


def _runtime(backend: CountingBackend) -> PolicyRuntime:
    return PolicyRuntime(SPEC, backend, limits=BufferLimits(max_age_s=0.5), timeout_s=10.0)


def _feed(rt: PolicyRuntime, t: float, image: Any) -> None:
    for cam in SPEC.cameras:
        assert rt.add_image(cam.name, round(t * NS), image) is None
    assert rt.add_joint_state(round(t * NS), JOINTS, [0.1] * 8) is None


def _wait_events(rt: PolicyRuntime, timeout_s: float = 10.0) -> list[RuntimeEvent]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = rt.poll()
        if events:
            return events
        time.sleep(0.005)
    raise AssertionError("no runtime event in time")


def test_decode_failure_in_worker_is_bad_input_not_a_new_session() -> None:
    backend = CountingBackend()
    rt = _runtime(backend)
    try:
        sid = rt.set_instruction("pick the cube")
        # A corrupt JPEG passes the header check (it has data) and fails only when decoded.
        corrupt = SimpleNamespace(format="jpeg", data=b"\xff\xd8 definitely not a jpeg")
        assert check_image(corrupt) is None
        _feed(rt, 100.0, corrupt)
        assert rt.tick(round(100.0 * NS)).submitted
        [ev] = _wait_events(rt)
        assert ev.kind == "bad_input" and "could not be decoded" in ev.message and "camera " in ev.message
        assert rt.session.session_id == sid and rt.session_reason == "new instruction"
        assert rt.rejected_inputs == 1 and "could not be decoded" in rt.last_problem
        assert backend.sessions == []  # the backend was never called with it
        # Good frames afterwards give a chunk of the same session.
        _feed(rt, 100.1, jpeg())
        assert rt.tick(round(100.1 * NS)).submitted
        [ev] = _wait_events(rt)
        assert ev.kind == "chunk" and ev.chunk.session_id == sid and ev.chunk.chunk_id == 0
    finally:
        assert rt.close()


def test_clear_instruction_stops_inference_and_same_text_starts_fresh_session() -> None:
    rt = _runtime(CountingBackend())
    try:
        sid = rt.set_instruction("open the drawer")
        assert rt.set_instruction("open the drawer") == sid  # same text: same session
        cleared = rt.clear_instruction()
        assert cleared != sid and rt.instruction == "" and rt.session_reason == "instruction cleared"
        _feed(rt, 50.0, jpeg())
        out = rt.tick(round(50.0 * NS))
        assert not out.submitted and out.reason == "no_instruction"
        again = rt.set_instruction("open the drawer")
        assert again not in (sid, cleared)
        assert rt.tick(round(50.0 * NS)).reason == "missing"  # buffers were cleared with the instruction
    finally:
        assert rt.close()


def test_tick_reports_session_restart_after_time_jump() -> None:
    rt = _runtime(CountingBackend())
    try:
        sid = rt.set_instruction("stack the blocks")
        _feed(rt, 200.0, jpeg())
        assert rt.tick(round(200.0 * NS)).new_session == ""
        _wait_events(rt)
        # A camera stamp 5 s back (bag loop, sim reset): buffers cleared, the next tick says so.
        assert rt.add_image("wrist", round(195.0 * NS), jpeg()) is None
        out = rt.tick(round(200.05 * NS))
        assert "time went backwards" in out.new_session and "camera wrist" in out.new_session
        assert rt.session.session_id != sid and rt.session_reason == out.new_session
        assert rt.tick(round(200.1 * NS)).new_session == ""  # reported once
        # The node clock itself going back is reported by the same tick that sees it.
        sid2 = rt.session.session_id
        out = rt.tick(round(150.0 * NS))
        assert out.reason == "time_backwards" and "clock went back" in out.new_session
        assert rt.session.session_id != sid2
    finally:
        assert rt.close()


def test_one_call_per_observation() -> None:
    """A tick without a newer observation than the last call's does not call the model again (the model
    appends observed frames to its context; repeating them would corrupt it)."""
    backend = CountingBackend()
    rt = _runtime(backend)
    try:
        rt.set_instruction("pick the cube")
        _feed(rt, 100.0, jpeg())
        assert rt.tick(round(100.0 * NS)).submitted
        [first] = _wait_events(rt)
        again = rt.tick(round(100.05 * NS))  # idle worker, same newest frames
        assert not again.submitted and again.reason == "no_new_observation"
        _feed(rt, 100.1, jpeg())
        assert rt.tick(round(100.1 * NS)).submitted
        [second] = _wait_events(rt)
        assert second.stamp_ns > first.stamp_ns and len(backend.sessions) == 2
        # A new session may start from the frames already buffered after it (here: after a reset, new ones).
        rt.reset()
        _feed(rt, 100.2, jpeg())
        assert rt.tick(round(100.2 * NS)).submitted
    finally:
        assert rt.close()
