"""Pieces of ``dreamzero demo``: bag recorder, child processes, episode analysis, report and video.

Only :mod:`.recorder`, :mod:`.monitor` and :mod:`.session` import rclpy / ROS message types. The
analysis (:mod:`.episode`, :mod:`.metrics`), the report (:mod:`.report`, :mod:`.plots`), the video
(:mod:`.video`) and :mod:`.processes` read the finished bag with ``rosbags`` or use the stdlib, and
need no ROS install.
"""
