"""Simulated DROID-like robot (MuJoCo) + policy node + adapter: the whole loop without hardware.

ros2 launch dreamzero_policy sim.launch.py backend:=inprocess checkpoint:=small
ros2 launch dreamzero_policy sim.launch.py checkpoint:=small-flash realtime_factor:=0.2   # CPU only
"""

from dreamzero_policy.bringup import sim_nodes
from dreamzero_policy.launch_actions import node_actions
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def _nodes(context):
    factor = LaunchConfiguration("realtime_factor").perform(context)
    specs = sim_nodes(
        LaunchConfiguration("backend").perform(context),
        LaunchConfiguration("checkpoint").perform(context),
        realtime_factor=float(factor) if factor else None,
    )
    return node_actions(specs)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("backend", default_value="inprocess", description="inprocess | websocket | replay"),
            DeclareLaunchArgument("checkpoint", default_value="small", description="checkpoint dir or preset name"),
            DeclareLaunchArgument(
                "realtime_factor",
                default_value="",
                description="sim seconds per wall second; set (e.g. 0.2) to run the graph on sim time "
                "when the model is slower than real time (CPU)",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
