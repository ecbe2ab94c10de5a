"""Conversions between ROS messages and the sim core's plain types (no node logic here).

Stamps: ROS ``builtin_interfaces/Time`` <-> integer nanoseconds; the node maps nanoseconds to
the sim clock. Images are ``rgb8`` with ``step = 3 * width`` (no padding).
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory

from dreamzero_sim.sim_core import CameraIntrinsics, JointStateSample
from dreamzero_sim.trajectory_follower import TrajectoryPoint


def time_msg(ns: int) -> Time:
    """``builtin_interfaces/Time`` for ``ns`` nanoseconds (clamped at 0; ROS time is unsigned)."""
    ns = max(int(ns), 0)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def time_ns(stamp: Time) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (or ``Duration``)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def joint_state_msg(sample: JointStateSample, stamp_ns: int) -> JointState:
    """``sensor_msgs/JointState`` with all names, positions, velocities and efforts."""
    return JointState(
        header=_header(stamp_ns, ""),
        name=list(sample.names),
        position=sample.position.tolist(),
        velocity=sample.velocity.tolist(),
        effort=sample.effort.tolist(),
    )


def image_msg(image: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """``sensor_msgs/Image`` rgb8 from an (H, W, 3) uint8 array."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    h, w, _ = image.shape
    msg = Image(header=_header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w)
    # array('B') is the message's native storage: assigning it skips a per-byte Python check.
    msg.data = array.array("B", np.ascontiguousarray(image).tobytes())
    return msg


def camera_info_msg(intr: CameraIntrinsics, stamp_ns: int, frame_id: str) -> CameraInfo:
    """``sensor_msgs/CameraInfo`` for an ideal pinhole camera (plumb_bob, zero distortion)."""
    k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return CameraInfo(
        header=_header(stamp_ns, frame_id),
        height=intr.height,
        width=intr.width,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=k,
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=p,
    )


def trajectory_from_msg(msg: JointTrajectory) -> tuple[list[str], list[TrajectoryPoint], int]:
    """(joint names, points, header stamp in ns) of a JointTrajectory; validation is the follower's."""
    points = [
        TrajectoryPoint(
            time_from_start=time_ns(p.time_from_start) * 1e-9,
            positions=list(p.positions),
            velocities=list(p.velocities) if len(p.velocities) else None,
        )
        for p in msg.points
    ]
    return list(msg.joint_names), points, time_ns(msg.header.stamp)


def _header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=time_msg(stamp_ns), frame_id=frame_id)
