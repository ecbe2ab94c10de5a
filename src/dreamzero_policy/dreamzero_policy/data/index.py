"""Pass 1 over a bag: every stamp and low-dimensional value the mapping needs, but no pixels.

Camera messages are not deserialised here: their header stamp is read straight from the CDR
bytes, and the message's ordinal on its topic is kept so pass 2 can pick the frames. Memory is a
few numbers per message, independent of image size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dreamzero_policy.core.errors import MappingError
from dreamzero_policy.data.bagio import Bag, header_stamp_ns
from dreamzero_policy.data.cdr import JOINT_STATE, JointStateParser, joint_state_layout_is_standard
from dreamzero_policy.data.episodes import receive_to_header
from dreamzero_policy.data.mapping import Mapping
from dreamzero_policy.data.streams import DISCARD, Series, SeriesBuilder, drop_non_increasing, unstamped_error

if TYPE_CHECKING:
    from dreamzero_policy.data.live import LiveConversion

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


@dataclass
class BagIndex:
    """What pass 1 learned about one bag."""

    video: dict[str, Series]  # video key -> stamps, values[:, 0] = message ordinal on the topic
    state: dict[str, Series]
    action: dict[str, Series]  # only topic-sourced action keys that have messages
    missing_action_topics: list[str]
    instruction_events: list[tuple[int, str]] = field(default_factory=list)
    episode_events: list[tuple[int, str]] = field(default_factory=list)  # instruction_topic split
    status_events: list[tuple[int, bytes, int]] = field(default_factory=list)  # run_task split
    topics: dict[str, tuple[str, int]] = field(default_factory=dict)  # topic -> (type, count)
    event_clock: str = "receive time"  # or how the events were moved onto the header clock


def build_index(
    bag: Bag, mapping: Mapping, progress: Callable[[int], None] | None = None, live: LiveConversion | None = None
) -> BagIndex:
    """Read the mapped topics once; raises MappingError when the bag does not fit the mapping.

    With ``live``, camera messages and series progress are also fed to it (single-pass video).
    """
    topics = bag.topics()
    available = ", ".join(sorted(topics)) or "(none)"

    def need(topic: str, what: str, types: tuple[str, ...] | None = None) -> str:
        if topic not in topics:
            raise MappingError(f"{bag.path}: {what} topic {topic} is not in the bag (topics: {available})")
        if types and topics[topic].msgtype not in types:
            raise MappingError(f"{bag.path}: {what} topic {topic} has type {topics[topic].msgtype}, expected {types}")
        return topics[topic].msgtype

    for v in mapping.video:
        need(v.topic, f"video '{v.key}'", IMAGE_TYPES)
    receive = set(mapping.receive_time_topics)
    builders: dict[str, list[tuple[str, SeriesBuilder]]] = {}
    for s in mapping.state:
        builders.setdefault(s.topic, []).append(
            ("state", SeriesBuilder(s, need(s.topic, f"state '{s.key}'"), mapping.period_ns, s.topic in receive))
        )
    missing_actions = []
    for a in mapping.action:
        if a.stream is None:
            continue
        if a.stream.topic not in topics or topics[a.stream.topic].count == 0:
            missing_actions.append(a.stream.topic)
            continue
        builders.setdefault(a.stream.topic, []).append(
            (
                "action",
                SeriesBuilder(a.stream, topics[a.stream.topic].msgtype, mapping.period_ns, a.stream.topic in receive),
            )
        )
    ins_topic = mapping.instruction.topic
    if ins_topic:
        need(ins_topic, "instruction", ("std_msgs/msg/String",))
    ep = mapping.episodes
    if ep.split == "instruction_topic":
        need(str(ep.topic), "episode", ("std_msgs/msg/String",))
    elif ep.split == "run_task":
        need(str(ep.topic), "episode", ("action_msgs/msg/GoalStatusArray",))

    if live is not None:  # index order, which is also the order of the two-pass plan's keys
        pairs = [(role, b) for blist in builders.values() for role, b in blist]
        live.require([(r, b) for r, b in pairs if r == "state" or not missing_actions], bool(missing_actions))
        for _, b in pairs:
            if b.sink is None:  # actions of a video-only episode: nothing keeps them
                b.sink = DISCARD
    video_topics = {v.topic for v in mapping.video}
    stamps: dict[str, list[int]] = {t: [] for t in video_topics}
    ordinals = dict.fromkeys(video_topics, 0)
    unstamped = dict.fromkeys(video_topics, 0)
    # Episode and instruction events carry receive times; a camera's pairs put them on the header clock.
    clock_topic = next((v.topic for v in mapping.video if v.topic not in receive), None) if live is None else None
    clock_receive: list[int] = []
    index = BagIndex({}, {}, {}, missing_actions, topics={t: (i.msgtype, i.count) for t, i in topics.items()})
    wanted = video_topics | set(builders) | {t for t in (ins_topic, ep.topic) if t}
    joint_states: dict[str, JointStateParser] = {}  # hot topics read without rosbags' deserialiser
    if joint_state_layout_is_standard(bag.types):
        joint_states = {t: JointStateParser() for t in builders if topics[t].msgtype == JOINT_STATE}
    for conn, log_t, raw in bag.read(wanted, progress):
        topic = conn.topic
        if topic in video_topics:
            stamp = log_t if topic in receive else header_stamp_ns(raw)
            unstamped[topic] += stamp == 0
            if live is None:
                stamps[topic].append(stamp)
                if topic == clock_topic:
                    clock_receive.append(log_t)
            else:  # the single pass keeps no per-frame state here; the ordinal still counts every message
                live.camera(topic, ordinals[topic], stamp, raw)
            ordinals[topic] += 1
        if topic in builders:
            parser = joint_states.get(topic)
            fields = parser.parse(raw) if parser is not None else None
            if fields is not None:
                for _, b in builders[topic]:
                    b.add_joint_state(fields, log_t)
            else:
                msg = bag.deserialize(raw, conn.msgtype)
                for _, b in builders[topic]:
                    b.add(msg, log_t)
        if live is not None:
            live.advance()
        if topic in (ins_topic, ep.topic) and conn.msgtype == "std_msgs/msg/String":
            text = str(bag.deserialize(raw, conn.msgtype).data)
            if topic == ins_topic:
                index.instruction_events.append((log_t, text))
            if topic == ep.topic:
                index.episode_events.append((log_t, text))
        elif topic == ep.topic and ep.split == "run_task":
            for st in bag.deserialize(raw, conn.msgtype).status_list:
                index.status_events.append(
                    (log_t, bytes(np.asarray(st.goal_info.goal_id.uuid, np.uint8)), int(st.status))
                )
    for topic, zeros in unstamped.items():
        if zeros > 1 and zeros == ordinals[topic]:
            raise unstamped_error(topic, zeros)
    if clock_topic is not None:
        _events_to_header_clock(index, clock_topic, stamps[clock_topic], clock_receive)
    for v in mapping.video:
        t = np.asarray(stamps[v.topic], dtype=np.int64)
        times, ordinals, dropped = drop_non_increasing(t, np.arange(len(t), dtype=np.float64)[:, None])
        source = "receive" if v.topic in receive else "header"
        index.video[v.key] = Series(v.key, v.topic, times, ordinals, dropped, source, False)
    for blist in builders.values():
        for role, b in blist:
            (index.state if role == "state" else index.action)[b.spec.key] = b.finish()
    return index


def _events_to_header_clock(index: BagIndex, topic: str, header: list[int], receive: list[int]) -> None:
    """Move the receive-time events onto the header clock when the two clocks differ (sim time)."""
    h, r = np.asarray(header, np.int64), np.asarray(receive, np.int64)
    for events in (index.instruction_events, index.episode_events, index.status_events):
        if not events:
            continue
        moved = receive_to_header([e[0] for e in events], r, h)
        if moved is None:
            return
        events[:] = [(t, *e[1:]) for t, e in zip(moved, events, strict=True)]  # type: ignore[misc]
        offset = float(np.median(h - r)) / 1e9
        index.event_clock = f"receive time moved onto the header clock via {topic} (median offset {offset:+.3f} s)"
