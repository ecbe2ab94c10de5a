"""Pieces of ``dreamzero demo``: bag recorder, child processes, episode analysis, report and video.

Only :mod:`recorder`, :mod:`monitor` and :mod:`demo_tools.episode` import rclpy / ROS types; the
analysis (:mod:`metrics`), plots (:mod:`plots`) and the video (:mod:`video`) read the finished bag
with ``rosbags`` and need no ROS install.
"""
