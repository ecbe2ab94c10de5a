"""Replay backend: action chunks from a recorded bag's ``dreamzero_msgs/ActionChunk`` topic.

For bringing up a robot (adapter, controllers, safety limits) without a GPU: each ``infer`` call
returns the next recorded chunk, its columns reordered to the spec's ``action.names``. Like the
in-process backend and the official server, a request whose ``session_id`` differs from the previous
one resets the backend, so every new session replays the recording from its first chunk. The chunks are
absolute targets recorded elsewhere, so the adapter's limits must catch a robot that starts far
from the recording. Bags are read with ``rosbags`` (MCAP or sqlite3); the ActionChunk type is
rebuilt from the definition stored in the bag, so no ROS installation is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_policy.core.errors import BackendError
from dreamzero_policy.runtime.io_spec import IoSpec

ACTION_CHUNK_TYPE = "dreamzero_msgs/msg/ActionChunk"


def read_action_chunks(bag: str | Path, topic: str = "/dreamzero/action_chunk") -> list[dict[str, Any]]:
    """All ActionChunk messages on ``topic`` in log order: dicts with ``stamp_ns``, ``names``,
    ``horizon``, ``data`` (H, D) float64, ``session_id``, ``chunk_id``."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    from dreamzero_policy.data.bagio import deserialize_message

    path = Path(bag)
    if not path.exists():
        raise BackendError(f"replay: bag not found: {path}")
    out: list[dict[str, Any]] = []
    try:
        with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
            conns = [c for c in reader.connections if c.topic == topic]
            if not conns:
                topics = sorted({c.topic for c in reader.connections})
                raise BackendError(f"replay: {path} has no topic {topic!r} (topics: {topics})")
            bad = [c.msgtype for c in conns if c.msgtype != ACTION_CHUNK_TYPE]
            if bad:
                raise BackendError(f"replay: {topic!r} carries {bad[0]}, expected {ACTION_CHUNK_TYPE}")
            for conn, _t, raw in reader.messages(connections=conns):
                msg = deserialize_message(reader.typestore, raw, conn.msgtype)
                names = list(msg.names)
                data = np.asarray(msg.data, dtype=np.float64)
                if data.size != msg.horizon * len(names) or msg.horizon < 1:
                    raise BackendError(
                        f"replay: chunk {msg.chunk_id} has {data.size} values for "
                        f"horizon {msg.horizon} x {len(names)} names"
                    )
                out.append(
                    {
                        "stamp_ns": msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                        "names": names,
                        "horizon": int(msg.horizon),
                        "data": data.reshape(msg.horizon, len(names)),
                        "session_id": msg.session_id,
                        "chunk_id": int(msg.chunk_id),
                    }
                )
    except BackendError:
        raise
    except Exception as exc:  # rosbags raises many reader-specific errors
        raise BackendError(f"replay: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not out:
        raise BackendError(f"replay: {path} has no messages on {topic!r}")
    return out


class ReplayBackend:
    """:class:`~dreamzero_policy.backends.base.PolicyBackend` that replays recorded chunks in order."""

    def __init__(
        self, spec: IoSpec, bag: str | Path, topic: str = "/dreamzero/action_chunk", loop: bool = False
    ) -> None:
        self.spec = spec
        self.bag = Path(bag)
        self.loop = loop
        chunks = read_action_chunks(bag, topic)
        self._chunks = [self._reorder(c) for c in chunks]
        self._next = 0
        self._session: str | None = None

    def _reorder(self, chunk: dict[str, Any]) -> np.ndarray:
        names = chunk["names"]
        missing = [n for n in self.spec.action_names if n not in names]
        if missing:
            raise BackendError(f"replay: chunk {chunk['chunk_id']} lacks action columns {missing} (has {names})")
        cols = [names.index(n) for n in self.spec.action_names]
        a = chunk["data"][:, cols].astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise BackendError(f"replay: chunk {chunk['chunk_id']} contains NaN/inf")
        return a

    def __len__(self) -> int:
        return len(self._chunks)

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        session = str(obs.get("session_id", ""))
        if session != self._session:
            self.reset()
            self._session = session
        if self._next >= len(self._chunks):
            if not self.loop:
                raise BackendError(f"replay: all {len(self._chunks)} chunks of {self.bag.name} were played")
            self._next = 0
        idx = self._next
        self._next += 1
        return {"actions": self._chunks[idx].copy(), "replay_index": idx}

    def reset(self) -> None:
        self._next = 0
        self._session = None

    def metadata(self) -> dict[str, Any]:
        return {
            "backend": "replay",
            "model_id": f"replay:{self.bag.name}",
            "chunks": len(self._chunks),
            "action_dim": self.spec.action_dim,
            "action_names": list(self.spec.action_names),
            "action_horizon": int(self._chunks[0].shape[0]),
        }

    def close(self) -> None:
        self._chunks = []
