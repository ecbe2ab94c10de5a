"""Reading rosbag2 directories (MCAP or sqlite3, Humble/Jazzy) with ``rosbags``; no ROS install.

Types come from the bag's own embedded definitions when it has them (MCAP, Iron+ sqlite3); bags
without (Humble sqlite3) fall back to the Jazzy store plus ``dreamzero_msgs`` registered from the
``.msg`` text at run time. Every failure is re-raised as :class:`BagReadError` naming the file
and how far reading got, and every read is checked against the bag's own per-topic message
counts, so a truncated bag can never pass for a short one. Bags are opened read-only.

A bag that is one uncompressed-mode MCAP file (what ``ros2 bag record`` writes on Jazzy) is
opened by ``rosbags`` (types, topics, counts, a checked summary) and then streamed with the
``mcap`` library, one chunk in memory at a time (:func:`mcap_messages`). rosbags' own reader
keeps an index entry and a generator per chunk for the whole read, which grows with bag length
(about 0.7 KB per chunk, and a raw-camera bag has a chunk per image); it also copies each
payload several times. Other bags (sqlite3, split or file-compressed, chunks out of time order,
no summary) are read by rosbags.
"""

from __future__ import annotations

import heapq
import itertools
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, DataEnd, Message
from mcap.stream_reader import StreamReader, breakup_chunk
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from dreamzero_policy.core.errors import BagReadError

MSG_PACKAGE = "dreamzero_msgs"


def _msg_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    """Where ``dreamzero_msgs/msg/*.msg`` may live: explicit dirs, the ament index, the source tree."""
    dirs = [Path(p) for p in extra]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / MSG_PACKAGE / "msg")
    dirs.append(Path(__file__).resolve().parents[3] / MSG_PACKAGE / "msg")  # src/<pkg>/<pkg>/data -> src/
    return dirs


def make_typestore(msg_dirs: Sequence[Path] = ()) -> Typestore:
    """The Jazzy typestore plus every ``dreamzero_msgs`` message found (first directory wins)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    for directory in _msg_dirs(msg_dirs):
        files = sorted(directory.glob("*.msg")) if directory.is_dir() else []
        if files:
            types: dict[str, Any] = {}
            for f in files:
                types.update(get_types_from_msg(f.read_text(), f"{MSG_PACKAGE}/msg/{f.stem}"))
            store.register(types)
            break
    return store


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """Header stamp of a CDR message whose first field is ``std_msgs/Header`` (Image, JointState...).

    Parses 8 bytes after the 4-byte encapsulation header instead of deserialising the whole
    message, which matters for camera topics where the payload is megabytes.
    """
    little = raw[1] == 1  # encapsulation kind 0x0001 = CDR_LE, 0x0000 = CDR_BE
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def deserialize_message(types: Typestore, raw: bytes | memoryview, msgtype: str) -> Any:
    """``types.deserialize_cdr``, but reading messages with bytes left over past their data as ROS does.

    ``rclpy.serialization.serialize_message`` (so also bags written from Python with rosbag2_py)
    ends some messages, JointState among them, with a few bytes past the data: the Fast DDS rmw
    sizes the buffer by its estimate. ROS itself reads such messages; rosbags rejects them with a
    "size mismatch", and only then are they read again without that check.
    """
    raw = memoryview(raw)
    try:
        return types.deserialize_cdr(raw, msgtype)
    except SerdeError as exc:
        if "size mismatch" not in str(exc):
            raise
    msgdef = types.get_msgdef(msgtype)  # the encapsulation was checked by deserialize_cdr
    read = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    message, _end = read(raw[4:], 0, msgdef.cls, types)
    return message


def storage_source(path: Path) -> Path:
    """What rosbags opens: the bag directory, or its only storage file if ``metadata.yaml`` is missing.

    ``ros2 bag record`` writes ``metadata.yaml`` when it stops, so an interrupted recording (or a bag
    copied without it) has none. A single .mcap or .db3 file carries its own topics and counts.
    """
    if not path.is_dir() or (path / "metadata.yaml").exists():
        return path
    files = sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    if len(files) == 1:
        return files[0]
    found = ", ".join(p.name for p in files) or "no .mcap or .db3 file"
    raise BagReadError(
        f"{path}: no metadata.yaml ({found}); the recording was interrupted or the bag was copied without it. "
        f"`ros2 bag reindex {path}` rebuilds it on a ROS machine"
    )


def single_mcap_file(path: Path) -> Path | None:
    """The bag's only storage file if it is MCAP without rosbag2 compression, else None."""
    if path.is_file():
        return path if path.suffix == ".mcap" else None
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        files = info.get("relative_file_paths") or []
        plain = not info.get("compression_mode") and not info.get("compression_format")
        if plain and info.get("storage_identifier") == "mcap" and len(files) == 1 and files[0].endswith(".mcap"):
            return path / files[0]
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        pass  # rosbags has opened it already; let it read what this check does not understand
    return None


