"""Numbers of the demo report, computed from an :class:`~dreamzero_policy.demo_tools.episode.Episode`.

Pure NumPy. Definitions (also written into ``report.json`` under ``definitions``):

* chunk latency: the model's own ``inference_latency`` of each chunk, s.
* chunk rate: received chunks / time between the first and the last chunk, Hz.
* achieved control rate: setpoints the adapter commanded (``<adapter>/commanded``) per second while
  chunks flowed; ``controller_command_rate_hz`` counts trajectories sent to the (sim) controller.
* dropped chunks: chunk ids missing from the bag within a session (ids are consecutive by contract),
  plus chunks the policy reports published after the last one recorded.
* joint tracking: commanded - measured position per joint, with the measured series linearly
  interpolated at the commanded stamps.
* limit violations: samples outside the robot profile's position limits by more than
  ``POSITION_TOL_RAD`` (measured: physics penetration of the joint-limit constraint; commanded: the
  adapter plans from the measured state, so a setpoint right after a chunk arrives inherits that
  penetration) plus measured joint speeds (finite differences over ``VELOCITY_WINDOW_S``) above the
  velocity limit by more than ``VELOCITY_TOL``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dreamzero_policy.demo_tools.episode import Episode, JointSeries

POSITION_TOL_RAD = 1e-3
VELOCITY_TOL = 0.10  # fraction of the limit: finite differences of a 100 Hz simulated signal are noisy
VELOCITY_WINDOW_S = 0.05

DEFINITIONS = {
    "chunk_latency_s": "model inference_latency of each ActionChunk",
    "chunk_rate_hz": "received chunks / (last - first chunk receive time)",
    "achieved_control_rate_hz": "adapter ~/commanded setpoints per second while chunks flowed",
    "controller_command_rate_hz": "trajectories sent to the controller per second while chunks flowed",
    "rejected_by_adapter": "chunks the adapter's safety checks refused (e.g. all steps already in the past); "
    "from its last ~/status",
    "dropped_chunks": "chunk ids (0, 1, ... per session) missing from the bag + chunks the policy reports "
    "published after the last recorded one",
    "tracking_error_rad": "commanded - measured position, measured interpolated at commanded stamps",
    "limit_violations": (
        f"measured and commanded positions beyond profile limits by > {POSITION_TOL_RAD} rad "
        "(commanded setpoints start from the measured state), measured speed > "
        f"(1 + {VELOCITY_TOL}) x velocity limit"
    ),
}


def _stats(x: np.ndarray) -> dict[str, float | None]:
    if x.size == 0:
        return {"mean": None, "p50": None, "p95": None, "max": None}
    return {
        "mean": float(np.mean(x)),
        "p50": float(np.percentile(x, 50)),
        "p95": float(np.percentile(x, 95)),
        "max": float(np.max(x)),
    }


def _rate(times: np.ndarray, start: float, end: float) -> float | None:
    span = end - start
    if span <= 0:
        return None
    inside = times[(times >= start) & (times <= end)]
    return float(inside.size / span)


def dropped_chunks(
    chunk_id: np.ndarray, session: list[str], published: int | None = None, status_session: str | None = None
) -> int:
    """Chunks missing from the recording.

    Ids start at 0 and are consecutive within a session (ActionChunk contract), so a session whose
    highest recorded id is ``k`` lost ``k + 1 - recorded`` chunks. ``published`` (PolicyStatus
    ``chunks_published`` of ``status_session``) adds the chunks published after the last recorded one.
    """
    dropped = 0
    highest: dict[str, int] = {}
    for s in dict.fromkeys(session):
        ids = np.unique(chunk_id[[i for i, x in enumerate(session) if x == s]])
        highest[s] = int(ids[-1])
        dropped += int(ids[-1] + 1 - ids.size)
    if published is not None and status_session in highest:
        dropped += max(0, published - (highest[status_session] + 1))
    return dropped


def tracking(commanded: JointSeries, measured: JointSeries) -> dict[str, dict[str, float]]:
    """Per joint present in both series: RMS / mean-abs / max-abs of commanded - measured, rad."""
    out: dict[str, dict[str, float]] = {}
    if len(commanded) == 0 or len(measured) < 2:
        return out
    for j, name in enumerate(commanded.names):
        if name not in measured.names:
            continue
        m = measured.pos[:, measured.names.index(name)]
        ok_m = np.isfinite(m)
        c = commanded.pos[:, j]
        inside = np.isfinite(c) & (commanded.t >= measured.t[ok_m][0]) & (commanded.t <= measured.t[ok_m][-1])
        if not inside.any():
            continue
        err = c[inside] - np.interp(commanded.t[inside], measured.t[ok_m], m[ok_m])
        out[name] = {
            "rms": float(np.sqrt(np.mean(err**2))),
            "mean_abs": float(np.mean(np.abs(err))),
            "max_abs": float(np.max(np.abs(err))),
            "samples": int(err.size),
        }
    return out


def limit_violations(
    measured: JointSeries, commanded: JointSeries, limits: dict[str, tuple[float, float, float]]
) -> dict[str, Any]:
    """Count samples outside ``limits`` (name -> (lower, upper, max speed)); see the module docstring."""
    per_joint: dict[str, dict[str, int]] = {}
    worst_excess = 0.0
    for name, (lo, hi, vmax) in limits.items():
        counts = {"position_measured": 0, "position_commanded": 0, "velocity_measured": 0}
        if name in measured.names and len(measured):
            q = measured.pos[:, measured.names.index(name)]
            ok = np.isfinite(q)
            excess = np.maximum(lo - q[ok], q[ok] - hi)
            counts["position_measured"] = int(np.sum(excess > POSITION_TOL_RAD))
            worst_excess = max(worst_excess, float(excess.max(initial=0.0)))
            t = measured.t[ok]
            if t.size > 1:
                lag = max(1, round(VELOCITY_WINDOW_S / max(float(np.median(np.diff(t))), 1e-6)))
                dt = t[lag:] - t[:-lag]
                good = dt > 1e-6
                speed = np.abs(q[ok][lag:] - q[ok][:-lag])[good] / dt[good]
                counts["velocity_measured"] = int(np.sum(speed > vmax * (1.0 + VELOCITY_TOL)))
        if name in commanded.names and len(commanded):
            c = commanded.pos[:, commanded.names.index(name)]
            c = c[np.isfinite(c)]
            counts["position_commanded"] = int(np.sum((c < lo - POSITION_TOL_RAD) | (c > hi + POSITION_TOL_RAD)))
        per_joint[name] = counts
    total = sum(sum(c.values()) for c in per_joint.values())
    return {"total": total, "per_joint": per_joint, "max_position_excess_rad": worst_excess}


def motion(measured: JointSeries) -> dict[str, float]:
    """Largest distance of each joint from its first recorded position, rad (did the arm move?)."""
    out: dict[str, float] = {}
    for j, name in enumerate(measured.names):
        q = measured.pos[:, j]
        q = q[np.isfinite(q)]
        if q.size:
            out[name] = float(np.max(np.abs(q - q[0])))
    return out


def compute(ep: Episode, limits: dict[str, tuple[float, float, float]]) -> dict[str, Any]:
    """The ``report.json`` body (without run metadata)."""
    ch = ep.chunks
    first, last = (float(ch.recv_t[0]), float(ch.recv_t[-1])) if len(ch) else (0.0, 0.0)
    published = ep.last_status.get("chunks_published") if ep.last_status else None
    track = tracking(ep.commanded, ep.measured)
    rms_all = [v["rms"] for v in track.values()]
    return {
        "episode": {
            "bag_duration_s": ep.duration_s,
            "topics": ep.topic_counts,
            "policy_running_after_s": ep.running_since_s,
        },
        "chunks": {
            "received": len(ch),
            "sessions": len(set(ch.session)),
            "first_after_s": first if len(ch) else None,
            "rate_hz": _rate(ch.recv_t, first, last) if len(ch) > 1 else None,
            "latency_s": _stats(ch.latency_s),
            "step_duration_s": float(np.median(ch.step_s)) if len(ch) else None,
            "execute_horizon": int(np.median(ch.execute_horizon)) if len(ch) else None,
            "horizon_s": float(np.median(ch.horizon * ch.step_s)) if len(ch) else None,
            "dropped": dropped_chunks(ch.chunk_id, ch.session, published, ep.last_status.get("session_id"))
            if len(ch)
            else 0,
            "published_by_policy": published,
            "accepted_by_adapter": ep.adapter_status.get("accepted"),
            "rejected_by_adapter": ep.adapter_status.get("rejected"),
        },
        "control": {
            "achieved_control_rate_hz": _rate(ep.commanded.recv_t, first, last) if len(ch) > 1 else None,
            "controller_command_rate_hz": _rate(ep.trajectory_recv_t, first, last) if len(ch) > 1 else None,
            "target_step_rate_hz": 1.0 / float(np.median(ch.step_s)) if len(ch) and np.median(ch.step_s) > 0 else None,
            "joint_state_rate_hz": _rate(ep.measured.recv_t, 0.0, ep.duration_s) if len(ep.measured) else None,
        },
        "tracking_error_rad": {"per_joint": track, "rms_mean": float(np.mean(rms_all)) if rms_all else None},
        "motion_rad": motion(ep.measured),
        "limit_violations": limit_violations(ep.measured, ep.commanded, limits),
        "policy_status": ep.last_status,
        "adapter_status": ep.adapter_status,
        "definitions": DEFINITIONS,
    }
