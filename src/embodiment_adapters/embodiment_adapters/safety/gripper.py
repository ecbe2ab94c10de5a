"""Gripper send-on-change (pure): every new goal preempts the previous one and grasps are slow, so only a
meaningful change of the normalised command (more than the profile's epsilon) produces a new command."""

from __future__ import annotations

from embodiment_adapters.profile import GripperSpec


class GripperGate:
    def __init__(self, spec: GripperSpec) -> None:
        self.spec = spec
        self.last_sent: float | None = None

    def update(self, normalised: float) -> float | None:
        """Controller value to send for ``normalised`` (0 open .. 1 closed, clamped), or None if unchanged."""
        x = min(1.0, max(0.0, float(normalised)))
        if self.last_sent is not None and abs(x - self.last_sent) <= self.spec.epsilon:
            return None
        self.last_sent = x
        return self.spec.to_controller(x)

    def reset(self) -> None:
        """Forget the last command (e.g. after enable) so the next one is sent."""
        self.last_sent = None
