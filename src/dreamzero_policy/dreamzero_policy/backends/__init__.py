"""Policy backends behind one interface (:class:`~dreamzero_policy.backends.base.PolicyBackend`):
``inprocess`` (the world action model), ``websocket`` (openpi/RoboArena client, e.g. the official
DreamZero server or ``dreamzero serve``), ``replay`` (chunks from a recorded bag).
Heavy modules are imported lazily so a robot PC using ``websocket`` never imports torch.
"""

from __future__ import annotations

from typing import Any

from dreamzero_policy.backends.base import PolicyBackend
from dreamzero_policy.core.errors import IoSpecError
from dreamzero_policy.runtime.io_spec import IoSpec

BACKENDS = ("inprocess", "websocket", "replay")


def create_backend(kind: str, spec: IoSpec, **options: Any) -> PolicyBackend:
    """Build a backend by name.

    * ``inprocess``: ``preset="tiny"`` or ``checkpoint=PATH``; ``device``, ``seed``.
    * ``websocket``: ``host``, ``port``, ``connect_timeout_s``, ``infer_timeout_s``, ``max_connect_attempts``.
    * ``replay``: ``bag=PATH``, ``topic``, ``loop``.
    """
    if kind == "inprocess":
        from dreamzero_policy.backends.inprocess import InProcessBackend

        checkpoint = options.pop("checkpoint", None)
        device = options.pop("device", "cpu")
        if checkpoint:
            return InProcessBackend.from_pretrained(spec, checkpoint, device=device)
        return InProcessBackend.from_preset(
            spec, options.pop("preset", "tiny"), seed=options.pop("seed", 0), device=device
        )
    if kind == "websocket":
        from dreamzero_policy.backends.websocket import WebsocketBackend

        return WebsocketBackend(action_dim=spec.action_dim, **options)
    if kind == "replay":
        from dreamzero_policy.backends.replay import ReplayBackend

        return ReplayBackend(spec, **options)
    raise IoSpecError(f"backend: {kind!r} is not one of {list(BACKENDS)}")


__all__ = ["BACKENDS", "PolicyBackend", "create_backend"]
