"""joint_trajectory_controller time semantics of the pure trajectory follower (no MuJoCo, no ROS)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dreamzero_sim.errors import TrajectoryRejected
from dreamzero_sim.trajectory_follower import JointTrajectoryFollower, TrajectoryPoint
from hypothesis import given, settings
from hypothesis import strategies as st

NAMES = ("j1", "j2")


def make(**kw) -> JointTrajectoryFollower:
    return JointTrajectoryFollower(NAMES, [0.0, 0.0], **kw)


def test_holds_initial_positions_before_any_trajectory():
    f = make()
    pos, vel = f.sample(123.0)
    np.testing.assert_array_equal(pos, [0.0, 0.0])
    np.testing.assert_array_equal(vel, [0.0, 0.0])
    assert not f.is_active(123.0)


def test_stamp_zero_starts_at_receipt_interpolates_linearly_and_holds_after_last_point():
    f = make()
    pts = [TrajectoryPoint(1.0, [1.0, -2.0]), TrajectoryPoint(2.0, [3.0, -2.0])]
    f.set_trajectory(NAMES, pts, stamp=0.0, now=10.0)
    np.testing.assert_allclose(f.sample(10.0)[0], [0.0, 0.0])
    pos, vel = f.sample(10.5)  # halfway from the state at receipt to point 0
    np.testing.assert_allclose(pos, [0.5, -1.0])
    np.testing.assert_allclose(vel, [1.0, -2.0])
    np.testing.assert_allclose(f.sample(11.0)[0], [1.0, -2.0])
    np.testing.assert_allclose(f.sample(11.25)[0], [1.5, -2.0])
    assert f.is_active(11.9) and not f.is_active(12.0)
    for t in (12.0, 13.0, 1e6):  # hold the last point with zero velocity
        pos, vel = f.sample(t)
        np.testing.assert_allclose(pos, [3.0, -2.0])
        np.testing.assert_array_equal(vel, [0.0, 0.0])


def test_cubic_interpolation_when_velocities_are_given():
    f = make()
    pts = [TrajectoryPoint(1.0, [1.0, 2.0], [0.0, 0.0])]
    f.set_trajectory(NAMES, pts, stamp=0.0, now=0.0)
    pos, vel = f.sample(0.25)
    # Hermite with zero end velocities: 3s^2 - 2s^3 (an S-curve, not the linear 0.25)
    np.testing.assert_allclose(pos, np.array([1.0, 2.0]) * (3 * 0.25**2 - 2 * 0.25**3))
    np.testing.assert_allclose(vel, np.array([1.0, 2.0]) * (6 * 0.25 - 6 * 0.25**2))
    np.testing.assert_allclose(f.sample(1.0 - 1e-9)[1], [0.0, 0.0], atol=1e-6)


def test_cubic_segments_pass_through_waypoint_velocities():
    f = make()
    pts = [TrajectoryPoint(1.0, [1.0, 1.0], [2.0, -1.0]), TrajectoryPoint(2.0, [2.0, 0.0], [0.0, 0.0])]
    f.set_trajectory(NAMES, pts, stamp=0.0, now=0.0)
    _, v_before = f.sample(1.0 - 1e-7)
    _, v_after = f.sample(1.0 + 1e-7)
    np.testing.assert_allclose(v_before, [2.0, -1.0], atol=1e-4)
    np.testing.assert_allclose(v_after, [2.0, -1.0], atol=1e-4)


def test_new_trajectory_replaces_the_old_one_from_the_current_desired_state():
    f = make()
    f.set_trajectory(NAMES, [TrajectoryPoint(2.0, [2.0, 2.0])], stamp=0.0, now=0.0)
    before, _ = f.sample(1.0)
    f.set_trajectory(NAMES, [TrajectoryPoint(1.0, [-1.0, 0.0])], stamp=0.0, now=1.0)
    after, _ = f.sample(1.0)
    np.testing.assert_allclose(after, before)  # no jump at the handoff
    np.testing.assert_allclose(f.sample(1.5)[0], (before + np.array([-1.0, 0.0])) / 2)
    np.testing.assert_allclose(f.sample(5.0)[0], [-1.0, 0.0])  # the old goal is forgotten


def test_past_stamp_starts_mid_trajectory():
    f = make()
    pts = [TrajectoryPoint(0.25, [1.0, 1.0]), TrajectoryPoint(1.0, [2.0, 3.0])]
    f.set_trajectory(NAMES, pts, stamp=99.5, now=100.125)  # 0.625 s into the trajectory
    np.testing.assert_allclose(f.sample(100.125)[0], [1.5, 2.0])
    np.testing.assert_allclose(f.sample(100.5)[0], [2.0, 3.0])


def test_future_stamp_interpolates_from_receipt_to_the_first_point():
    f = make()
    f.set_trajectory(NAMES, [TrajectoryPoint(1.0, [4.0, 4.0])], stamp=51.0, now=50.0)
    np.testing.assert_allclose(f.sample(51.0)[0], [2.0, 2.0])
    np.testing.assert_allclose(f.sample(52.0)[0], [4.0, 4.0])


def test_joint_order_of_the_message_is_mapped_by_name():
    f = make()
    f.set_trajectory(("j2", "j1"), [TrajectoryPoint(1.0, [5.0, 7.0])], stamp=0.0, now=0.0)
    np.testing.assert_allclose(f.sample(2.0)[0], [7.0, 5.0])


def test_interpolation_from_measured_state_when_configured():
    f = make(interpolate_from_desired_state=False)
    f.set_trajectory(NAMES, [TrajectoryPoint(1.0, [1.0, 1.0])], stamp=0.0, now=0.0, measured_positions=[-1.0, 3.0])
    np.testing.assert_allclose(f.sample(0.0)[0], [-1.0, 3.0])
    np.testing.assert_allclose(f.sample(0.5)[0], [0.0, 2.0])


@pytest.mark.parametrize(
    ("names", "points", "reason"),
    [
        ((), [TrajectoryPoint(1.0, [])], "empty_joints"),
        (("j1", "j1"), [TrajectoryPoint(1.0, [0.0, 0.0])], "duplicate_joints"),
        (("j1", "j2", "elbow"), [TrajectoryPoint(1.0, [0.0, 0.0, 0.0])], "unknown_joints"),
        (("j1",), [TrajectoryPoint(1.0, [0.0])], "missing_joints"),
        (NAMES, [], "no_points"),
        (NAMES, [TrajectoryPoint(1.0, [0.0])], "size_mismatch"),
        (NAMES, [TrajectoryPoint(1.0, [0.0, 0.0], [0.0])], "size_mismatch"),
        (NAMES, [TrajectoryPoint(1.0, [0.0, math.nan])], "non_finite"),
        (NAMES, [TrajectoryPoint(math.nan, [0.0, 0.0])], "non_finite"),
        (NAMES, [TrajectoryPoint(1.0, [0.0, 0.0], [math.inf, 0.0]), TrajectoryPoint(2.0, [0, 0])], "non_finite"),
        (NAMES, [TrajectoryPoint(-0.5, [0.0, 0.0])], "negative_time"),
        (NAMES, [TrajectoryPoint(1.0, [0.0, 0.0]), TrajectoryPoint(0.5, [1.0, 1.0])], "non_increasing_time"),
        (NAMES, [TrajectoryPoint(1.0, [0.0, 0.0]), TrajectoryPoint(1.0, [1.0, 1.0])], "non_increasing_time"),
        (NAMES, [TrajectoryPoint(1.0, [1.0, 1.0], [0.1, 0.0])], "nonzero_end_velocity"),
    ],
)
def test_malformed_trajectories_are_rejected_and_the_active_one_keeps_running(names, points, reason):
    f = make()
    f.set_trajectory(NAMES, [TrajectoryPoint(2.0, [2.0, 2.0])], stamp=0.0, now=0.0)
    with pytest.raises(TrajectoryRejected) as info:
        f.set_trajectory(names, points, stamp=0.0, now=1.0)
    assert info.value.reason == reason
    np.testing.assert_allclose(f.sample(1.0)[0], [1.0, 1.0])
    np.testing.assert_allclose(f.sample(3.0)[0], [2.0, 2.0])


def test_trajectory_ending_in_the_past_is_rejected():
    f = make()
    with pytest.raises(TrajectoryRejected) as info:
        f.set_trajectory(NAMES, [TrajectoryPoint(1.0, [1.0, 1.0])], stamp=5.0, now=6.5)
    assert info.value.reason == "ends_in_past"
    np.testing.assert_array_equal(f.sample(7.0)[0], [0.0, 0.0])


def test_nonzero_end_velocity_is_accepted_when_allowed():
    f = make(allow_nonzero_velocity_at_trajectory_end=True)
    f.set_trajectory(NAMES, [TrajectoryPoint(1.0, [1.0, 1.0], [0.5, 0.0])], stamp=0.0, now=0.0)
    np.testing.assert_allclose(f.sample(2.0)[0], [1.0, 1.0])


def test_hold_drops_the_trajectory():
    f = make()
    f.set_trajectory(NAMES, [TrajectoryPoint(1.0, [1.0, 1.0])], stamp=0.0, now=0.0)
    f.hold([0.3, 0.4])
    np.testing.assert_allclose(f.sample(0.5)[0], [0.3, 0.4])
    assert not f.is_active(0.5)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6),
    values=st.lists(st.floats(-3.0, 3.0), min_size=6, max_size=6),
    frac=st.floats(0.0, 1.0),
)
def test_linear_samples_hit_waypoints_and_stay_between_neighbours(steps, values, frac):
    f = JointTrajectoryFollower(["j"], [0.0])
    times = np.cumsum(steps)
    pts = [TrajectoryPoint(float(t), [v]) for t, v in zip(times, values, strict=False)]
    f.set_trajectory(["j"], pts, stamp=0.0, now=0.0)
    knots_t = [0.0, *times.tolist()]
    knots_v = [0.0, *values[: len(times)]]
    for t, v in zip(knots_t, knots_v, strict=True):
        assert f.sample(t)[0][0] == pytest.approx(v, abs=1e-9)
    i = min(int(frac * len(times)), len(times) - 1)
    t = knots_t[i] + frac * (knots_t[i + 1] - knots_t[i])
    lo, hi = sorted((knots_v[i], knots_v[i + 1]))
    assert lo - 1e-9 <= f.sample(t)[0][0] <= hi + 1e-9
