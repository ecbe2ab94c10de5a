"""Named QoS profiles of the policy node, one per role (why each is what it is).

- ``image_qos``: sensor data (BEST_EFFORT, KEEP_LAST 5, VOLATILE). A BEST_EFFORT subscriber matches
  both reliable and best-effort camera publishers, and a late frame is worth less than the next one.
- ``joint_state_qos``: the same, for the same reasons (high rate, newest wins).
- ``chunk_qos``: RELIABLE, KEEP_LAST 5: chunks are few (a few Hz at most) and each one matters to
  the adapter and to bag recordings.
- ``instruction_qos``: RELIABLE + TRANSIENT_LOCAL, depth 1: a node that starts after the operator
  published the instruction still receives it (a latched topic).
- ``status_qos``: RELIABLE, depth 10, for status, diagnostics and provenance records; a
  BEST_EFFORT subscriber (RViz, Foxglove) still matches.
- ``preview_qos``: BEST_EFFORT, depth 1: predicted frames are for humans, never worth a retry.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

image_qos: QoSProfile = qos_profile_sensor_data
joint_state_qos: QoSProfile = qos_profile_sensor_data

chunk_qos = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

instruction_qos = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

status_qos = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

preview_qos = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
