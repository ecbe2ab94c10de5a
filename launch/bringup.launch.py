"""Policy node + embodiment adapter for one robot.

    ros2 launch dreamzero_policy bringup.launch.py robot:=droid_franka embodiment:=droid \
        backend:=websocket

The node list comes from ``dreamzero_policy.bringup.bringup_nodes`` (unit-tested); this file only
turns it into launch actions and drives the policy node's lifecycle to active.
"""

from dreamzero_policy.bringup import bringup_nodes
from dreamzero_policy.launch_actions import node_actions
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def _nodes(context):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    specs = bringup_nodes(arg("robot"), arg("embodiment"), arg("backend"), arg("checkpoint"))
    return node_actions(specs)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("robot", default_value="droid_franka", description="robot profile in config/robots"),
            DeclareLaunchArgument(
                "embodiment", default_value="droid", description="model I/O spec in config/embodiments"
            ),
            DeclareLaunchArgument("backend", default_value="inprocess", description="inprocess | websocket | replay"),
            DeclareLaunchArgument("checkpoint", default_value="", description="checkpoint dir or preset name"),
            OpaqueFunction(function=_nodes),
        ]
    )
