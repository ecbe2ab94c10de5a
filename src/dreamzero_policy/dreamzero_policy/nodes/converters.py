"""ROS messages <-> runtime types. Pure field mapping: no decisions, no maths beyond unit changes.

Times on the runtime side are integer nanoseconds of the node clock (ROS time, sim-time aware);
on the message side ``builtin_interfaces/Time`` / ``Duration``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dreamzero_msgs.msg import ActionChunk, ObservationStamp, PolicyStatus
from dreamzero_policy.nodes.status import StatusReport
from dreamzero_policy.runtime.postprocess import ChunkData

NS = 1_000_000_000


# --------------------------------------------------------------------------- time


def time_from_ns(ns: int) -> Time:
    """builtin_interfaces/Time from integer nanoseconds (>= 0)."""
    ns = max(0, int(ns))
    return Time(sec=ns // NS, nanosec=ns % NS)


def ns_from_time(t: Any) -> int:
    """Integer nanoseconds from a builtin_interfaces/Time (or anything with sec/nanosec)."""
    return int(t.sec) * NS + int(t.nanosec)


def duration_from_ns(ns: int) -> Duration:
    """builtin_interfaces/Duration from integer nanoseconds (negative values clamp to 0)."""
    ns = max(0, int(ns))
    return Duration(sec=ns // NS, nanosec=ns % NS)


def duration_to_s(d: Any) -> float:
    return float(d.sec) + float(d.nanosec) * 1e-9


# --------------------------------------------------------------------------- inputs


def stamp_ns(msg: Any) -> int:
    """Header stamp of a stamped message in nanoseconds."""
    return ns_from_time(msg.header.stamp)


# --------------------------------------------------------------------------- outputs


def chunk_to_msg(chunk: ChunkData) -> ActionChunk:
    """Every ActionChunk field from the runtime's ChunkData (data row-major H x D)."""
    return ActionChunk(
        header=Header(stamp=time_from_ns(chunk.stamp_ns), frame_id=chunk.frame_id),
        session_id=chunk.session_id,
        chunk_id=int(chunk.chunk_id),
        embodiment=chunk.embodiment,
        action_space=int(chunk.action_space),
        step_duration=duration_from_ns(chunk.step_duration_ns),
        horizon=int(chunk.horizon),
        execute_horizon=int(chunk.execute_horizon),
        names=list(chunk.names),
        data=chunk.flat_data(),
        inference_started=time_from_ns(chunk.inference_started_ns),
        inference_latency=duration_from_ns(chunk.inference_latency_ns),
    )


def chunk_to_joint_trajectory(chunk: ChunkData, joint_names: Sequence[str]) -> JointTrajectory:
    """The chunk's ``joint_names`` columns as a JointTrajectory: point i at (i + 1) * step_duration
    after ``header.stamp`` (= observation time), matching ActionChunk's timing rule. Other columns
    (the normalised gripper) are left out: they are not positions of the trajectory's joints."""
    cols = [chunk.names.index(n) for n in joint_names]
    points = []
    for i in range(chunk.horizon):
        points.append(
            JointTrajectoryPoint(
                positions=chunk.data[i, cols].astype(float).tolist(),
                time_from_start=duration_from_ns((i + 1) * chunk.step_duration_ns),
            )
        )
    return JointTrajectory(
        header=Header(stamp=time_from_ns(chunk.stamp_ns), frame_id=chunk.frame_id),
        joint_names=list(joint_names),
        points=points,
    )


def observation_stamp_msg(
    stamp: int, session_id: str, chunk_id: int, sources: Sequence[tuple[str, int, float]]
) -> ObservationStamp:
    """ObservationStamp from the snapshot's (topic, stamp_ns, age_s) sources."""
    return ObservationStamp(
        header=Header(stamp=time_from_ns(stamp)),
        session_id=session_id,
        chunk_id=int(chunk_id),
        topics=[s[0] for s in sources],
        stamps=[time_from_ns(s[1]) for s in sources],
        age_s=[float(s[2]) for s in sources],
    )


def status_msg(report: StatusReport, now_ns: int) -> PolicyStatus:
    return PolicyStatus(
        header=Header(stamp=time_from_ns(now_ns)),
        state=int(report.state),
        session_id=report.session_id,
        last_chunk_id=int(report.last_chunk_id),
        chunks_published=int(report.chunks_published),
        last_latency_s=float(report.last_latency_s),
        mean_latency_s=float(report.mean_latency_s),
        p95_latency_s=float(report.p95_latency_s),
        dropped_observations=int(report.dropped_observations),
        stale_inputs=int(report.stale_inputs),
        rejected_inputs=int(report.rejected_inputs),
        backend=report.backend,
        model_id=report.model_id,
        message=report.message,
    )


_DIAG_LEVEL = {
    PolicyStatus.RUNNING: DiagnosticStatus.OK,
    PolicyStatus.INACTIVE: DiagnosticStatus.OK,
    PolicyStatus.UNCONFIGURED: DiagnosticStatus.OK,
    PolicyStatus.WARMING_UP: DiagnosticStatus.OK,
    PolicyStatus.WAITING_FOR_INPUT: DiagnosticStatus.WARN,
    PolicyStatus.BACKEND_ERROR: DiagnosticStatus.ERROR,
    PolicyStatus.ERROR: DiagnosticStatus.ERROR,
}


def diagnostics_msg(report: StatusReport, now_ns: int, name: str, hardware_id: str) -> DiagnosticArray:
    """One DiagnosticStatus (level from the policy state) with the counters as key/values."""
    values = {
        "state": report.state_name,
        "session_id": report.session_id,
        "chunks_published": report.chunks_published,
        "last_chunk_id": report.last_chunk_id,
        "last_latency_s": f"{report.last_latency_s:.4f}",
        "mean_latency_s": f"{report.mean_latency_s:.4f}",
        "p95_latency_s": f"{report.p95_latency_s:.4f}",
        "dropped_observations": report.dropped_observations,
        "stale_inputs": report.stale_inputs,
        "rejected_inputs": report.rejected_inputs,
        "backend_errors": report.backend_errors,
        "last_input_problem": report.last_input_problem,
        "backend": report.backend,
        "model_id": report.model_id,
    }
    status = DiagnosticStatus(
        level=_DIAG_LEVEL.get(report.state, DiagnosticStatus.WARN),
        name=name,
        message=report.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
    return DiagnosticArray(header=Header(stamp=time_from_ns(now_ns)), status=[status])


def frame_to_image(frame: np.ndarray, stamp: int, frame_id: str = "") -> Image:
    """An (H, W, 3) uint8 RGB frame as an rgb8 sensor_msgs/Image."""
    arr = np.ascontiguousarray(frame, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got {arr.shape}")
    h, w = arr.shape[:2]
    return Image(
        header=Header(stamp=time_from_ns(stamp), frame_id=frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=arr.tobytes(),
    )
