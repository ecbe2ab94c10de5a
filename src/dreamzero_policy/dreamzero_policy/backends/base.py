"""The policy backend interface: the openpi ``BasePolicy`` shape, plus metadata and close.

Request (``infer`` argument), the RoboArena/openpi DROID keys built by
:func:`dreamzero_policy.runtime.observation.build_request`:

* ``<camera.request_key>`` (e.g. ``observation/exterior_image_0_left``): uint8 (T, h, w, 3) or (h, w, 3)
* ``observation/joint_position``: float32 (J,) in robot units (rad);
  ``observation/gripper_position``: float32 (1,), 0 = open .. 1 = closed
* ``prompt``: str; ``session_id``: str (a change resets the model's context, as on the official server)

Response: a dict with ``"actions"``: float32 (H, D), absolute, in the spec's action space and robot
units, columns in ``spec.action_names`` order, gripper 0..1. Backends may add more keys
(``"timing"``: dict of seconds, ``"video"``: uint8 (T, H, W, 3) predicted frames, ...).

Failures raise :class:`~dreamzero_policy.core.errors.BackendError` (or its timeout / connection
subclasses) or ``ObservationError`` for a malformed request; the worker turns them into results.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from dreamzero_policy.core.errors import BackendError


@runtime_checkable
class PolicyBackend(Protocol):
    """What the runtime needs from a policy (in-process model, remote server, bag replay)."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Actions for one observation (see module docstring for keys and shapes)."""
        ...

    def reset(self) -> None:
        """Forget the model context (KV cache, frame history); the next call starts afresh."""
        ...

    def metadata(self) -> dict[str, Any]:
        """Static facts: ``backend`` name, ``model_id``, ``action_horizon``, ``action_dim``, ..."""
        ...

    def close(self) -> None:
        """Release the model / connection / file. Idempotent."""
        ...


def check_actions(result: Any, action_dim: int | None = None) -> np.ndarray:
    """The ``"actions"`` of a backend response as float32 (H, D); BackendError when malformed."""
    if not isinstance(result, dict) or "actions" not in result:
        raise BackendError(f"backend response has no 'actions' (got {type(result).__name__})")
    a = np.asarray(result["actions"])
    if a.ndim != 2 or a.shape[0] < 1 or (action_dim is not None and a.shape[1] != action_dim):
        want = f"(H, {action_dim})" if action_dim is not None else "(H, D)"
        raise BackendError(f"backend actions have shape {a.shape}; expected {want}")
    if not np.issubdtype(a.dtype, np.number):
        raise BackendError(f"backend actions have dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise BackendError("backend actions contain NaN/inf")
    return a
