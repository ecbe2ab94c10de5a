"""Behaviour of the safety core: time alignment, look-ahead, splicing, sessions, deltas, EEF, holds, grippers."""

from __future__ import annotations

import numpy as np
import pytest
from embodiment_adapters.kinematics import build_chains, mat_to_rotvec
from embodiment_adapters.profile import load_profile
from embodiment_adapters.safety.gripper import GripperGate
from embodiment_adapters.safety.planner import AdapterCore
from embodiment_adapters.safety.types import ActionSpace, ChunkInput, ChunkRejected, SafetyConfig
from embodiment_adapters.safety.watchdog import Watchdog, WatchdogConfig

P = load_profile("droid_franka_sim")
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
NOW = 500.0
DT = 1 / 15


def chunk(data, stamp=NOW, cid=0, session="a", space=ActionSpace.JOINT_POSITION, names=P.joint_names, dt=DT):
    return ChunkInput(session, cid, "droid_franka", int(space), stamp, dt, len(data), 8, tuple(names), data)


def core(**cfg) -> AdapterCore:
    c = AdapterCore(P, SafetyConfig(**cfg))
    c.update_joint_state(P.joint_names, HOME, NOW)
    return c


def ramp(n=24, amp=0.1):
    return HOME + np.linspace(amp / n, amp, n)[:, None]


def test_elapsed_steps_dropped_and_times_rebased(plan_checker):
    c = core(lead_time=0.05, lookahead=5.0)
    plan = c.process_chunk(chunk(ramp(), stamp=NOW - 0.5), NOW)
    # steps at stamp + (i+1)/15 < now + 0.05 are gone: i + 1 < 0.55 * 15 = 8.25 -> 8 dropped
    assert len(plan.times) == 24 - 8
    assert plan.positions[0] == pytest.approx(ramp()[8], abs=1e-9)
    assert plan.times[0] >= 0.05 - 1e-9
    plan_checker(plan, c.lower, c.upper, c.vmax, c.amax)


def test_lookahead_caps_the_plan():
    c = core(lookahead=0.5)
    plan = c.process_chunk(chunk(ramp()), NOW)
    assert len(plan.times) == 7  # (i + 1) / 15 <= 0.5
    assert plan.times[-1] < 1.0


def test_all_steps_elapsed_is_rejected_and_previous_plan_stands():
    c = core()
    first = c.process_chunk(chunk(ramp()), NOW)
    with pytest.raises(ChunkRejected, match="all 24 steps are in the past"):
        c.process_chunk(chunk(ramp(), stamp=NOW - 5.0, cid=1), NOW + 0.1)
    assert c.plan is first


def test_splicing_blends_without_a_jump():
    c = core(blend_steps=3, lookahead=2.0)
    c.process_chunk(chunk(ramp(amp=0.2)), NOW)
    t = NOW + 0.3
    jumped = ramp(amp=0.2) + 0.3  # new chunk 0.3 rad away from the running prediction
    old = c.plan
    plan = c.process_chunk(chunk(jumped, stamp=t - 0.05, cid=1), t)
    # first point is 1/4 of the way to the new chunk, then 2/4, 3/4, then the new chunk itself
    steps = np.arange(24)
    keep = steps[(t - 0.05 + (steps + 1) * DT) - t >= 0.05]
    old_first, _ = old.sample(t + (keep[0] + 1) * DT - 0.05)
    assert plan.positions[0] == pytest.approx(0.75 * old_first + 0.25 * jumped[keep[0]], abs=1e-9)
    assert plan.positions[3] == pytest.approx(jumped[keep[3]], abs=1e-9)
    assert np.max(np.abs(plan.start_positions - HOME)) < 1e-9  # starts from the measured state


def test_sessions_and_order():
    c = core()
    c.process_chunk(chunk(ramp(), cid=5, session="a"), NOW)
    with pytest.raises(ChunkRejected, match="out-of-order"):
        c.process_chunk(chunk(ramp(), cid=5, session="a"), NOW)
    c.process_chunk(chunk(ramp(), cid=0, session="b"), NOW + 0.01)  # a reset: new session starts at 0
    with pytest.raises(ChunkRejected, match="old session"):
        c.process_chunk(chunk(ramp(), cid=9, session="a"), NOW + 0.02)


