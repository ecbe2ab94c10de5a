"""Read a recorded demo episode (rosbag2) into plain NumPy arrays for the report.

No ROS needed: the bag is read with ``rosbags`` (:class:`dreamzero_policy.data.bagio.Bag`).
Times are seconds relative to the first recorded message. Joint series use header stamps (the
time the value was true), falling back to the receive time when a publisher left the stamp 0;
rates use receive times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_policy.data.bagio import Bag

JOINT_STATES = "/joint_states"
COMMANDED = "/adapter_node/commanded"  # the adapter's ~/commanded under its bringup node name
CHUNKS = "/dreamzero/action_chunk"
STATUS = "/dreamzero/status"
TRAJECTORY = "/arm_controller/joint_trajectory"

POLICY_STATES = ("UNCONFIGURED", "INACTIVE", "WARMING_UP", "WAITING_FOR_INPUT", "RUNNING", "BACKEND_ERROR", "ERROR")


@dataclass
class JointSeries:
    """Joint samples: ``t`` (N,) s, ``pos`` (N, J) rad (NaN where a joint was absent), ``names`` (J,)."""

    names: tuple[str, ...]
    t: np.ndarray
    pos: np.ndarray
    recv_t: np.ndarray  # (N,) receive time, s

    @classmethod
    def empty(cls) -> JointSeries:
        return cls((), np.zeros(0), np.zeros((0, 0)), np.zeros(0))

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass
class ChunkSeries:
    """One row per received ActionChunk: receive time (s), id, session, latency (s), step (s), horizon."""

    recv_t: np.ndarray
    chunk_id: np.ndarray
    session: list[str]
    latency_s: np.ndarray
    step_s: np.ndarray
    execute_horizon: np.ndarray
    horizon: np.ndarray

    def __len__(self) -> int:
        return int(self.recv_t.shape[0])


@dataclass
class Episode:
    path: Path
    duration_s: float
    topic_counts: dict[str, int]
    measured: JointSeries
    commanded: JointSeries
    chunks: ChunkSeries
    trajectory_recv_t: np.ndarray  # receive times of commands sent to the (sim) controller, s
    last_status: dict[str, Any] = field(default_factory=dict)
    adapter_status: dict[str, Any] = field(default_factory=dict)  # last adapter ~/status key/values
    running_since_s: float | None = None  # first status in state RUNNING


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _joint_series(rows: list[tuple[int, int, list[str], np.ndarray]], t0: int) -> JointSeries:
    """rows: (log_ns, stamp_ns, names, positions). Column order = first-seen name order."""
    if not rows:
        return JointSeries.empty()
    names: list[str] = []
    for _, _, row_names, _ in rows:
        names.extend(n for n in row_names if n not in names)
    index = {n: i for i, n in enumerate(names)}
    pos = np.full((len(rows), len(names)), np.nan)
    for k, (_, _, row_names, values) in enumerate(rows):
        for n, v in zip(row_names, values, strict=False):
            pos[k, index[n]] = v
    recv = np.array([r[0] for r in rows], np.int64)
    stamp = np.array([r[1] if r[1] > 0 else r[0] for r in rows], np.int64)
    order = np.argsort(stamp, kind="stable")
    return JointSeries(tuple(names), (stamp[order] - t0) / 1e9, pos[order], (recv[order] - t0) / 1e9)


def _status_dict(msg: Any) -> dict[str, Any]:
    state = int(msg.state)
    return {
        "state": POLICY_STATES[state] if state < len(POLICY_STATES) else str(state),
        "session_id": msg.session_id,
        "chunks_published": int(msg.chunks_published),
        "mean_latency_s": float(msg.mean_latency_s),
        "p95_latency_s": float(msg.p95_latency_s),
        "dropped_observations": int(msg.dropped_observations),
        "stale_inputs": int(msg.stale_inputs),
        "rejected_inputs": int(msg.rejected_inputs),
        "backend": msg.backend,
        "model_id": msg.model_id,
        "message": msg.message,
    }


def _diagnostic_values(msg: Any) -> dict[str, Any]:
    """DiagnosticStatus -> {key: int | str} plus level/message (the adapter's counters are ints)."""
    out: dict[str, Any] = {
        "level": int(msg.level[0]) if isinstance(msg.level, bytes) else int(msg.level),
        "message": msg.message,
    }
    for kv in msg.values:
        try:
            out[kv.key] = int(kv.value)
        except ValueError:
            out[kv.key] = kv.value
    return out


def load_episode(path: Path, commanded_topic: str = COMMANDED) -> Episode:
    """Read the joint, chunk, status and controller topics of the bag at ``path``.

    ``commanded_topic``: the adapter's ``~/commanded`` JointState (depends on the adapter's node name);
    the adapter's ``~/status`` (DiagnosticStatus) is read from the sibling topic.
    """
    adapter_status_topic = commanded_topic.rsplit("/", 1)[0] + "/status"
    wanted = (JOINT_STATES, commanded_topic, CHUNKS, STATUS, TRAJECTORY, adapter_status_topic)
    adapter: dict[str, Any] = {}
    measured: list[tuple[int, int, list[str], np.ndarray]] = []
    commanded: list[tuple[int, int, list[str], np.ndarray]] = []
    chunk_rows: list[tuple[int, int, str, float, float, int, int]] = []
    traj: list[int] = []
    status: dict[str, Any] = {}
    running_ns: int | None = None
    with Bag(path) as bag:
        counts = {t: info.count for t, info in bag.topics().items()}
        t0 = bag.start_ns if counts else 0
        t_end = bag.end_ns if counts else 0
        for conn, t, raw in bag.read(wanted):
            msg = bag.deserialize(raw, conn.msgtype)
            if conn.topic in (JOINT_STATES, commanded_topic):
                row = (t, _stamp_ns(msg.header), list(msg.name), np.asarray(msg.position, float))
                (measured if conn.topic == JOINT_STATES else commanded).append(row)
            elif conn.topic == CHUNKS:
                lat = msg.inference_latency.sec + msg.inference_latency.nanosec * 1e-9
                step = msg.step_duration.sec + msg.step_duration.nanosec * 1e-9
                chunk_rows.append(
                    (t, int(msg.chunk_id), msg.session_id, lat, step, int(msg.execute_horizon), int(msg.horizon))
                )
            elif conn.topic == STATUS:
                status = _status_dict(msg)
                if running_ns is None and status["state"] == "RUNNING":
                    running_ns = t
            elif conn.topic == adapter_status_topic:
                adapter = _diagnostic_values(msg)
            else:
                traj.append(t)
    chunks = ChunkSeries(
        recv_t=np.array([(r[0] - t0) / 1e9 for r in chunk_rows]),
        chunk_id=np.array([r[1] for r in chunk_rows], np.int64),
        session=[r[2] for r in chunk_rows],
        latency_s=np.array([r[3] for r in chunk_rows]),
        step_s=np.array([r[4] for r in chunk_rows]),
        execute_horizon=np.array([r[5] for r in chunk_rows], np.int64),
        horizon=np.array([r[6] for r in chunk_rows], np.int64),
    )
    return Episode(
        path=Path(path),
        duration_s=(t_end - t0) / 1e9,
        topic_counts=counts,
        measured=_joint_series(measured, t0),
        commanded=_joint_series(commanded, t0),
        chunks=chunks,
        trajectory_recv_t=(np.array(traj, np.int64) - t0) / 1e9,
        last_status=status,
        adapter_status=adapter,
        running_since_s=None if running_ns is None else (running_ns - t0) / 1e9,
    )
