"""``inference_started`` is on the node's clock (sim time), ``inference_latency`` on the wall clock.

The node clock here is a settable sim clock that does not move with wall time, so any mapping of
monotonic deltas onto it (the old behaviour) gives a different start time than the one the worker
read when it started the request.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
from dreamzero_policy.runtime import BufferLimits, PolicyRuntime, RuntimeEvent, load_io_spec

SPEC = load_io_spec("droid_sim")
NS = 1_000_000_000
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper"]


class SimClock:
    """Node clock stand-in for a paused/slow simulation: only moves when the test sets it (ns)."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.reads: list[int] = []

    def __call__(self) -> int:
        self.reads.append(self.now_ns)
        return self.now_ns


class GatedBackend:
    """Waits until released, then sleeps ``work_s`` of wall time and returns constant actions."""

    def __init__(self, work_s: float) -> None:
        self.work_s = work_s
        self.entered = threading.Event()
        self.release = threading.Event()

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        self.entered.set()
        assert self.release.wait(10.0)
        time.sleep(self.work_s)
        return {"actions": np.zeros((24, SPEC.action_dim), np.float32)}

    def reset(self) -> None:
        pass

    def metadata(self) -> dict[str, Any]:
        return {"backend": "gated", "model_id": "gated"}

    def close(self) -> None:
        self.release.set()


def _jpeg() -> SimpleNamespace:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 100, np.uint8))
    assert ok
    return SimpleNamespace(format="jpeg", data=buf.tobytes())


def _feed(rt: PolicyRuntime, t_ns: int) -> None:
    for cam in SPEC.cameras:
        assert rt.add_image(cam.name, t_ns, _jpeg()) is None
    assert rt.add_joint_state(t_ns, JOINTS, [0.1] * 8) is None


def _wait_event(rt: PolicyRuntime, timeout_s: float = 10.0) -> RuntimeEvent:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = rt.poll()
        if events:
            assert len(events) == 1
            return events[0]
        time.sleep(0.005)
    raise AssertionError("no runtime event in time")


def test_inference_started_is_the_node_clock_when_the_worker_starts() -> None:
    clock = SimClock(50 * NS)
    backend = GatedBackend(work_s=0.2)
    backend.release.set()
    rt = PolicyRuntime(SPEC, backend, limits=BufferLimits(max_age_s=0.5), timeout_s=10.0, clock_ns=clock)
    try:
        rt.set_instruction("pick the cube")
        _feed(rt, 50 * NS)
        wall0 = time.monotonic()
        assert rt.tick(50 * NS).submitted
        ev = _wait_event(rt)
        wall = time.monotonic() - wall0
        assert ev.kind == "chunk"
        # Sim time stood still while 0.2 s of wall time passed: started == the sim clock, not 50 s + wall delta.
        assert clock.reads == [50 * NS]
        assert ev.chunk.inference_started_ns == 50 * NS
        # Latency stays wall time (the compute took >= 0.2 s whatever the sim clock did).
        assert 0.2 <= ev.chunk.inference_latency_ns / NS <= wall
    finally:
        assert rt.close()


def test_inference_started_follows_sim_clock_between_submit_and_start() -> None:
    clock = SimClock(80 * NS)
    backend = GatedBackend(work_s=0.0)
    rt = PolicyRuntime(SPEC, backend, limits=BufferLimits(max_age_s=0.5), timeout_s=10.0, clock_ns=clock)
    try:
        rt.set_instruction("open the drawer")
        _feed(rt, 80 * NS)
        assert rt.tick(80 * NS).submitted
        assert backend.entered.wait(10.0)
        started_read = clock.reads[-1]
        clock.now_ns = 95 * NS  # sim time moves on while the model runs: does not change the start
        backend.release.set()
        ev = _wait_event(rt)
        assert ev.kind == "chunk" and started_read == 80 * NS
        assert ev.chunk.inference_started_ns == 80 * NS and ev.chunk.stamp_ns == 80 * NS
    finally:
        assert rt.close()


def test_without_a_clock_inference_started_is_the_submit_time() -> None:
    backend = GatedBackend(work_s=0.05)
    backend.release.set()
    rt = PolicyRuntime(SPEC, backend, limits=BufferLimits(max_age_s=0.5), timeout_s=10.0)
    try:
        rt.set_instruction("stack the blocks")
        _feed(rt, 7 * NS)
        assert rt.tick(7 * NS + 1234).submitted
        ev = _wait_event(rt)
        assert ev.kind == "chunk" and ev.chunk.inference_started_ns == 7 * NS + 1234
        assert ev.chunk.inference_latency_ns >= 0.05 * NS
    finally:
        assert rt.close()
