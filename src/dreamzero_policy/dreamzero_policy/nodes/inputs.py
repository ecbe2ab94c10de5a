"""Everything the policy node subscribes to, in one place (the counterpart of ``outputs.py``).

* Cameras (``Image`` or ``CompressedImage`` per the embodiment spec) and ``JointState``: sensor-data
  QoS, each subscription in its OWN mutually exclusive callback group. Different inputs (and the
  decision timer, and long transitions) run concurrently, but two messages of one topic never do:
  in one reentrant group a MultiThreadedExecutor ran consecutive JointStates on two threads, the
  older one landed second, and the buffers saw "time went backwards" (new session) under load.
  The callbacks only cache: a cheap header check (:func:`check_image`, no pixel decode), then the
  runtime's locked buffers. Decoding happens on the inference worker.
* ``~/instruction`` (``std_msgs/String``): in the node's default (mutually exclusive) group, since it
  changes the session like the services do.

Created on activate, destroyed on deactivate, without QoS event handlers: rclpy (Jazzy) adds a
default incompatible-QoS handler per subscription as an executor "waitable", and destroying one
while another executor thread builds its wait set raises ``InvalidHandle`` out of ``spin()`` (seen
in the bench on deactivate; rclpy skips the failed enter but still adds the waitable). The sensor
subscriptions are BEST_EFFORT + VOLATILE, which every publisher's QoS is compatible with, so the
default handler had nothing to report anyway. A rejected input is logged (throttled) and
remembered for ``REJECTION_MEMORY_S`` so "waiting for input" status messages can say why.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from dreamzero_policy.core.images import check_image
from dreamzero_policy.nodes import converters as conv
from dreamzero_policy.nodes import qos
from dreamzero_policy.runtime import IoSpec, PolicyRuntime

REJECTION_MEMORY_S = 3.0  # a rejected input is quoted in "waiting for input" messages this long


class PolicyInputs:
    """Subscriptions of one PolicyNode. ``open``/``close`` follow activate/deactivate.

    ``on_instruction(text)`` is called for every ``~/instruction`` message.
    """

    def __init__(self, node: Any, on_instruction: Callable[[str], None]) -> None:
        self._node = node
        self._on_instruction_text = on_instruction
        self._subs: list[Any] = []
        self._runtime: PolicyRuntime | None = None
        self._rejection = ("", 0.0)  # (message, monotonic time)
        self.precheck_rejected = 0  # frames refused by the header check (never reached the runtime)
        self._count_lock = threading.Lock()  # camera callbacks run concurrently
        # Arrival delay of sensor messages (node clock now - header stamp), for diagnostics/bench:
        # all of them, and split by kind (a 900 KB image and a small JointState travel differently).
        self.arrival_delays_s: deque[float] = deque(maxlen=2000)
        self.image_delays_s: deque[float] = deque(maxlen=2000)
        self.joint_delays_s: deque[float] = deque(maxlen=2000)
        # Node-side part of those delays: middleware reception (MessageInfo received_timestamp, system
        # clock) -> callback start. Excludes serialisation and transport, i.e. what the executor and the
        # GIL (the model worker thread) add.
        self.image_dispatch_s: deque[float] = deque(maxlen=2000)
        self.joint_dispatch_s: deque[float] = deque(maxlen=2000)

    def open(self, runtime: PolicyRuntime, spec: IoSpec, joint_state_topic: str) -> None:
        node = self._node
        self._runtime = runtime
        no_events = SubscriptionEventCallbacks(use_default_callbacks=False)
        for cam in spec.cameras:
            msg_type = CompressedImage if cam.compressed else Image
            self._subs.append(
                node.create_subscription(
                    msg_type,
                    cam.topic,
                    partial(self._on_image, cam.name),
                    qos.image_qos,
                    event_callbacks=no_events,
                    callback_group=MutuallyExclusiveCallbackGroup(),
                )
            )
        self._subs.append(
            node.create_subscription(
                JointState,
                joint_state_topic,
                self._on_joint_state,
                qos.joint_state_qos,
                event_callbacks=no_events,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )
        )
        # TRANSIENT_LOCAL could meet an incompatible publisher; the rclpy race above rules out the
        # default handler, and ~/instruction is a latched topic the operator's tools publish.
        self._subs.append(
            node.create_subscription(
                String, "~/instruction", self._on_instruction, qos.instruction_qos, event_callbacks=no_events
            )
        )

    def close(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        self._runtime = None

    # ------------------------------------------------------------------ rejections

    def note_rejection(self, message: str) -> None:
        self._rejection = (message, time.monotonic())
        self._node.get_logger().warning(f"input problem: {message}", throttle_duration_sec=2.0)

    def recent_rejection(self) -> str:
        """The last input problem if it is recent (else "")."""
        message, at = self._rejection
        return message if message and time.monotonic() - at < REJECTION_MEMORY_S else ""

    # ------------------------------------------------------------------ callbacks (cache only)

    def _arrived(self, stamp: int, per_kind: deque[float], info: dict[str, Any], dispatch: deque[float]) -> None:
        received = info.get("received_timestamp", 0)
        if received > 0:  # 0: the middleware does not report reception times
            dispatch.append((time.time_ns() - received) * 1e-9)
        delay = (self._node.get_clock().now().nanoseconds - stamp) * 1e-9
        self.arrival_delays_s.append(delay)
        per_kind.append(delay)

    def _on_image(self, camera: str, msg: Image | CompressedImage, info: dict[str, Any]) -> None:
        rt = self._runtime
        if rt is None:
            return
        stamp = conv.stamp_ns(msg)
        self._arrived(stamp, self.image_delays_s, info, self.image_dispatch_s)
        problem = check_image(msg)
        if problem is not None:
            with self._count_lock:
                self.precheck_rejected += 1
            self.note_rejection(f"camera {camera}: {problem}")
            return
        err = rt.add_image(camera, stamp, msg)
        if err is not None:
            self.note_rejection(err)

    def _on_joint_state(self, msg: JointState, info: dict[str, Any]) -> None:
        rt = self._runtime
        if rt is None:
            return
        stamp = conv.stamp_ns(msg)
        self._arrived(stamp, self.joint_delays_s, info, self.joint_dispatch_s)
        err = rt.add_joint_state(stamp, msg.name, msg.position)
        if err is not None:
            self.note_rejection(err)

    def _on_instruction(self, msg: String) -> None:
        self._on_instruction_text(msg.data)
