"""Record ROS topics into a rosbag2 (MCAP, zstd chunks) from an rclpy node, without rosbag2.

There is no ``ros2 bag`` on PyPI, so the demo records itself: raw (still CDR-serialised)
subscriptions hand bytes to a queue, and one writer thread puts them into
``rosbags.rosbag2.Writer(version=9, storage_plugin=MCAP)``. Callbacks therefore never wait on
compression or disk. Topics are discovered periodically (nodes start at different times); each
is subscribed with a QoS adapted to its publishers the way rosbag2 does (reliable only when every
publisher is, transient-local only when every publisher is), so late-latched topics such as
``/tf_static`` are still recorded and best-effort camera topics stay compatible.

Log time of every message = receive time on the recorder node's clock, in ns (sim time when the
recorder is created with ``use_sim_time``, as in the demo: then every duration and rate of the
report is in sim seconds, like the nodes' own stamps).
"""

from __future__ import annotations

import importlib
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

from dreamzero_policy.data.bagio import make_typestore

_QUEUE_LIMIT = 4000  # messages; ~3 s of everything at demo rates. Beyond it, drop and count.


@dataclass
class TopicStats:
    msgtype: str
    messages: int = 0
    bytes: int = 0
    dropped: int = 0  # messages lost because the write queue was full


@dataclass
class RecordSummary:
    path: Path
    topics: dict[str, TopicStats] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # wanted topics that never appeared
    skipped: dict[str, str] = field(default_factory=dict)  # topic -> why it was not recorded

    @property
    def messages(self) -> int:
        return sum(s.messages for s in self.topics.values())


def message_class(msgtype: str) -> Any:
    """``'sensor_msgs/msg/Image'`` -> the generated Python class (raises ValueError if unknown)."""
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ValueError(f"not a message type name: {msgtype!r}")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {msgtype} is not installed: {exc}") from exc


def adapted_qos(publisher_qos: list[QoSProfile], depth: int = 100) -> QoSProfile:
    """A subscription QoS compatible with every publisher (rosbag2's adaptive QoS rule)."""
    reliable = bool(publisher_qos) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in publisher_qos)
    latched = bool(publisher_qos) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in publisher_qos)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagRecorder:
    """Records ``topics`` (those that exist) into the new rosbag2 directory ``path``.

    ``node`` is created in ``context``; add it to an executor. Call :meth:`close` once (it stops
    subscriptions, drains the queue and finalises the MCAP index); the bag is unreadable before.
    """

    def __init__(
        self,
        context: Any,
        path: Path,
        topics: tuple[str, ...] | list[str],
        discovery_period_s: float = 0.25,
        node_name: str = "demo_recorder",
        use_sim_time: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag directory {self.path} already exists; choose a new output folder")
        self.wanted = tuple(dict.fromkeys(topics))
        self._typestore = make_typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        # STORAGE mode on MCAP = zstd-compressed chunks (rosbag2's zstd_fast preset equivalent).
        self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._writer.open()
        self._lock = threading.Lock()  # guards the writer, _conns and stats between timer and writer thread
        self._conns: dict[str, Any] = {}
        self._subs: dict[str, Any] = {}
        self.summary = RecordSummary(self.path)
        self._queue: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="bag-writer", daemon=True)
        self._thread.start()
        self.node = Node(
            node_name, context=context, parameter_overrides=[Parameter("use_sim_time", value=bool(use_sim_time))]
        )
        # Discovery on the steady clock: topics appear before /clock does.
        self._timer = self.node.create_timer(
            discovery_period_s, self.discover, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )

    # ------------------------------------------------------------------ discovery / subscribing
    def discover(self) -> None:
        """Subscribe to every wanted topic that now has publishers (called by a timer)."""
        if self._closed:
            return
        types = dict(self.node.get_topic_names_and_types())
        for topic in self.wanted:
            if topic in self._subs or topic in self.summary.skipped or topic not in types:
                continue
            pubs = self.node.get_publishers_info_by_topic(topic)
            if not pubs:
                continue  # only subscribers so far
            names = types[topic]
            if len(names) != 1:
                self.summary.skipped[topic] = f"several types on one topic: {', '.join(names)}"
                self.node.get_logger().error(f"not recording {topic}: {self.summary.skipped[topic]}")
                continue
            self._subscribe(topic, names[0], [p.qos_profile for p in pubs])

    def _subscribe(self, topic: str, msgtype: str, publisher_qos: list[QoSProfile]) -> None:
        try:
            cls = message_class(msgtype)
            with self._lock:
                self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
                self.summary.topics[topic] = TopicStats(msgtype)
        except Exception as exc:  # unknown to the typestore or not importable: record the rest
            self.summary.skipped[topic] = f"{type(exc).__name__}: {exc}"
            self.node.get_logger().error(f"not recording {topic}: {self.summary.skipped[topic]}")
            return
        self._subs[topic] = self.node.create_subscription(
            cls, topic, lambda raw, t=topic: self._on_message(t, raw), adapted_qos(publisher_qos), raw=True
        )

    def _on_message(self, topic: str, raw: bytes) -> None:
        stamp = self.node.get_clock().now().nanoseconds
        try:
            self._queue.put_nowait((topic, stamp, raw))
        except queue.Full:
            with self._lock:
                self.summary.topics[topic].dropped += 1

    # ------------------------------------------------------------------ writing
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, stamp, raw = item
            try:
                with self._lock:
                    self._writer.write(self._conns[topic], stamp, raw)
                    stats = self.summary.topics[topic]
                    stats.messages += 1
                    stats.bytes += len(raw)
            except BaseException as exc:  # keep the first failure; close() re-raises it
                self._error = self._error or exc
                return

    @property
    def message_counts(self) -> dict[str, int]:
        with self._lock:
            return {t: s.messages for t, s in self.summary.topics.items()}

    def close(self) -> RecordSummary:
        """Stop recording and finalise the bag; raises if writing failed. Idempotent."""
        if self._closed:
            return self.summary
        self._closed = True
        self._timer.cancel()
        for sub in self._subs.values():
            self.node.destroy_subscription(sub)
        while self._thread.is_alive():  # a dead writer (after an error) no longer drains the queue
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        with self._lock:
            self._writer.close()
        seen = {*self.summary.topics, *self.summary.skipped}
        self.summary.missing = [t for t in self.wanted if t not in seen]
        if self._error is not None:
            raise RuntimeError(f"writing the bag {self.path} failed: {self._error}") from self._error
        return self.summary