def chunks_start_in_order(path: Path) -> bool:
    """True if the MCAP file's chunks, in file order, start at non-decreasing log times.

    That is what lets :func:`mcap_messages` release messages early. A message delayed by more
    than a chunk's worth of data breaks it; such files (and files without a summary, which
    rosbags reads by a scan of its own) are left to rosbags. Reads only the summary section.
    """
    try:
        with path.open("rb") as f:
            summary = make_reader(f).get_summary()
    except Exception:  # rosbags has opened it already; let it read what this check cannot
        return False
    if summary is None:
        return False
    starts = [c.message_start_time for c in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)]
    return all(a <= b for a, b in itertools.pairwise(starts))


def mcap_messages(path: Path, by_topic: dict[str, Connection]) -> Iterator[tuple[Connection, int, bytes]]:
    """``(connection, log_time_ns, raw)`` of ``by_topic``'s topics from one MCAP file, in rosbags' order.

    rosbags merges every chunk's messages (each chunk sorted by log time, stable; ties across
    chunks to the earlier chunk; only messages within the chunk's declared time range). Chunks
    are written in time order, so this holds only the chunks whose time ranges overlap: pending
    messages are released once the next chunk starts at or after them. Chunk CRCs are checked.
    """
    channels: dict[int, Connection | None] = {}
    pending: list[tuple[int, int, int, bytes]] = []  # heap of (log time, sequence, channel, data)
    seq = 0
    last = -(2**63)

    def release(upto: int) -> Iterator[tuple[Connection, int, bytes]]:
        nonlocal last
        while pending and pending[0][0] <= upto:
            t, _, channel, data = heapq.heappop(pending)
            if t < last:
                raise BagReadError(f"{path}: messages are not in log-time order")
            last = t
            yield channels[channel], t, data  # type: ignore[misc]

    with path.open("rb") as f:
        for rec in StreamReader(f, emit_chunks=True).records:
            if isinstance(rec, Chunk):
                yield from release(rec.message_start_time)
                inner = breakup_chunk(rec, validate_crc=True)
                for r in inner:
                    if isinstance(r, Channel):
                        channels[r.id] = by_topic.get(r.topic)
                lo, hi = rec.message_start_time, rec.message_end_time
                wanted = [
                    r for r in inner if isinstance(r, Message) and channels.get(r.channel_id) and lo <= r.log_time <= hi
                ]
                for m in wanted:  # file order: the heap's (time, sequence) key is rosbags' stable sort
                    seq += 1
                    heapq.heappush(pending, (m.log_time, seq, m.channel_id, m.data))
            elif isinstance(rec, Channel):
                channels[rec.id] = by_topic.get(rec.topic)
            elif isinstance(rec, Message) and channels.get(rec.channel_id):  # outside chunks: file order
                seq += 1
                heapq.heappush(pending, (rec.log_time, seq, rec.channel_id, rec.data))
                yield from release(rec.log_time)
            elif isinstance(rec, DataEnd):
                break
    yield from release(2**63)


@dataclass(frozen=True)
class TopicInfo:
    topic: str
    msgtype: str
    count: int


