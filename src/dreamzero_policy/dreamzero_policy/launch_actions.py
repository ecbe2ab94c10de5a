"""Turn :class:`~dreamzero_policy.bringup.NodeSpec` lists into ROS 2 launch actions.

Only imported by the launch files (needs ``launch`` / ``launch_ros`` from a ROS 2 install). Lifecycle
nodes are configured and activated by launch events, not by their own ``main``.
"""

from __future__ import annotations

from launch.actions import EmitEvent, RegisterEventHandler
from launch.events import matches_action
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from dreamzero_policy.bringup import NodeSpec


def node_actions(specs: list[NodeSpec]) -> list:
    actions: list = []
    for spec in specs:
        params = [str(p) for p in spec.parameter_files] + ([spec.parameters] if spec.parameters else [])
        common = dict(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            parameters=params,
            remappings=list(spec.remappings),
            output="screen",
        )
        if not spec.lifecycle:
            actions.append(Node(**common))
            continue
        node = LifecycleNode(namespace="", **common)
        configure = EmitEvent(
            event=ChangeState(
                lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_CONFIGURE
            )
        )
        activate = RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                goal_state="inactive",
                entities=[
                    EmitEvent(
                        event=ChangeState(
                            lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_ACTIVATE
                        )
                    )
                ],
            )
        )
        actions += [node, activate, configure]
    return actions
