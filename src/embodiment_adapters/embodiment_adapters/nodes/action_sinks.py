"""Optional control_msgs action clients (FollowJointTrajectory, GripperCommand, ParallelGripperCommand).

control_msgs is not installable on the team's CI machines, so everything here is import-guarded: when the
module is missing :data:`AVAILABLE` is False and the node uses the topic interfaces (the tested default).
Goals are fire-and-forget: a new goal preempts the previous one on the controller side.
"""

from __future__ import annotations

from typing import Any

try:  # pragma: no cover - exercised only where control_msgs exists
    from control_msgs.action import FollowJointTrajectory, GripperCommand, ParallelGripperCommand
    from rclpy.action import ActionClient

    AVAILABLE = True
except ImportError:  # the topic path is the default and fully tested
    AVAILABLE = False


class TrajectoryActionSink:  # pragma: no cover - needs control_msgs
    def __init__(self, node: Any, action_name: str) -> None:
        self._client = ActionClient(node, FollowJointTrajectory, action_name)
        self.name = action_name

    def send(self, trajectory: Any) -> bool:
        if not self._client.server_is_ready():
            return False
        goal = FollowJointTrajectory.Goal()
        goal.trajectory = trajectory
        self._client.send_goal_async(goal)
        return True


class GripperActionSink:  # pragma: no cover - needs control_msgs
    def __init__(self, node: Any, action_name: str, parallel: bool, joint: str, max_effort: float) -> None:
        self._parallel = parallel
        self._joint = joint
        self._max_effort = max_effort
        self._client = ActionClient(node, ParallelGripperCommand if parallel else GripperCommand, action_name)

    def send(self, value: float) -> bool:
        if not self._client.server_is_ready():
            return False
        if self._parallel:
            goal = ParallelGripperCommand.Goal()
            goal.command.name = [self._joint]
            goal.command.position = [float(value)]
        else:
            goal = GripperCommand.Goal()
            goal.command.position = float(value)
            goal.command.max_effort = float(self._max_effort)
        self._client.send_goal_async(goal)
        return True
