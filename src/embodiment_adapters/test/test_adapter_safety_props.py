"""Property tests: no chunk, however adversarial, yields a plan that breaks limits or has non-increasing times.

Inputs are random joint targets (including far outside the limits, huge jumps, reversals), random stamps and
step durations, random start states and velocities, sequences of chunks (blending) and hold plans.
"""

from __future__ import annotations

import os

import numpy as np
from embodiment_adapters.profile import load_profile
from embodiment_adapters.safety.planner import AdapterCore
from embodiment_adapters.safety.types import ActionSpace, ChunkInput, ChunkRejected, SafetyConfig
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

PROFILES = {n: load_profile(n) for n in ("droid_franka_sim", "ur5e", "aloha")}
NOW = 1000.0
# ADAPTER_PROP_EXAMPLES=5000 for a longer search (the default keeps the suite fast).
SETTINGS = settings(
    max_examples=int(os.environ.get("ADAPTER_PROP_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _limits(core):
    return core.lower, core.upper, core.vmax, core.amax


@st.composite
def scenario(draw):
    name = draw(st.sampled_from(sorted(PROFILES)))
    p = PROFILES[name]
    lower, upper, _, _ = p.limits_arrays()
    j = len(p.joints)
    horizon = draw(st.integers(1, 30))
    span = draw(st.sampled_from([0.01, 0.3, 3.0, 30.0]))  # from gentle to absurd jumps (rad)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    start = rng.uniform(lower, upper)
    data = start + rng.uniform(-span, span, size=(horizon, j)) * rng.choice([0.0, 1.0], size=(1, j), p=[0.2, 0.8])
    if draw(st.booleans()):
        data = start + np.cumsum(rng.normal(0, span / 10, size=(horizon, j)), axis=0)  # smooth-ish random walk
    dt = draw(st.sampled_from([0.005, 1 / 30, 1 / 15, 0.2, 1.0]))
    age = draw(st.one_of(st.floats(0.0, 0.1), st.floats(0.0, 2.0)))  # mostly fresh, sometimes stale
    cfg = SafetyConfig(
        lead_time=draw(st.sampled_from([0.0, 0.05, 0.2])),
        lookahead=draw(st.sampled_from([0.3, 1.0, 5.0])),
        blend_steps=draw(st.integers(0, 5)),
        start_policy="ramp",
        velocity_scale=draw(st.sampled_from([0.1, 0.5, 1.0])),
        position_margin=draw(st.sampled_from([0.0, 0.05])),
    )
    return p, cfg, start, data, dt, age, seed


def _chunk(p, data, dt, stamp, chunk_id=0, session="s"):
    return ChunkInput(
        session,
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


@SETTINGS
@given(sc=scenario())
def test_any_chunk_gives_a_plan_within_limits_or_a_rejection(sc, plan_checker):
    p, cfg, start, data, dt, age, _ = sc
    core = AdapterCore(p, cfg)
    core.update_joint_state(p.joint_names, start, NOW)
    try:
        plan = core.process_chunk(_chunk(p, data, dt, NOW - age), NOW)
    except ChunkRejected as exc:
        assert exc.reason  # a rejection always says why
        assert core.plan is None  # and nothing was committed
        event(f"rejected: {exc.reason.split(':')[0]}")
        return
    event("planned")
    plan_checker(plan, *_limits(core))


@SETTINGS
@given(sc=scenario(), gap=st.floats(0.01, 1.5), seed2=st.integers(0, 2**31 - 1))
def test_chunk_sequences_and_holds_stay_within_limits(sc, gap, seed2, plan_checker):
    """A second chunk arriving while the first runs (blending, non-zero start velocity), then a hold."""
    p, cfg, start, data, dt, _, _ = sc
    core = AdapterCore(p, cfg)
    core.update_joint_state(p.joint_names, start, NOW)
    try:
        core.process_chunk(_chunk(p, data, dt, NOW - 0.01), NOW)
    except ChunkRejected:
        return
    rng = np.random.default_rng(seed2)
    now2 = NOW + gap
    measured, _ = core.plan.sample(now2)
    core.update_joint_state(p.joint_names, measured + rng.normal(0, 0.01, len(measured)), now2)
    data2 = data + rng.normal(0, 0.2, data.shape)
    try:
        plan2 = core.process_chunk(_chunk(p, data2, dt, now2 - 0.02, chunk_id=1), now2)
        event("second chunk planned")
        plan_checker(plan2, *_limits(core))
    except ChunkRejected as exc:
        assert exc.reason
    hold = core.hold_plan(now2 + gap / 3)
    if hold is not None:
        plan_checker(hold, *_limits(core))


@SETTINGS
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=40),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_garbage_chunks_are_rejected_not_crashing(values, horizon, dt, stamp):
    p = PROFILES["droid_franka_sim"]
    core = AdapterCore(p)
    core.update_joint_state(p.joint_names, np.zeros(7) - 1.0, NOW)
    arr = np.asarray(values, dtype=float)
    try:
        data = arr.reshape(horizon, -1) if horizon > 0 and arr.size % horizon == 0 else arr[None, :]
    except ValueError:
        data = arr[None, :]
    chunk = ChunkInput("s", 0, p.name, 0, stamp, dt, horizon, horizon, p.joint_names, data)
    try:
        plan = core.process_chunk(chunk, NOW)
    except ChunkRejected as exc:
        assert exc.reason
        return
    lower, upper, _, _ = p.limits_arrays()
    assert np.all(np.isfinite(plan.positions)) and np.all(plan.positions >= lower) and np.all(plan.positions <= upper)
