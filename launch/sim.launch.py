"""Simulated DROID-like robot (MuJoCo) + policy node + adapter: the whole loop without hardware.

    ros2 launch dreamzero_policy sim.launch.py backend:=inprocess checkpoint:=small
"""

from dreamzero_policy.bringup import sim_nodes
from dreamzero_policy.launch_actions import node_actions
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def _nodes(context):
    specs = sim_nodes(LaunchConfiguration("backend").perform(context),
                      LaunchConfiguration("checkpoint").perform(context))
    return node_actions(specs)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("backend", default_value="inprocess", description="inprocess | websocket | replay"),
        DeclareLaunchArgument("checkpoint", default_value="small", description="checkpoint dir or preset name"),
        OpaqueFunction(function=_nodes),
    ])
