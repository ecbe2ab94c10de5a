"""Deterministic regressions for limit violations found by the property tests (issue 5).

1. Segment 0 peaked at |v0| / 0.99 -- above the velocity limit (0.2184 vs 0.2175 rad/s) -- when a second
   chunk arrived while the robot moved near the (scaled) limit.
2. Two joints braking to a stop ~1e-8 s apart gave a 1e-8 s braking segment whose position round-off
   became an acceleration of 16.7 rad/s^2 (limit 10).
3. A noisy measured position 0.1-3 mrad from a limit with the commanded velocity still heading there: no stop
   within the acceleration limit was possible from that start (braking overshot the limit or used 38 rad/s^2).
   The start velocity is now clamped to the speed that can stop in the room left.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from embodiment_adapters.profile import load_profile
from embodiment_adapters.safety.braking import braking_profile
from embodiment_adapters.safety.planner import AdapterCore
from embodiment_adapters.safety.timing import parameterize, segment_peaks
from embodiment_adapters.safety.types import ActionSpace, ChunkInput, ChunkRejected, SafetyConfig

NOW = 1000.0


def _chunk(p, data, dt, stamp, chunk_id):
    return ChunkInput(
        "s",
        chunk_id,
        p.embodiments[0],
        int(ActionSpace.JOINT_POSITION),
        stamp,
        dt,
        len(data),
        len(data),
        p.joint_names,
        data,
    )


def _second_chunk_plan(profile, cfg, start, data, dt, gap, seed2):
    """The scenario of test_chunk_sequences_and_holds_stay_within_limits: chunk, noisy state, second chunk."""
    p = load_profile(profile)
    core = AdapterCore(p, cfg)
    core.update_joint_state(p.joint_names, start, NOW)
    core.process_chunk(_chunk(p, data, dt, NOW - 0.01, 0), NOW)
    rng = np.random.default_rng(seed2)
    now2 = NOW + gap
    measured, _ = core.plan.sample(now2)
    core.update_joint_state(p.joint_names, measured + rng.normal(0, 0.01, len(measured)), now2)
    plan2 = core.process_chunk(_chunk(p, data + rng.normal(0, 0.2, data.shape), dt, now2 - 0.02, 1), now2)
    return core, plan2


def test_first_segment_within_velocity_limit_when_already_moving_near_it(plan_checker):
    cfg = SafetyConfig(lead_time=0.0, lookahead=0.3, blend_steps=1, velocity_scale=0.1)
    start = np.array([-2.74539521, 1.00019634, 1.6601197, -1.7846745, 1.53939917, 0.10682683, -1.7355251])
    data = np.array([[-2.74539521, 0.7597631, 1.6601197, -1.7846745, 1.3275797, 0.11804748, -1.69990663]])
    core, plan = _second_chunk_plan("droid_franka_sim", cfg, start, data, 0.2, 0.875, 0)
    # The hazard is present: panda_joint2 starts moving at > 99 % of its (scaled) limit.
    assert abs(plan.start_velocities[1]) > 0.99 * core.vmax[1]
    plan_checker(plan, core.lower, core.upper, core.vmax, core.amax)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.995, 1.0])
@pytest.mark.parametrize("ramp", [1.0, 0.25])
def test_parameterize_first_segment_peak_never_above_limit(fraction, ramp):
    """Start at ``fraction`` of the limit, moving towards first points further than the motion carries."""
    vmax, amax = np.array([0.2175, 1.0]), np.array([7.5, 10.0])
    q0, v0 = np.zeros(2), np.array([fraction * vmax[0], -fraction * vmax[1]])
    points = np.array([[0.05, -0.08], [0.12, -0.1], [0.2, -0.1]])
    times, vel = parameterize(
        q0, v0, points, np.array([0.01, 0.02, 0.03]), vmax, amax, first_segment_velocity_scale=ramp
    )
    peak_v, peak_a = segment_peaks(q0, v0, points, vel, np.diff(np.concatenate([[0.0], times])))
    cap0 = np.maximum(vmax * ramp, np.abs(v0))
    assert np.all(peak_v[0] <= cap0 * (1 + 1e-9)) and np.all(peak_v <= vmax * (1 + 1e-9))
    assert np.all(peak_a <= amax * (1 + 1e-9))


def test_parameterize_refuses_a_start_velocity_above_the_limit():
    with pytest.raises(ChunkRejected, match="start velocity above the velocity limit"):
        parameterize(
            np.zeros(1), np.array([1.01]), np.array([[0.5]]), np.array([0.5]), np.array([1.0]), np.array([5.0])
        )


def test_over_limit_start_velocity_is_clamped_and_noted(plan_checker):
    p = load_profile("droid_franka_sim")
    core = AdapterCore(p, SafetyConfig(lookahead=2.0))
    home = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
    core.update_joint_state(p.joint_names, home, NOW)
    core.process_chunk(_chunk(p, home + np.linspace(0.01, 0.3, 24)[:, None], 1 / 15, NOW, 0), NOW)
    # A running plan whose start velocity exceeds the limit (e.g. a state from elsewhere): sampled at t0.
    over = core.vmax * 1.05
    core.plan = dataclasses.replace(core.plan, start_velocities=over, t0=NOW + 0.1)
    plan = core.process_chunk(_chunk(p, home + np.linspace(0.31, 0.4, 24)[:, None], 1 / 15, NOW + 0.1, 1), NOW + 0.1)
    assert np.allclose(plan.start_velocities, core.vmax)
    assert any("start velocity clamped" in n for n in plan.notes)
    plan_checker(plan, core.lower, core.upper, core.vmax, core.amax)


def test_braking_with_nearly_equal_stop_times_stays_within_acceleration(plan_checker):
    cfg = SafetyConfig(lead_time=0.0, lookahead=0.3, blend_steps=0, velocity_scale=0.1)
    start = np.array(
        [
            1.80652283,
            0.54578308,
            -0.41795053,
            -0.52677886,
            -0.20317922,
            2.25558817,
            2.52587322,
            0.78162933,
            1.28782615,
            -2.31594263,
            2.05404292,
            0.38831937,
        ]
    )
    data = np.array(
        [
            [
                1.57371879,
                0.34337913,
                -0.70377454,
                -0.57400563,
                -0.34205673,
                2.17074436,
                2.79840602,
                1.06745343,
                1.09545163,
                -2.31594263,
                2.27550691,
                0.61636054,
            ]
        ]
    )
    core, plan = _second_chunk_plan("aloha", cfg, start, data, 1 / 30, 1.0, 0)
    assert any("braking first" in n for n in plan.notes)
    assert np.min(np.diff(np.concatenate([[0.0], plan.times]))) >= 1e-4
    plan_checker(plan, core.lower, core.upper, core.vmax, core.amax)


def test_braking_profile_merges_close_stop_times():
    lower, upper = np.full(3, -1.0), np.full(3, 1.0)
    amax = np.full(3, 10.0)
    v0 = np.array([1.0, 1.0 + 1e-7, -2.0])  # two stop times 1.5e-8 s apart
    times, pos, vel = braking_profile(np.zeros(3), v0, lower, upper, amax, 0.05)
    assert np.all(np.diff(np.concatenate([[0.0], times])) >= 1e-4)
    assert np.all(vel[-1] == 0.0) and np.all(pos <= upper) and np.all(pos >= lower)
    # Stop times 1.5 |v0| / amax: 0.15, 0.15000002 (merged into 0.15: stops a hair sooner), 0.3.
    assert times.tolist() == pytest.approx([0.15, 0.3], abs=1e-12)
    assert pos[-1] == pytest.approx([0.075, 0.075 * (1 + 1e-7), -0.3], abs=1e-12)


# Scenario 3 (seed2 16): panda_joint7 measured next to its (margined) upper limit while moving towards it.
_NOISY_START = np.array([1.18298516, 0.56997924, -2.49751179, -0.96198946, -1.04904155, 1.67936069, 2.78496898])
_NOISY_WALK = np.array(
    [
        [-0.92943855, 1.52616567, 2.56253225],
        [-1.3099278, 1.56505521, 2.78882001],
        [-1.34591798, 1.57751657, 2.49701492],
        [-1.11879357, 1.39532571, 2.64163044],
        [-1.33907295, 1.88784467, 2.73109996],
        [-0.86417152, 1.9584917, 2.81609897],
        [-1.27728983, 1.80919468, 2.55185779],
        [-0.98622363, 1.51041009, 2.86545548],
        [-1.17938663, 1.40915042, 2.68503745],
        [-1.08265251, 1.54929954, 2.97175484],
        [-0.76120999, 1.85269846, 2.83610633],
        [-0.94191078, 1.75907347, 3.02902609],
        [-0.94627746, 1.80214425, 2.89547058],
        [-1.0740439, 1.61014983, 2.84811324],
        [-0.93043126, 1.90463654, 2.9624185],
        [-1.22102329, 1.5919947, 2.62365473],
    ]
)


@pytest.mark.parametrize("gap", [0.609375, 0.6158441031710954])
def test_noisy_start_next_to_a_limit_brakes_within_all_limits(gap, plan_checker):
    cfg = SafetyConfig(lead_time=0.2, lookahead=0.3, blend_steps=0, velocity_scale=0.5, position_margin=0.05)
    data = np.hstack([np.tile(_NOISY_START[:4], (len(_NOISY_WALK), 1)), _NOISY_WALK])
    core, plan = _second_chunk_plan("droid_franka_sim", cfg, _NOISY_START, data, 1 / 30, gap, 16)
    assert any("can stop before the limit (panda_joint7" in n for n in plan.notes)
    plan_checker(plan, core.lower, core.upper, core.vmax, core.amax)
    hold = core.hold_plan(NOW + gap * 4 / 3)
    if hold is not None:
        plan_checker(hold, core.lower, core.upper, core.vmax, core.amax)
