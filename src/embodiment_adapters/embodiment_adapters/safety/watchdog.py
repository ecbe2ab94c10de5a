"""Watchdogs on chunk age and joint-state age (pure): the node calls :meth:`Watchdog.check` from a timer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WatchdogConfig:
    """chunk_timeout: s since the last accepted chunk arrived before a moving robot is held.
    joint_state_timeout: s since the last complete joint state before the robot is held and chunks refused."""

    chunk_timeout: float = 1.5
    joint_state_timeout: float = 0.25

    def __post_init__(self) -> None:
        if not (self.chunk_timeout > 0.0 and self.joint_state_timeout > 0.0):
            raise ValueError(f"watchdog timeouts must be > 0, got {self.chunk_timeout}, {self.joint_state_timeout}")


class Watchdog:
    def __init__(self, cfg: WatchdogConfig) -> None:
        self.cfg = cfg
        self.last_chunk: float | None = None
        self.last_joint_state: float | None = None

    def chunk_received(self, t: float) -> None:
        self.last_chunk = t

    def joint_state_received(self, t: float) -> None:
        self.last_joint_state = t

    def joint_state_fault(self, now: float) -> str | None:
        if self.last_joint_state is None:
            return "no joint_states received yet"
        age = now - self.last_joint_state
        if age > self.cfg.joint_state_timeout:
            return f"joint_states stale ({age:.3f} s > {self.cfg.joint_state_timeout:.3f} s)"
        return None

    def check(self, now: float, moving: bool) -> str | None:
        """Reason to hold the robot now, or None. Chunk age only matters while a trajectory is running."""
        fault = self.joint_state_fault(now)
        if fault is not None:
            return fault
        if moving and self.last_chunk is not None and now - self.last_chunk > self.cfg.chunk_timeout:
            return f"no new chunk for {now - self.last_chunk:.3f} s (> {self.cfg.chunk_timeout:.3f} s)"
        return None
