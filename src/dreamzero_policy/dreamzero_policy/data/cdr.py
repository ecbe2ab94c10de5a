"""JointState fields read straight from CDR bytes, without building a message object.

The converter's reading thread sees every message of a bag, and robots publish JointState at
100-1000 Hz. rosbags' general deserialiser (about 10 us a message here) was its largest cost after
the read itself. This parser reads the same fields in about a third of that and keeps the name list
as its serialised bytes, so an unchanged list (the usual case) is recognised by one comparison
instead of decoding every string.

It handles only what ``ros2 bag record`` writes for the standard definition: little-endian plain
CDR. Anything else (big-endian data, a buffer that ends early, a name that is not UTF-8) returns
None, and the caller falls back to rosbags, which also produces the error message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

JOINT_STATE = "sensor_msgs/msg/JointState"
_LAYOUT_TYPES = (JOINT_STATE, "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
_HEAD = struct.Struct("<iII")  # stamp.sec, stamp.nanosec, frame_id length (with its NUL)
_U32 = struct.Struct("<I")
_F64 = np.dtype("<f8")
_standard_layout: dict[str, Any] | None = None


def joint_state_layout_is_standard(types: Any) -> bool:
    """True when ``types`` (a bag's typestore) defines JointState as ROS 2 does (Humble to Jazzy)."""
    global _standard_layout
    if _standard_layout is None:
        jazzy = get_typestore(Stores.ROS2_JAZZY)
        _standard_layout = {t: jazzy.fielddefs[t] for t in _LAYOUT_TYPES}
    try:
        return all(types.fielddefs[t] == d for t, d in _standard_layout.items())
    except (KeyError, AttributeError):
        return False


@dataclass(frozen=True, slots=True)
class JointStateFields:
    """One JointState's stamp, names and value arrays (views of the message bytes)."""

    stamp_ns: int
    names: list[str]  # the same list object for every message with the same name list
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


class JointStateParser:
    """Parses one topic's JointState messages; remembers the name lists it decoded."""

    def __init__(self) -> None:
        self._names_key = b""
        self._names: list[str] = []
        self._seen: dict[bytes, list[str]] = {}  # name lists of every publisher on the topic (a few)

    def parse(self, raw: bytes | memoryview) -> JointStateFields | None:
        buf = memoryview(raw)
        if len(buf) < 4 or buf[0] != 0 or buf[1] != 1:  # encapsulation 0x0001: plain CDR, little-endian
            return None
        body = buf[4:]  # CDR alignment counts from here
        try:
            sec, nanosec, frame_len = _HEAD.unpack_from(body, 0)
            start = (12 + frame_len + 3) & ~3
            (count,) = _U32.unpack_from(body, start)
            end = start + 4
            for _ in range(count):
                end = (end + 3) & ~3
                (length,) = _U32.unpack_from(body, end)
                if length == 0:  # a ROS string carries at least its NUL
                    return None
                end += 4 + length
            if end > len(body):
                return None
            key = body[start:end]
            if key != self._names_key:
                key_bytes = bytes(key)
                names = self._seen.get(key_bytes)
                if names is None:
                    names = _decode_names(key, count)
                    if len(self._seen) >= 64:  # names that keep changing: do not grow without bound
                        self._seen.clear()
                    self._seen[key_bytes] = names
                self._names, self._names_key = names, key_bytes
            arrays = []
            for _ in range(3):
                end = (end + 3) & ~3
                (n,) = _U32.unpack_from(body, end)
                end += 4
                if n:  # an empty sequence has no padding before its (absent) first element
                    end = (end + 7) & ~7
                arrays.append(np.frombuffer(body, _F64, n, end))
                end += 8 * n
        except (struct.error, ValueError):  # ends early; frombuffer raises ValueError
            return None
        return JointStateFields(sec * 1_000_000_000 + nanosec, self._names, *arrays)


def _decode_names(key: memoryview, count: int) -> list[str]:
    names, at = [], 4
    for _ in range(count):
        at = (at + 3) & ~3
        (length,) = _U32.unpack_from(key, at)
        # The offsets in ``key`` are the body's minus a multiple of 4, so the alignment matches.
        names.append(bytes(key[at + 4 : at + 3 + length]).decode())
        at += 4 + length
    return names
