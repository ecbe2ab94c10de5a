"""Everything the policy node publishes, in one place.

* Lifecycle publishers (only deliver while the node is active; created in configure, destroyed in
  cleanup): ``/dreamzero/action_chunk``, ``/dreamzero/observation_used``, optional
  ``~/joint_trajectory``, ``~/predicted/image`` (throttled).
* Plain publishers (deliver in every state, so a failed configure is still explained):
  ``/dreamzero/status`` and ``/diagnostics``.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory

from dreamzero_msgs.msg import ActionChunk, ObservationStamp, PolicyStatus
from dreamzero_policy.nodes import converters as conv
from dreamzero_policy.nodes import qos
from dreamzero_policy.nodes.status import StatusReport
from dreamzero_policy.runtime import RuntimeEvent

CHUNK_TOPIC = "/dreamzero/action_chunk"
STATUS_TOPIC = "/dreamzero/status"
OBSERVATION_TOPIC = "/dreamzero/observation_used"
DIAGNOSTICS_TOPIC = "/diagnostics"


class PolicyOutputs:
    """Publishers of one PolicyNode. ``open``/``close`` follow configure/cleanup."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self._status_pub = node.create_publisher(PolicyStatus, STATUS_TOPIC, qos.status_qos)
        self._diag_pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, qos.status_qos)
        self._pubs: dict[str, Any] = {}
        self._trajectory_joints: tuple[str, ...] = ()
        self._last_video_ns = 0

    def open(self, trajectory_joints: tuple[str, ...] | None) -> None:
        """Create the lifecycle publishers; ``trajectory_joints`` enables ~/joint_trajectory."""
        node = self._node
        # No QoS event handlers on publishers destroyed at run time (cleanup): see inputs.py for the
        # rclpy race that turns their destruction into an exception out of the executor's spin().
        ev = {"event_callbacks": PublisherEventCallbacks(use_default_callbacks=False)}
        self._pubs = {
            "chunk": node.create_lifecycle_publisher(ActionChunk, CHUNK_TOPIC, qos.chunk_qos, **ev),
            "observation": node.create_lifecycle_publisher(ObservationStamp, OBSERVATION_TOPIC, qos.status_qos, **ev),
            "video": node.create_lifecycle_publisher(Image, "~/predicted/image", qos.preview_qos, **ev),
        }
        self._trajectory_joints = trajectory_joints or ()
        if trajectory_joints:
            self._pubs["trajectory"] = node.create_lifecycle_publisher(
                JointTrajectory, "~/joint_trajectory", qos.chunk_qos, **ev
            )

    def close(self) -> None:
        for pub in self._pubs.values():
            self._node.destroy_lifecycle_publisher(pub)
        self._pubs = {}

    def publish_chunk(self, ev: RuntimeEvent, *, video_rate_hz: float | None, frame_id: str) -> None:
        """ActionChunk, its provenance record, the JointTrajectory and (throttled) a predicted frame."""
        chunk = ev.chunk
        if chunk is None or not self._pubs:
            return
        self._pubs["chunk"].publish(conv.chunk_to_msg(chunk))
        if "trajectory" in self._pubs:
            self._pubs["trajectory"].publish(conv.chunk_to_joint_trajectory(chunk, self._trajectory_joints))
        self._pubs["observation"].publish(
            conv.observation_stamp_msg(ev.stamp_ns, chunk.session_id, chunk.chunk_id, ev.sources)
        )
        if video_rate_hz and ev.video is not None:
            self._publish_preview(ev, video_rate_hz, frame_id)

    def _publish_preview(self, ev: RuntimeEvent, rate_hz: float, frame_id: str) -> None:
        """The newest predicted frame, at most ``rate_hz``. A malformed video from a backend is
        logged and skipped: it must never cost the chunk (already published) or the timer."""
        now = time.monotonic_ns()
        if now - self._last_video_ns < 1e9 / rate_hz:
            return
        video = ev.video
        if video is None or video.ndim != 4 or video.shape[0] < 1 or video.shape[-1] != 3:
            shape = None if video is None else video.shape
            self._node.get_logger().warning(
                f"predicted video has shape {shape}, expected (T, H, W, 3); not published", throttle_duration_sec=5.0
            )
            return
        self._last_video_ns = now
        self._pubs["video"].publish(conv.frame_to_image(video[-1], ev.stamp_ns, frame_id))

    def publish_status(self, report: StatusReport, now_ns: int) -> None:
        self._status_pub.publish(conv.status_msg(report, now_ns))
        self._diag_pub.publish(
            conv.diagnostics_msg(report, now_ns, f"{self._node.get_name()}: policy", report.model_id or "dreamzero")
        )
