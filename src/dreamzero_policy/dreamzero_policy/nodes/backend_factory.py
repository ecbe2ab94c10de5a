"""Node parameters -> a policy backend, plus the warm-up call.

Kept out of ``policy_node.py`` so the node file only wires ROS entities; every function here is
ROS-free and raises :class:`~dreamzero_policy.core.errors.DreamZeroError` subclasses (or the
backend's own errors) that the node turns into a failed ``configure`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from dreamzero_policy.backends import create_backend
from dreamzero_policy.backends.base import PolicyBackend, check_actions
from dreamzero_policy.nodes.params import NodeParams
from dreamzero_policy.runtime.io_spec import IoSpec
from dreamzero_policy.runtime.observation import build_request

BackendFactory = Callable[[NodeParams, IoSpec], PolicyBackend]


def default_backend_factory(params: NodeParams, spec: IoSpec) -> PolicyBackend:
    """Build the backend the parameters name (imports torch only for ``inprocess``)."""
    if params.backend == "inprocess":
        if Path(params.checkpoint).is_dir():
            return create_backend("inprocess", spec, checkpoint=params.checkpoint, device=params.device)
        return create_backend("inprocess", spec, preset=params.checkpoint, seed=params.seed, device=params.device)
    if params.backend == "websocket":
        return create_backend(
            "websocket",
            spec,
            host=params.websocket_host,
            port=params.websocket_port,
            connect_timeout_s=params.websocket_timeout_s,
            infer_timeout_s=params.websocket_timeout_s,
        )
    return create_backend("replay", spec, bag=params.replay_bag_path, loop=params.replay_loop)


def warm_up(backend: PolicyBackend, spec: IoSpec) -> np.ndarray:
    """One inference on black frames and a zero state, then ``reset()`` so the warm-up leaves no
    model context behind. Returns the actions (H, D); raises the backend's error on failure.
    Call only while no worker uses the backend (during configure)."""
    h, w = spec.request_size
    black = np.zeros((h, w, 3), dtype=np.uint8)
    frames = {cam.name: [black] * spec.frames_first_call for cam in spec.cameras}
    state = np.zeros(spec.state_dim, dtype=np.float64)
    if spec.gripper_joint:
        state[-1] = spec.gripper_open
    request = build_request(spec, frames, state, spec.format_prompt("warm up"), "warmup")
    try:
        actions = check_actions(backend.infer(request), spec.action_dim)
    finally:
        backend.reset()
    return actions
