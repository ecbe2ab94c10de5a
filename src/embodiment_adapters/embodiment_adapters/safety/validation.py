"""Chunk validation: everything that makes a chunk unusable is a :class:`ChunkRejected` with a readable reason."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from embodiment_adapters.profile import RobotProfile
from embodiment_adapters.safety.types import ActionSpace, ChunkInput, ChunkRejected, SafetyConfig

EEF_SPACES = (ActionSpace.EEF_POSE, ActionSpace.EEF_POSE_DELTA)
_EE_POS = ("ee.x", "ee.y", "ee.z")
_EE_ROTVEC = ("ee.rx", "ee.ry", "ee.rz")
_EE_QUAT = ("ee.qx", "ee.qy", "ee.qz", "ee.qw")  # ROS order
_GRIPPER_RANGE = (-0.1, 1.1)  # normalised values beyond this are not "a bit off", they are wrong


@dataclass(frozen=True)
class EefColumns:
    """Column indices of one chain's pose: position (3) and rotation (3 rotvec or 4 ROS-order quaternion)."""

    position: tuple[int, int, int]
    rotation: tuple[int, ...]

    @property
    def is_quaternion(self) -> bool:
        return len(self.rotation) == 4


@dataclass(frozen=True)
class ColumnMap:
    """Where each profile quantity lives in the chunk's ``data`` columns."""

    joint_cols: tuple[int, ...] = ()  # one per profile joint, joint spaces only
    gripper_cols: dict[str, int] = field(default_factory=dict)
    eef: dict[str, EefColumns] = field(default_factory=dict)  # chain prefix -> columns


def validate_chunk(chunk: ChunkInput, profile: RobotProfile, cfg: SafetyConfig, now: float) -> ColumnMap:
    """Check a chunk against the profile and config; returns the column map or raises :class:`ChunkRejected`."""
    if chunk.embodiment not in profile.embodiments:
        raise ChunkRejected(
            f"embodiment {chunk.embodiment!r} does not match profile {profile.name!r} "
            f"(accepted: {list(profile.embodiments)})"
        )
    try:
        space = ActionSpace(chunk.action_space)
    except ValueError:
        raise ChunkRejected(f"unknown action_space {chunk.action_space}") from None
    if space not in profile.action_spaces:
        raise ChunkRejected(
            f"action space {space.name} not supported by profile {profile.name!r} "
            f"(supported: {[a.name for a in profile.action_spaces]})"
        )
    if chunk.horizon <= 0:
        raise ChunkRejected("horizon is zero")
    if not chunk.names:
        raise ChunkRejected("no column names")
    expected = chunk.horizon * len(chunk.names)
    if chunk.data.size != expected or chunk.data.shape != (chunk.horizon, len(chunk.names)):
        raise ChunkRejected(
            f"data has {chunk.data.size} values, expected horizon*len(names) = "
            f"{chunk.horizon}*{len(chunk.names)} = {expected}"
        )
    dt = chunk.step_duration
    if not math.isfinite(dt) or not cfg.min_step_duration <= dt <= cfg.max_step_duration:
        allowed = f"{cfg.min_step_duration}..{cfg.max_step_duration} s"
        raise ChunkRejected(f"absurd step_duration {dt!r} s (allowed {allowed})")
    if not math.isfinite(chunk.stamp) or chunk.stamp <= 0.0:
        raise ChunkRejected(f"invalid header.stamp {chunk.stamp!r}")
    if chunk.stamp > now + cfg.max_stamp_skew:
        raise ChunkRejected(f"header.stamp is {chunk.stamp - now:.3f} s in the future (clock skew?)")
    if not np.all(np.isfinite(chunk.data)):
        row, col = np.argwhere(~np.isfinite(chunk.data))[0]
        raise ChunkRejected(f"non-finite value at step {row}, column {chunk.names[col]!r}")
    if len(set(chunk.names)) != len(chunk.names):
        dup = next(n for n in chunk.names if chunk.names.count(n) > 1)
        raise ChunkRejected(f"duplicate column name {dup!r}")

    cmap = _eef_columns(chunk, profile) if space in EEF_SPACES else _joint_columns(chunk, profile)
    for name, col in cmap.gripper_cols.items():
        values = chunk.data[:, col]
        if values.min() < _GRIPPER_RANGE[0] or values.max() > _GRIPPER_RANGE[1]:
            span = f"{values.min():.3f}..{values.max():.3f}"
            raise ChunkRejected(f"gripper column {chunk.names[col]!r} outside 0..1 ({span}) for {name}")
    return cmap


