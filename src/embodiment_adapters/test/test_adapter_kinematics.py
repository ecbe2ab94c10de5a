"""Kinematics: FK reference poses, IK round trips for the arm profiles, quaternion/rotvec conventions."""

from __future__ import annotations

import numpy as np
import pytest
from embodiment_adapters.kinematics import (
    build_chains,
    mat_to_rotvec,
    quat_ros_to_mat,
    quat_ros_to_wxyz,
    quat_wxyz_to_ros,
    rotvec_to_mat,
)
from embodiment_adapters.profile import load_profile
from transforms3d import euler


def test_franka_fk_matches_published_flange_at_zero():
    chain = build_chains(load_profile("droid_franka"))[""]
    tip = chain.fk(np.zeros(7))
    # flange at (0.088, 0, 0.926) m pointing down; the TCP is 0.15 m further along the flange z (down)
    assert tip[:3, 3] == pytest.approx([0.088, 0.0, 0.926 - 0.15], abs=1e-9)
    assert tip[2, 2] == pytest.approx(-1.0)


def test_ur5e_fk_matches_published_zero_pose():
    tip = build_chains(load_profile("ur5e"))[""].fk(np.zeros(6))
    assert tip[:3, 3] == pytest.approx([-0.8172, -0.2329, 0.0628], abs=1e-4)


@pytest.mark.parametrize("robot", ["droid_franka", "droid_franka_sim", "ur5e"])
def test_ik_round_trip(robot):
    chain = build_chains(load_profile(robot))[""]
    rng = np.random.default_rng(7)
    for _ in range(20):
        q_true = rng.uniform(chain.lower * 0.9, chain.upper * 0.9)
        target = chain.fk(q_true)
        seed = np.clip(q_true + rng.normal(0.0, 0.15, chain.dof), chain.lower, chain.upper)
        q, ok, err_p, err_r = chain.ik(target, seed)
        assert ok, (err_p, err_r)
        reached = chain.fk(q)
        assert np.linalg.norm(reached[:3, 3] - target[:3, 3]) < 1e-4
        assert np.linalg.norm(mat_to_rotvec(reached[:3, :3].T @ target[:3, :3])) < 1e-3
        assert np.all(q >= chain.lower) and np.all(q <= chain.upper)


def test_ik_reports_unreachable_targets():
    chain = build_chains(load_profile("ur5e"))[""]
    target = np.eye(4)
    target[:3, 3] = [3.0, 0.0, 0.0]  # 3 m away: beyond the 0.85 m reach
    _, ok, err_p, _ = chain.ik(target, np.zeros(6))
    assert not ok and err_p > 1.0


def test_quaternion_orders_and_rotvec():
    q_wxyz = euler.euler2quat(0.0, 0.0, np.pi / 2)  # transforms3d: w, x, y, z
    ros = quat_wxyz_to_ros(q_wxyz)
    assert ros == pytest.approx([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)])  # x, y, z, w
    assert quat_ros_to_wxyz(ros) == pytest.approx(q_wxyz)
    rz90 = quat_ros_to_mat(ros)
    assert rz90 @ np.array([1.0, 0, 0]) == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    assert rotvec_to_mat(np.array([0.0, 0.0, np.pi / 2])) == pytest.approx(rz90)
    assert rotvec_to_mat(np.zeros(3)) == pytest.approx(np.eye(3))
    v = np.array([0.3, -0.2, 0.5])
    assert mat_to_rotvec(rotvec_to_mat(v)) == pytest.approx(v)
