"""Record an episode for training: ``ros2 bag record`` in MCAP (zstd) of the topics the data pipeline reads.

    ros2 launch dreamzero_policy record.launch.py output:=episodes/ep_0001
"""

from dreamzero_policy.bringup import record_command
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def _record(context):
    return [ExecuteProcess(cmd=record_command(LaunchConfiguration("output").perform(context)), output="screen")]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("output", default_value="dreamzero_episode", description="bag directory to create"),
        OpaqueFunction(function=_record),
    ])