def test_far_first_point_ramp_or_refuse(plan_checker):
    far = HOME + 1.0
    far[3] = -2.0
    refuse = core(start_policy="refuse", start_tolerance=0.3)
    with pytest.raises(ChunkRejected, match="from the measured state"):
        refuse.process_chunk(chunk(np.tile(far, (24, 1))), NOW)
    ramped = core(start_policy="ramp", start_tolerance=0.3, lookahead=2.0)
    plan = ramped.process_chunk(chunk(np.tile(far, (24, 1))), NOW)
    assert any("ramping" in n for n in plan.notes)
    plan_checker(plan, ramped.lower, ramped.upper, ramped.vmax * 0.25 + 1e-9, ramped.amax)


def test_delta_and_velocity_spaces_integrate_from_commanded():
    c = core(lookahead=2.0)
    deltas = np.full((24, 7), 0.05)
    plan = c.process_chunk(chunk(deltas, space=ActionSpace.JOINT_POSITION_DELTA), NOW)
    assert plan.positions[-1] == pytest.approx(HOME + 0.05)  # anchored: every row relative to the stamp state
    t = NOW + 0.2
    c.update_joint_state(P.joint_names, HOME + 0.5, t)  # measured drifts: must not be the reference
    commanded_at_stamp, _ = c.plan.sample(t - 0.01)
    vel = np.full((24, 7), 0.3)
    plan2 = c.process_chunk(chunk(vel, stamp=t - 0.01, cid=1, space=ActionSpace.JOINT_VELOCITY), t)
    expected_last = commanded_at_stamp + 0.3 * DT * 24
    assert plan2.positions[-1] == pytest.approx(np.clip(expected_last, c.lower, c.upper), abs=1e-9)


def test_eef_pose_chunk_solved_by_ik():
    c = core(lookahead=2.0)
    chain = build_chains(P)[""]
    start = chain.fk(HOME)
    rows = []
    for i in range(12):
        pos = start[:3, 3] + np.array([0.0, 0.01 * (i + 1), 0.0])
        rows.append([*pos, *mat_to_rotvec(start[:3, :3])])
    names = ("ee.x", "ee.y", "ee.z", "ee.rx", "ee.ry", "ee.rz")
    plan = c.process_chunk(chunk(np.array(rows), space=ActionSpace.EEF_POSE, names=names), NOW)
    reached = chain.fk(plan.positions[-1])
    assert reached[:3, 3] == pytest.approx(rows[-1][:3], abs=1e-4)


def test_hold_decelerates_to_rest(plan_checker):
    c = core(lookahead=2.0)
    c.process_chunk(chunk(ramp(amp=1.0)), NOW)
    hold = c.hold_plan(NOW + 0.5)
    assert hold is not None and len(hold.times) == 1
    assert np.any(np.abs(hold.start_velocities) > 0.1)
    plan_checker(hold, c.lower, c.upper, c.vmax, c.amax)
    assert c.hold_plan(NOW + 10.0) is None  # nothing moving: nothing to hold


def test_watchdog_and_gripper_gate():
    w = Watchdog(WatchdogConfig(chunk_timeout=1.0, joint_state_timeout=0.2))
    assert "no joint_states" in w.check(0.0, moving=False)
    w.joint_state_received(10.0)
    w.chunk_received(10.0)
    assert w.check(10.1, moving=True) is None
    assert "stale" in w.check(10.3, moving=False)
    w.joint_state_received(11.2)
    assert "no new chunk" in w.check(11.3, moving=True) and w.check(11.3, moving=False) is None
    gate = GripperGate(load_profile("droid_franka").grippers[0])  # 0..0.8 rad, epsilon 0.05
    assert gate.update(1.0) == pytest.approx(0.8)
    assert gate.update(0.97) is None
    assert gate.update(0.5) == pytest.approx(0.4)
