"""Forward kinematics from a profile's chain, numerical IK (damped least squares) and rotation conventions.

Conventions (REP-103, ros2-integration.md §2.6):
* ROS quaternions (geometry_msgs, chunk columns ``ee.qx, ee.qy, ee.qz, ee.qw``) are ``x, y, z, w``;
  transforms3d quaternions are ``w, x, y, z``. Convert only with :func:`quat_ros_to_wxyz`/:func:`quat_wxyz_to_ros`.
* Rotation vectors (``ee.rx, ee.ry, ee.rz``) are axis * angle (rad), converted with transforms3d ``axangles``.
* Poses are 4x4 homogeneous matrices of the tip frame in the chain's base frame (m).
"""

from __future__ import annotations

import math

import numpy as np
from transforms3d import axangles, euler, quaternions

from embodiment_adapters.profile import KinematicsSpec, RobotProfile


def quat_ros_to_wxyz(q_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = (float(v) for v in q_xyzw)
    return np.array([w, x, y, z])


def quat_wxyz_to_ros(q_wxyz: np.ndarray) -> np.ndarray:
    w, x, y, z = (float(v) for v in q_wxyz)
    return np.array([x, y, z, w])


def rotvec_to_mat(v: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, rad) -> 3x3; the zero vector maps to identity."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    return axangles.axangle2mat(np.asarray(v, dtype=float) / angle, angle, is_normalized=True)


def mat_to_rotvec(r: np.ndarray) -> np.ndarray:
    """3x3 rotation -> rotation vector (angle in [0, pi])."""
    axis, angle = axangles.mat2axangle(r, unit_thresh=1e-5)
    return np.asarray(axis) * angle


def quat_ros_to_mat(q_xyzw: np.ndarray) -> np.ndarray:
    """ROS-order quaternion (normalised here; must be non-zero) -> 3x3."""
    q = quat_ros_to_wxyz(q_xyzw)
    n = float(np.linalg.norm(q))
    if n < 1e-9:
        raise ValueError("zero quaternion")
    return quaternions.quat2mat(q / n)


def _rot_error(r_target: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Rotation vector of ``r_target @ r.T`` (world frame), fast path via the skew part, transforms3d near pi."""
    re = r_target @ r.T
    cos = max(-1.0, min(1.0, (float(np.trace(re)) - 1.0) / 2.0))
    angle = math.acos(cos)
    skew = np.array([re[2, 1] - re[1, 2], re[0, 2] - re[2, 0], re[1, 0] - re[0, 1]])
    if angle < 1e-9:
        return 0.5 * skew
    if math.pi - angle < 1e-3:
        return mat_to_rotvec(re)
    return skew * (angle / (2.0 * math.sin(angle)))


def _transform(xyz: tuple[float, ...], r: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = r
    t[:3, 3] = xyz
    return t


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _axis_rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation about a unit axis (inlined: this is the IK inner loop)."""
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    k = 1.0 - c
    return np.array(
        [
            [c + x * x * k, x * y * k - z * s, x * z * k + y * s],
            [y * x * k + z * s, c + y * y * k, y * z * k - x * s],
            [z * x * k - y * s, z * y * k + x * s, c + z * z * k],
        ]
    )


class Chain:
    """A serial revolute chain built from a :class:`KinematicsSpec` (DH standard/modified or URDF-style).

    Each joint is ``pre @ Rot(axis, q + offset) @ post``; ``q`` is indexed by ``joint_indices`` into the
    profile's joint order. ``fk``/``jacobian`` take the chain's own joint vector [n] (rad).
    """

    def __init__(self, spec: KinematicsSpec, profile: RobotProfile) -> None:
        self.spec = spec
        self.joint_indices = np.array([profile.joint_index(j) for j in spec.joints])
        lower, upper, _, _ = profile.limits_arrays()
        self.lower, self.upper = lower[self.joint_indices], upper[self.joint_indices]
        self._pre, self._post, self._axis, self._offset = [], [], [], []
        for link in spec.links:
            if spec.convention == "dh_standard":
                pre = np.eye(4)
                post = _transform((0.0, 0.0, link.d), np.eye(3)) @ _transform((link.a, 0.0, 0.0), _rx(link.alpha))
                axis, off = np.array([0.0, 0.0, 1.0]), link.theta_offset
            elif spec.convention == "dh_modified":
                pre = _transform((0.0, 0.0, 0.0), _rx(link.alpha)) @ _transform((link.a, 0.0, 0.0), np.eye(3))
                post = _transform((0.0, 0.0, link.d), np.eye(3))
                axis, off = np.array([0.0, 0.0, 1.0]), link.theta_offset
            else:  # urdf: joint origin then rotation about the (normalised) axis
                pre, post = _transform(link.xyz, euler.euler2mat(*link.rpy, axes="sxyz")), np.eye(4)
                axis, off = np.array(link.axis) / np.linalg.norm(link.axis), 0.0
            self._pre.append(pre)
            self._post.append(post)
            self._axis.append(axis)
            self._offset.append(off)
        self._tool = _transform(spec.tool_xyz, euler.euler2mat(*spec.tool_rpy, axes="sxyz"))

    @property
    def dof(self) -> int:
        return len(self._pre)

    def _walk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tip pose 4x4, joint axes in base [n, 3], joint origins in base [n, 3])."""
        t = np.eye(4)
        axes, origins = np.empty((self.dof, 3)), np.empty((self.dof, 3))
        for i in range(self.dof):
            t = t @ self._pre[i]
            axes[i] = t[:3, :3] @ self._axis[i]
            origins[i] = t[:3, 3]
            t = t @ _transform((0.0, 0.0, 0.0), _axis_rot(self._axis[i], float(q[i]) + self._offset[i])) @ self._post[i]
        return t @ self._tool, axes, origins

    def fk(self, q: np.ndarray) -> np.ndarray:
        return self._walk(np.asarray(q, dtype=float))[0]

    def jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tip pose, geometric Jacobian [6, n]: linear rows first, then angular; base frame)."""
        tip, axes, origins = self._walk(np.asarray(q, dtype=float))
        jac = np.empty((6, self.dof))
        jac[:3] = np.cross(axes, tip[:3, 3] - origins).T
        jac[3:] = axes.T
        return tip, jac

    def ik(
        self,
        target: np.ndarray,
        seed: np.ndarray,
        *,
        max_iterations: int = 100,
        position_tolerance: float = 1e-4,
        rotation_tolerance: float = 1e-3,
        damping: float = 0.02,
        max_step: float = 0.3,
    ) -> tuple[np.ndarray, bool, float, float]:
        """Damped-least-squares IK from ``seed`` (rad) towards ``target`` (4x4), within the joint limits.

        Returns (q, converged, position error m, rotation error rad). Errors are in the base frame.
        """
        q = np.clip(np.asarray(seed, dtype=float).copy(), self.lower, self.upper)
        lam2 = damping * damping
        err_p = err_r = float("inf")
        for _ in range(max_iterations):
            tip, jac = self.jacobian(q)
            e = np.concatenate([target[:3, 3] - tip[:3, 3], _rot_error(target[:3, :3], tip[:3, :3])])
            err_p, err_r = float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:]))
            if err_p < position_tolerance and err_r < rotation_tolerance:
                return q, True, err_p, err_r
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), e)
            biggest = float(np.max(np.abs(dq)))
            if biggest > max_step:  # keep steps local so the solution stays on the seed's branch
                dq *= max_step / biggest
            q = np.clip(q + dq, self.lower, self.upper)
        tip = self.fk(q)
        err_p = float(np.linalg.norm(target[:3, 3] - tip[:3, 3]))
        err_r = float(np.linalg.norm(_rot_error(target[:3, :3], tip[:3, :3])))
        return q, err_p < position_tolerance and err_r < rotation_tolerance, err_p, err_r


def build_chains(profile: RobotProfile) -> dict[str, Chain]:
    """Chains of a profile keyed by column prefix (``""`` or e.g. ``"left/"``)."""
    return {spec.prefix: Chain(spec, profile) for spec in profile.kinematics}
