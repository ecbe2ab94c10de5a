"""Chunk rows -> joint position targets [H, J] (SI, profile joint order) for every action space.

References: deltas and velocities are integrated from ``reference`` = the position the adapter COMMANDED at the
chunk's stamp (or the measured state when nothing is being commanded), not from the measured state: the model
predicted relative to where the robot was told to be, and measured tracking error must not accumulate.
End-effector poses are solved with the profile's kinematics (damped least squares, seeded step to step).
"""

from __future__ import annotations

import numpy as np

from embodiment_adapters.kinematics import Chain, quat_ros_to_mat, rotvec_to_mat
from embodiment_adapters.profile import RobotProfile
from embodiment_adapters.safety.types import ActionSpace, ChunkInput, ChunkRejected
from embodiment_adapters.safety.validation import ColumnMap, EefColumns


def to_joint_targets(
    chunk: ChunkInput,
    cmap: ColumnMap,
    profile: RobotProfile,
    reference: np.ndarray,
    chains: dict[str, Chain] | None = None,
) -> np.ndarray:
    """Joint targets [horizon, J] (rad / m) for the validated ``chunk``; ``reference`` [J] as described above."""
    space = ActionSpace(chunk.action_space)
    if space in (ActionSpace.EEF_POSE, ActionSpace.EEF_POSE_DELTA):
        return _eef_targets(chunk, cmap, reference, chains or {}, relative=space == ActionSpace.EEF_POSE_DELTA)
    rows = chunk.data[:, list(cmap.joint_cols)]
    if space == ActionSpace.JOINT_POSITION:
        return rows.copy()
    if space == ActionSpace.JOINT_POSITION_DELTA:
        if profile.delta_mode == "cumulative":
            return reference[None, :] + np.cumsum(rows, axis=0)
        return reference[None, :] + rows
    # JOINT_VELOCITY: row i is the velocity over step i, so the target at the end of step i is the running sum.
    return reference[None, :] + np.cumsum(rows * chunk.step_duration, axis=0)


def _pose(row: np.ndarray, cols: EefColumns) -> tuple[np.ndarray, np.ndarray]:
    pos = row[list(cols.position)]
    rot_vals = row[list(cols.rotation)]
    rot = quat_ros_to_mat(rot_vals) if cols.is_quaternion else rotvec_to_mat(rot_vals)
    return pos, rot


def _eef_targets(
    chunk: ChunkInput, cmap: ColumnMap, reference: np.ndarray, chains: dict[str, Chain], relative: bool
) -> np.ndarray:
    targets = np.tile(reference, (chunk.horizon, 1))  # joints outside any commanded chain hold the reference
    for prefix, cols in cmap.eef.items():
        chain = chains.get(prefix)
        if chain is None:
            raise ChunkRejected(f"no kinematics for chain prefix {prefix!r}")
        idx = chain.joint_indices
        seed = reference[idx]
        base = chain.fk(seed)
        for i in range(chunk.horizon):
            pos, rot = _pose(chunk.data[i], cols)
            goal = np.eye(4)
            if relative:
                # Delta in the base frame, anchored at the pose at the stamp: p = p0 + dp, R = dR @ R0.
                goal[:3, 3] = base[:3, 3] + pos
                goal[:3, :3] = rot @ base[:3, :3]
            else:
                goal[:3, 3], goal[:3, :3] = pos, rot
            q, ok, err_p, err_r = chain.ik(goal, seed)
            if not ok:
                raise ChunkRejected(
                    f"IK failed for chain {prefix or '(default)'} at step {i}: residual {err_p * 1000:.1f} mm, "
                    f"{np.degrees(err_r):.2f} deg (target unreachable or outside joint limits)"
                )
            targets[i, idx] = q
            seed = q
    return targets
