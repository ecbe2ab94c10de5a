"""Errors the simulated robot raises on purpose (stdlib only).

Each carries a message a user can act on; the ROS node turns them into log lines and service
responses so that bad input never crashes the sim and the arm keeps holding its last command.
"""

from __future__ import annotations


class SimError(Exception):
    """Base class of every deliberate error in ``dreamzero_sim``."""


class CommandRejected(SimError, ValueError):
    """A command (trajectory or gripper) was malformed; the previous command stays active.

    ``reason`` is a short machine-readable code (e.g. ``unknown_joints``, ``non_increasing_time``,
    ``non_finite``) for counters and tests; the message is for humans.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TrajectoryRejected(CommandRejected):
    """A JointTrajectory violated joint_trajectory_controller's validity rules."""


class RenderingUnavailableError(SimError, RuntimeError):
    """No offscreen OpenGL backend (EGL or OSMesa) works in this process."""


class SceneError(SimError, ValueError):
    """The MJCF scene is missing or lacks a joint, actuator or camera the sim needs."""