class Bag:
    """One rosbag2 directory (or single .mcap/.db3 file) opened read-only.

    Use as a context manager. ``read`` yields ``(connection, log_time_ns, raw)`` for the chosen
    topics and raises :class:`BagReadError` on corruption or a count mismatch.
    """

    def __init__(self, path: str | Path, typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        self._typestore = typestore or make_typestore()
        self._reader: AnyReader | None = None  # open while rosbags reads the messages
        self._connections: list[Connection] | None = None  # None while closed
        self._types: Typestore | None = None  # the bag's types (rosbags builds them at open)
        self._mcap: Path | None = None  # streamed with the mcap library instead
        self.start_ns = self.end_ns = 0  # first and last log time, once open

    def __enter__(self) -> Bag:
        if not self.path.exists():
            raise BagReadError(f"{self.path}: no such bag")
        source = storage_source(self.path)
        try:
            self._reader = AnyReader([source], default_typestore=self._typestore)
            self._reader.open()
        except Exception as exc:  # rosbags raises many types (ReaderError, sqlite3, struct, zstd)
            self._reader = None
            raise BagReadError(f"{self.path}: cannot open bag (corrupt, truncated or not a rosbag2): {exc}") from exc
        self._connections, self._types = list(self._reader.connections), self._reader.typestore
        self.start_ns, self.end_ns = int(self._reader.start_time), int(self._reader.end_time)  # log times
        topics = [c.topic for c in self._connections]
        mcap = single_mcap_file(source) if len(set(topics)) == len(topics) else None
        self._mcap = mcap if mcap is not None and chunks_start_in_order(mcap) else None
        if self._mcap is not None:
            self._close_reader()  # frees rosbags' chunk index; messages are streamed from the file
        return self

    def __exit__(self, *exc: object) -> None:
        self._connections = self._types = self._mcap = None
        self._close_reader()

    def _close_reader(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    @property
    def streamed(self) -> bool:
        """True when messages are streamed from a single MCAP file (constant memory)."""
        return self._mcap is not None

    @property
    def types(self) -> Typestore:
        """The bag's message types (embedded definitions, else the fallback store)."""
        if self._types is None:
            raise BagReadError(f"{self.path}: bag is not open")
        return self._types

    def _open_connections(self) -> list[Connection]:
        if self._connections is None:
            raise BagReadError(f"{self.path}: bag is not open")
        return self._connections

    def topics(self) -> dict[str, TopicInfo]:
        out: dict[str, TopicInfo] = {}
        for conn in self._open_connections():
            prev = out.get(conn.topic)
            if prev is not None and prev.msgtype != conn.msgtype:
                raise BagReadError(f"{self.path}: topic {conn.topic} has two types {prev.msgtype}, {conn.msgtype}")
            out[conn.topic] = TopicInfo(conn.topic, conn.msgtype, (prev.count if prev else 0) + conn.msgcount)
        return out

    def connections(self, topics: Iterable[str]) -> list[Connection]:
        wanted = set(topics)
        return [c for c in self._open_connections() if c.topic in wanted]

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """The message; its array fields may be views of ``raw`` (no copy of an image's pixels)."""
        try:
            return deserialize_message(self.types, raw, msgtype)
        except Exception as exc:
            raise BagReadError(f"{self.path}: cannot deserialise a {msgtype} message: {exc}") from exc

    def read(
        self, topics: Iterable[str], progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[Connection, int, bytes]]:
        """Yield ``(connection, log_time_ns, raw_cdr)`` in log-time order for ``topics``.

        After the last message the per-connection counts are compared with the bag's index; a
        shortfall (truncated file, damaged chunk) raises :class:`BagReadError`.
        """
        conns = self.connections(topics)
        if not conns:
            return
        counts = {id(c): 0 for c in conns}
        n, last_t = 0, None
        try:
            if self._mcap is not None:
                messages = mcap_messages(self._mcap, {c.topic: c for c in conns})
            else:
                assert self._reader is not None
                messages = self._reader.messages(connections=conns)
            for conn, t, raw in messages:
                counts[id(conn)] += 1
                n += 1
                last_t = t
                if progress is not None:
                    progress(1)
                yield conn, t, raw
        except BagReadError:
            raise
        except Exception as exc:
            where = f"after {n} messages" + (f" (last log time {last_t} ns)" if last_t is not None else "")
            raise BagReadError(f"{self.path}: read failed {where}: {type(exc).__name__}: {exc}") from exc
        short = [f"{c.topic}: {counts[id(c)]}/{c.msgcount}" for c in conns if counts[id(c)] != c.msgcount]
        if short:
            raise BagReadError(
                f"{self.path}: bag is truncated or damaged; messages read/indexed per topic: {', '.join(short)}"
            )

    def expected_count(self, topics: Iterable[str]) -> int:
        return sum(c.msgcount for c in self.connections(topics))
