"""Observation buffers: frame sampling, joint interpolation, staleness, skew, backwards time."""

from __future__ import annotations

import numpy as np
import pytest
from dreamzero_policy.core.errors import ObservationError
from dreamzero_policy.runtime.buffers import BufferLimits, ObservationBuffers
from dreamzero_policy.runtime.io_spec import load_io_spec

NS = 1_000_000_000
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper"]
CAMS = ["exterior_1", "exterior_2", "wrist"]


def feed(buf: ObservationBuffers, t0: float, t1: float, hz: float = 15.0, cam_offset: float = 0.0) -> None:
    """Frames (payload = their own stamp) and joint states (value = time) on [t0, t1]."""
    for t in np.arange(t0, t1 + 1e-9, 1.0 / hz):
        for cam in CAMS:
            buf.add_image(cam, round((t + cam_offset) * NS), round((t + cam_offset) * NS))
    for t in np.arange(t0, t1 + 1e-9, 0.01):
        buf.add_joint_state(round(t * NS), JOINTS, [t] * 8)


@pytest.fixture
def buf() -> ObservationBuffers:
    return ObservationBuffers(load_io_spec("droid_sim"), BufferLimits(max_age_s=0.2, max_skew_s=0.05))


def test_samples_frames_at_interval_and_interpolates_state(buf: ObservationBuffers) -> None:
    feed(buf, 10.0, 13.0)
    snap = buf.snapshot(int(13.01 * NS), n_frames=4, frame_interval_s=0.5333)
    assert snap.stamp_ns == int(13.0 * NS)
    for cam in CAMS:
        stamps = np.array(snap.frame_stamps_ns[cam]) / NS
        assert stamps[-1] == pytest.approx(13.0)
        np.testing.assert_allclose(np.diff(stamps), 0.5333, atol=1.0 / 15)  # nearest stored frame
        assert snap.frames[cam] == snap.frame_stamps_ns[cam]  # payloads belong to their stamps
    # joint value == time, linearly interpolated to the observation time
    np.testing.assert_allclose(snap.state_raw, 13.0, atol=1e-6)
    assert snap.padded_frames == 0
    assert {s[0] for s in snap.sources} == {
        "/sim/exterior_1/image_raw",
        "/sim/exterior_2/image_raw",
        "/sim/wrist/image_raw",
        "/joint_states",
    }


def test_interpolation_between_samples(buf: ObservationBuffers) -> None:
    for cam in CAMS:
        buf.add_image(cam, int(1.03 * NS), "f")
    buf.add_joint_state(int(1.00 * NS), JOINTS, [0.0] * 8)
    buf.add_joint_state(int(1.05 * NS), JOINTS, [1.0] * 8)
    snap = buf.snapshot(int(1.06 * NS), 1)
    np.testing.assert_allclose(snap.state_raw, 0.6, atol=1e-9)


def test_short_history_is_left_padded(buf: ObservationBuffers) -> None:
    feed(buf, 5.0, 5.5)
    snap = buf.snapshot(int(5.51 * NS), n_frames=4, frame_interval_s=0.5333)
    assert snap.padded_frames > 0
    assert all(len(v) == 4 for v in snap.frames.values())
    assert snap.frame_stamps_ns["wrist"][0] == int(5.0 * NS)


def test_memory_is_bounded(buf: ObservationBuffers) -> None:
    feed(buf, 0.0, 20.0, hz=60.0)
    assert all(len(r.items) <= buf._cap for r in buf._rings.values())


def test_missing_and_stale_inputs(buf: ObservationBuffers) -> None:
    with pytest.raises(ObservationError) as e:
        buf.snapshot(NS, 1)
    assert e.value.reason == "missing"
    feed(buf, 1.0, 2.0)
    with pytest.raises(ObservationError, match="stale") as e:
        buf.snapshot(int(2.5 * NS), 1)
    assert e.value.reason == "stale"
    # one silent camera: the others keep coming, the wrist stops
    for t in np.arange(2.0, 3.0, 1 / 15):
        for cam in CAMS[:2]:
            buf.add_image(cam, int(t * NS), 0)
        buf.add_joint_state(round(t * NS), JOINTS, [0.0] * 8)
    with pytest.raises(ObservationError, match="wrist") as e:
        buf.snapshot(int(3.0 * NS), 1)
    assert e.value.reason == "stale"


def test_skew_between_cameras(buf: ObservationBuffers) -> None:
    feed(buf, 1.0, 2.0)
    for cam in CAMS[:2]:
        buf.add_image(cam, int(2.15 * NS), 0)
    for t in (2.05, 2.1, 2.15):
        buf.add_joint_state(round(t * NS), JOINTS, [0.0] * 8)
    snap = buf.snapshot(int(2.16 * NS), 1)  # wrist newest is 2.0: nearest to ref 2.0 -> no skew
    assert snap.stamp_ns == int(2.0 * NS)
    skewed = ObservationBuffers(load_io_spec("droid_sim"), BufferLimits(max_skew_s=0.01))
    feed(skewed, 1.0, 2.0, hz=15.0)
    skewed.add_image("wrist", int(2.03 * NS), 0)
    for cam in CAMS[:2]:
        skewed.add_image(cam, int(2.06 * NS), 0)
    with pytest.raises(ObservationError) as e:
        skewed.snapshot(int(2.07 * NS), 1)
    assert e.value.reason == "skew"


def test_time_going_backwards_clears(buf: ObservationBuffers) -> None:
    feed(buf, 10.0, 11.0)
    epoch = buf.epoch
    buf.add_image("wrist", int(1.0 * NS), 0)  # sim reset: stamps restart
    assert buf.epoch == epoch + 1 and buf.time_jumps == 1
    with pytest.raises(ObservationError) as e:
        buf.snapshot(int(1.01 * NS), 1)
    assert e.value.reason in ("missing", "time_backwards")
    feed(buf, 1.0, 2.0)  # recovers on the new timeline
    assert buf.snapshot(int(2.01 * NS), 1).stamp_ns == int(2.0 * NS)
    with pytest.raises(ObservationError) as e:
        buf.snapshot(int(0.5 * NS), 1)  # clock itself went back
    assert e.value.reason == "time_backwards"


@pytest.mark.parametrize(
    ("names", "positions", "match"),
    [
        (JOINTS[:-1], [0.0] * 7, "missing joints"),
        (JOINTS, [0.0] * 7, "8 names but 7 positions"),
        (JOINTS, [0.0] * 7 + [float("nan")], "non-finite"),
        ([*JOINTS[:-1], "panda_joint1"], [0.0] * 8, "duplicate"),
    ],
)
def test_bad_joint_states_rejected(buf: ObservationBuffers, names, positions, match) -> None:
    with pytest.raises(ObservationError, match=match):
        buf.add_joint_state(NS, names, positions)


def test_extra_joints_policy() -> None:
    spec = load_io_spec("droid_sim")
    ObservationBuffers(spec).add_joint_state(NS, [*JOINTS, "finger2"], [0.0] * 9)
    strict = ObservationBuffers(spec, BufferLimits(reject_extra_joints=True))
    with pytest.raises(ObservationError, match="unexpected joints"):
        strict.add_joint_state(NS, [*JOINTS, "finger2"], [0.0] * 9)
    with pytest.raises(ObservationError, match="unknown camera"):
        strict.add_image("thermal", NS, 0)
