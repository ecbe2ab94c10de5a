"""ROS message <-> plain data conversion for the adapter node (no decisions here, only translation).

Wire units: profiles with ``units: deg`` get revolute joint positions/velocities in degrees; the core is SI.
"""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from embodiment_adapters.profile import ControllerSpec, RobotProfile
from embodiment_adapters.safety.types import ChunkInput, TrajectoryPlan


def time_to_sec(t) -> float:  # builtin_interfaces Time or Duration
    return float(t.sec) + float(t.nanosec) * 1e-9


def sec_to_duration(s: float) -> Duration:
    ns = round(s * 1e9)
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def wire_scale(profile: RobotProfile) -> np.ndarray:
    """Per-joint factor SI -> wire (180/pi for revolute joints of a ``deg`` profile, else 1)."""
    deg = profile.units == "deg"
    return np.array([180.0 / math.pi if deg and j.type == "revolute" else 1.0 for j in profile.joints])


def chunk_from_msg(msg) -> ChunkInput:
    """``dreamzero_msgs/ActionChunk`` -> :class:`ChunkInput`. Shape problems are left for validation to report."""
    names = tuple(msg.names)
    data = np.asarray(msg.data, dtype=float)
    if msg.horizon > 0 and names and data.size == msg.horizon * len(names):
        data = data.reshape(msg.horizon, len(names))
    else:
        data = data.reshape(1, -1)
    return ChunkInput(
        session_id=msg.session_id,
        chunk_id=int(msg.chunk_id),
        embodiment=msg.embodiment,
        action_space=int(msg.action_space),
        stamp=time_to_sec(msg.header.stamp),
        step_duration=time_to_sec(msg.step_duration),
        horizon=int(msg.horizon),
        execute_horizon=int(msg.execute_horizon),
        names=names,
        data=data,
        frame_id=msg.header.frame_id,
    )


def joint_state_to_si(msg: JointState, profile: RobotProfile, scale: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(names, positions in SI) of the profile joints present in ``msg``; other joints are dropped."""
    names, values = [], []
    if len(msg.name) != len(msg.position):  # malformed: use nothing from it (the age watchdog covers silence)
        return names, np.asarray(values)
    for name, pos in zip(msg.name, msg.position, strict=True):
        if name in profile.joint_names:
            names.append(name)
            values.append(float(pos) / scale[profile.joint_index(name)])
    return names, np.asarray(values)


def plan_to_trajectories(
    plan: TrajectoryPlan, profile: RobotProfile, scale: np.ndarray
) -> list[tuple[ControllerSpec, JointTrajectory]]:
    """One JointTrajectory per controller: header.stamp 0 ("start now"), re-based time_from_start, wire units."""
    out = []
    for ctrl in profile.controllers:
        idx = [profile.joint_index(j) for j in ctrl.joints]
        traj = JointTrajectory()
        traj.joint_names = list(ctrl.joints)
        for k in range(len(plan.times)):
            pt = JointTrajectoryPoint()
            pt.positions = (plan.positions[k, idx] * scale[idx]).tolist()
            pt.velocities = (plan.velocities[k, idx] * scale[idx]).tolist()
            pt.time_from_start = sec_to_duration(float(plan.times[k]))
            traj.points.append(pt)
        out.append((ctrl, traj))
    return out


def commanded_state(
    profile: RobotProfile, q: np.ndarray, v: np.ndarray, grippers: dict[str, float], stamp
) -> JointState:
    """The ``~/commanded`` JointState (SI units, for visualisation and bags); grippers normalised 0..1."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(profile.joint_names)
    msg.position = [float(x) for x in q]
    msg.velocity = [float(x) for x in v]
    for g in profile.grippers:
        if g.name in grippers:
            msg.name.append(g.joint)
            msg.position.append(float(grippers[g.name]))
            msg.velocity.append(0.0)
    return msg


def gripper_command(value: float) -> Float64MultiArray:
    return Float64MultiArray(data=[float(value)])


def diagnostic(name: str, level: int, message: str, values: dict[str, str]) -> DiagnosticStatus:
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=name)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