def _joint_columns(chunk: ChunkInput, profile: RobotProfile) -> ColumnMap:
    cols: dict[str, int] = {}
    grippers = {g.name for g in profile.grippers}
    gripper_cols: dict[str, int] = {}
    for i, name in enumerate(chunk.names):
        if name in profile.ignored_dims:
            continue
        target = profile.resolve(name)
        if target is None:
            raise ChunkRejected(f"unknown column name {name!r} for profile {profile.name!r}")
        bucket = gripper_cols if target in grippers else cols
        if target in bucket:
            raise ChunkRejected(f"columns {chunk.names[bucket[target]]!r} and {name!r} both drive {target!r}")
        bucket[target] = i
    missing = [j for j in profile.joint_names if j not in cols]
    if missing:
        raise ChunkRejected(f"chunk does not command joint(s) {missing} of profile {profile.name!r}")
    return ColumnMap(joint_cols=tuple(cols[j] for j in profile.joint_names), gripper_cols=gripper_cols)


def _eef_columns(chunk: ChunkInput, profile: RobotProfile) -> ColumnMap:
    frames = {k.base_frame for k in profile.kinematics}
    if chunk.frame_id and chunk.frame_id not in frames:
        raise ChunkRejected(
            f"header.frame_id {chunk.frame_id!r} is not a kinematic base frame of the profile ({sorted(frames)})"
        )
    index = {n: i for i, n in enumerate(chunk.names)}
    used: set[str] = set()
    eef: dict[str, EefColumns] = {}
    for spec in profile.kinematics:
        pos = [spec.prefix + n for n in _EE_POS]
        if not any(p in index for p in pos):
            continue
        if chunk.frame_id and chunk.frame_id != spec.base_frame:
            raise ChunkRejected(f"header.frame_id {chunk.frame_id!r} differs from chain base {spec.base_frame!r}")
        rv, qt = [spec.prefix + n for n in _EE_ROTVEC], [spec.prefix + n for n in _EE_QUAT]
        if all(r in index for r in rv):
            rot = rv
        elif all(q in index for q in qt):
            rot = qt
        else:
            raise ChunkRejected(
                f"chain {spec.prefix or '(default)'}: rotation columns missing (need {rv} or {qt} in ROS x,y,z,w order)"
            )
        missing = [p for p in pos if p not in index]
        if missing:
            raise ChunkRejected(f"missing end-effector column(s) {missing}")
        if len(rot) == 4:
            norms = np.linalg.norm(chunk.data[:, [index[q] for q in rot]], axis=1)
            if np.any(np.abs(norms - 1.0) > 0.1):
                span = f"{norms.min():.3f}..{norms.max():.3f}"
                raise ChunkRejected(f"quaternion columns {rot} are not unit length (norms {span})")
        used.update(pos, rot)
        eef[spec.prefix] = EefColumns(tuple(index[p] for p in pos), tuple(index[r] for r in rot))  # type: ignore[arg-type]
    if not eef:
        raise ChunkRejected("end-effector chunk has no ee.x/ee.y/ee.z columns for any kinematic chain")
    gripper_cols: dict[str, int] = {}
    grippers = {g.name for g in profile.grippers}
    for name, i in index.items():
        if name in used or name in profile.ignored_dims:
            continue
        target = profile.resolve(name)
        if target not in grippers:
            raise ChunkRejected(f"unknown column name {name!r} in an end-effector chunk")
        gripper_cols[target] = i
    return ColumnMap(gripper_cols=gripper_cols, eef=eef)
