"""Record an episode for training: ``ros2 bag record`` in MCAP (zstd) of the topics the data pipeline reads.

    ros2 launch dreamzero_policy record.launch.py output:=episodes/ep_0001 [use_sim_time:=true]

``use_sim_time:=true`` when the robot runs on sim time (``sim.launch.py realtime_factor:=...``).
"""

from dreamzero_policy.bringup import record_command
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def _record(context):
    sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1", "yes")
    cmd = record_command(LaunchConfiguration("output").perform(context), use_sim_time=sim_time)
    return [ExecuteProcess(cmd=cmd, output="screen")]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("output", default_value="dreamzero_episode", description="bag directory to create"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="log on /clock time (sim time)"),
            OpaqueFunction(function=_record),
        ]
    )
