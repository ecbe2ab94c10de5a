"""Reading rosbag2 directories (MCAP or sqlite3, Humble/Jazzy) with ``rosbags``; no ROS install.

Types come from the bag's own embedded definitions when it has them (MCAP, Iron+ sqlite3); bags
without (Humble sqlite3) fall back to the Jazzy store plus ``dreamzero_msgs`` registered from the
``.msg`` text at run time. Every failure is re-raised as :class:`BagReadError` naming the file
and how far reading got, and every read is checked against the bag's own per-topic message
counts, so a truncated bag can never pass for a short one. Bags are opened read-only.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
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
        self._reader: AnyReader | None = None

    def __enter__(self) -> Bag:
        if not self.path.exists():
            raise BagReadError(f"{self.path}: no such bag")
        try:
            self._reader = AnyReader([self.path], default_typestore=self._typestore)
            self._reader.open()
        except Exception as exc:  # rosbags raises many types (ReaderError, sqlite3, struct, zstd)
            self._reader = None
            raise BagReadError(f"{self.path}: cannot open bag (corrupt, truncated or not a rosbag2): {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    @property
    def reader(self) -> AnyReader:
        if self._reader is None:
            raise BagReadError(f"{self.path}: bag is not open")
        return self._reader

    def topics(self) -> dict[str, TopicInfo]:
        out: dict[str, TopicInfo] = {}
        for conn in self.reader.connections:
            prev = out.get(conn.topic)
            if prev is not None and prev.msgtype != conn.msgtype:
                raise BagReadError(f"{self.path}: topic {conn.topic} has two types {prev.msgtype}, {conn.msgtype}")
            out[conn.topic] = TopicInfo(conn.topic, conn.msgtype, (prev.count if prev else 0) + conn.msgcount)
        return out

    def connections(self, topics: Iterable[str]) -> list[Connection]:
        wanted = set(topics)
        return [c for c in self.reader.connections if c.topic in wanted]

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        try:
            return self.reader.deserialize(raw, msgtype)
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
            for conn, t, raw in self.reader.messages(connections=conns):
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
