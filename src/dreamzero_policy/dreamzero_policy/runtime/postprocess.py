"""Normalisation, relative -> absolute actions, gripper conventions and ``ChunkData`` assembly.

Normalisation follows the DreamZero ``q99`` transform: ``2 (x - q01) / (q99 - q01) - 1`` clipped to
[-1, 1]; dimensions with ``q01 == q99`` pass through unchanged; the inverse is not clipped.

``ChunkData`` carries every field of ``dreamzero_msgs/ActionChunk`` with plain Python/NumPy types
(times as integer nanoseconds), so the node converts it to a message without any logic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dreamzero_policy.core.errors import BackendError
from dreamzero_policy.runtime.io_spec import IoSpec, NormStats

GRIPPER = "gripper"


def normalize(x: np.ndarray, stats: NormStats) -> np.ndarray:
    """(..., D) -> (..., D) float32 in [-1, 1] (see module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    span = stats.q99 - stats.q01
    flat = span == 0
    safe = np.where(flat, 1.0, span)
    y = np.clip(2.0 * (x - stats.q01) / safe - 1.0, -1.0, 1.0)
    return np.where(flat, x, y).astype(np.float32)


def denormalize(y: np.ndarray, stats: NormStats) -> np.ndarray:
    """Inverse of :func:`normalize` (not clipped): (..., D) -> (..., D) float64."""
    y = np.asarray(y, dtype=np.float64)
    span = stats.q99 - stats.q01
    x = (y + 1.0) * 0.5 * span + stats.q01
    return np.where(span == 0, y, x)


def state_index(spec: IoSpec, action_name: str) -> int | None:
    """Index in the state vector that an action column corresponds to (None if none)."""
    if action_name in spec.state_joints:
        return spec.state_joints.index(action_name)
    if spec.gripper_joint and action_name in (GRIPPER, spec.gripper_joint):
        return len(spec.state_joints)
    return None


def to_absolute(spec: IoSpec, actions: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Add the state (at the observation time) to the relative columns: (H, D) -> (H, D)."""
    out = np.array(actions, dtype=np.float64, copy=True)
    for col, (name, rel) in enumerate(zip(spec.action_names, spec.relative_action, strict=True)):
        if rel:
            idx = state_index(spec, name)
            if idx is None:  # io_spec validation makes this unreachable for loaded specs
                raise BackendError(f"action {name!r} is relative but has no state value")
            out[:, col] += float(state[idx])
    return out


def to_relative(spec: IoSpec, actions: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_absolute` (used for training targets and tests)."""
    out = np.array(actions, dtype=np.float64, copy=True)
    for col, (name, rel) in enumerate(zip(spec.action_names, spec.relative_action, strict=True)):
        if rel:
            idx = state_index(spec, name)
            assert idx is not None
            out[:, col] -= float(state[idx])
    return out


def apply_gripper_convention(spec: IoSpec, actions: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Gripper columns to the ActionChunk convention (0 = open .. 1 = closed): clipped to [0, 1],
    and binarised at ``threshold`` when given (the DROID sim client binarises at 0.5)."""
    out = np.array(actions, dtype=np.float64, copy=True)
    for col, name in enumerate(spec.action_names):
        if name == GRIPPER or name.endswith("/" + GRIPPER):
            g = np.clip(out[:, col], 0.0, 1.0)
            out[:, col] = (g >= threshold).astype(np.float64) if threshold is not None else g
    return out


def actions_from_model(spec: IoSpec, normalized: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Model output (H, D_model >= D), normalised, relative where the spec says -> absolute (H, D)
    in robot units. ``state`` is the (state_dim,) vector the model was given (gripper 0..1)."""
    a = np.asarray(normalized)
    if a.ndim != 2 or a.shape[1] < spec.action_dim:
        raise BackendError(f"model returned actions of shape {a.shape}; expected (H, >= {spec.action_dim})")
    a = a[:, : spec.action_dim]
    if spec.action_stats is not None:
        a = denormalize(a, spec.action_stats)
    return apply_gripper_convention(spec, to_absolute(spec, a, state))


@dataclass(frozen=True)
class ChunkData:
    """ROS-free mirror of ``dreamzero_msgs/ActionChunk`` (times in integer nanoseconds).

    ``data`` is (horizon, len(names)) float64; ``flat_data()`` gives the row-major list for the message.
    """

    stamp_ns: int  # capture time of the newest observation used
    frame_id: str
    session_id: str
    chunk_id: int
    embodiment: str
    action_space: int  # ActionChunk constant
    step_duration_ns: int
    horizon: int
    execute_horizon: int
    names: tuple[str, ...]
    data: np.ndarray
    inference_started_ns: int
    inference_latency_ns: int

    def flat_data(self) -> list[float]:
        return self.data.reshape(-1).tolist()

    def step_times_ns(self) -> np.ndarray:
        """Target time of each step: stamp + (i + 1) * step_duration."""
        return self.stamp_ns + (np.arange(self.horizon, dtype=np.int64) + 1) * self.step_duration_ns


def make_chunk(
    spec: IoSpec,
    actions: np.ndarray,
    *,
    stamp_ns: int,
    session_id: str,
    chunk_id: int,
    inference_started_ns: int,
    inference_latency_ns: int,
    frame_id: str = "",
) -> ChunkData:
    """Validate absolute actions (H, D) and wrap them with the spec's names, rate and horizon.

    Raises BackendError for a wrong shape or non-finite values: such a chunk must never reach a robot.
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != spec.action_dim or a.shape[0] < 1:
        raise BackendError(f"actions have shape {a.shape}; expected (H, {spec.action_dim}) with H >= 1")
    if not np.all(np.isfinite(a)):
        rows = np.nonzero(~np.all(np.isfinite(a), axis=1))[0].tolist()
        raise BackendError(f"actions contain NaN/inf (steps {rows[:8]})")
    if chunk_id < 0 or not session_id:
        raise BackendError("chunk needs a session_id and a non-negative chunk_id")
    horizon = int(a.shape[0])
    return ChunkData(
        stamp_ns=int(stamp_ns),
        frame_id=frame_id,
        session_id=session_id,
        chunk_id=int(chunk_id),
        embodiment=spec.embodiment,
        action_space=spec.action_space_id,
        step_duration_ns=round(1e9 / spec.fps),
        horizon=horizon,
        execute_horizon=min(spec.execute_horizon, horizon),
        names=spec.action_names,
        data=np.ascontiguousarray(a),
        inference_started_ns=int(inference_started_ns),
        inference_latency_ns=max(0, int(inference_latency_ns)),
    )
