"""``inspect``: see a bad recording before training on it.

For a bag: per topic the type, count, rate, gaps, estimated drops, stamps going backwards and the
header-stamp-to-receive delay; with a mapping, the episodes it would produce (or why each fails).
For a dataset: episodes, lengths, tasks, video-only episodes and the conversion report. With a
plot directory, PNGs of joint trajectories and message timing (matplotlib, headless Agg).
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import numpy as np

from dreamzero_policy.core.errors import DatasetError
from dreamzero_policy.data.bagio import Bag, header_stamp_ns, make_typestore
from dreamzero_policy.data.mapping import Mapping

UNSTAMPED = "receive (header stamps are 0)"  # time source of a topic whose publisher never stamps


def _has_header(bag: Bag, msgtype: str) -> bool:
    fields = bag.types.fielddefs.get(msgtype)
    return bool(fields and fields[1] and fields[1][0][0] == "header")


def timing_stats(stamps: np.ndarray) -> dict[str, Any]:
    """Rate and gaps of a stamp sequence (ns, in receive order). A gap is a step > 1.5x the median."""
    out: dict[str, Any] = {"count": len(stamps)}
    if len(stamps) < 2:
        return out
    dt = np.diff(stamps).astype(np.float64) / 1e9
    backwards = int((dt < 0).sum())
    fwd = dt[dt > 0]
    if len(fwd) == 0:
        return {**out, "backwards": backwards}
    med = float(np.median(fwd))
    gaps = fwd[fwd > 1.5 * med]
    return {
        **out,
        "rate_hz": round(1.0 / med, 3),
        "median_dt_s": med,
        "max_dt_s": float(fwd.max()),
        "gaps": len(gaps),
        "dropped_estimate": int(np.round(gaps / med).sum() - len(gaps)),
        "backwards": backwards,
        "duration_s": float((stamps.max() - stamps.min()) / 1e9),
    }


def inspect_bag(path: Path, mapping: Mapping | None = None, plot_dir: Path | None = None) -> dict[str, Any]:
    stamps: dict[str, list[int]] = {}
    recv: dict[str, list[int]] = {}
    joints: dict[str, dict[str, tuple[array, array]]] = {}  # topic -> joint -> (stamps, positions)
    with Bag(path, make_typestore()) as bag:
        topics = bag.topics()
        header = {t: _has_header(bag, i.msgtype) for t, i in topics.items()}
        for conn, log_t, raw in bag.read(topics):
            recv.setdefault(conn.topic, []).append(log_t)
            if header[conn.topic]:
                stamps.setdefault(conn.topic, []).append(header_stamp_ns(raw))
            if conn.msgtype == "sensor_msgs/msg/JointState":
                msg = bag.deserialize(raw, conn.msgtype)
                if len(msg.position) == len(msg.name):  # per joint: drivers sharing a topic publish subsets
                    per_joint = joints.setdefault(conn.topic, {})
                    t = header_stamp_ns(raw) or log_t  # (plots only)
                    for name, value in zip(msg.name, msg.position, strict=True):
                        ts, vals = per_joint.setdefault(str(name), (array("q"), array("d")))
                        ts.append(t)
                        vals.append(float(value))
    # A publisher that never sets header stamps: timed by receive time here, and the converter
    # needs the topic in the mapping's receive_time_topics.
    unstamped = {t for t, s in stamps.items() if len(s) > 1 and not any(s)}
    for t in unstamped:
        stamps[t] = recv[t]
    report: dict[str, Any] = {"bag": str(path), "topics": {}}
    for topic, info in sorted(topics.items()):
        r = np.asarray(recv.get(topic, []), np.int64)
        entry = {
            "type": info.msgtype,
            **timing_stats(np.asarray(stamps[topic], np.int64) if topic in stamps else r),
            "time_source": "header" if topic in stamps else "receive",
        }
        if topic in joints:  # every joint any driver publishes on the topic
            entry["joints"] = {name: len(ts) for name, (ts, _) in joints[topic].items()}
        if topic in unstamped:  # a trajectory stamped 0 means "start now": the converter takes receive time itself
            trajectory = info.msgtype == "trajectory_msgs/msg/JointTrajectory"
            entry["time_source"] = "receive (stamp 0 = start now)" if trajectory else UNSTAMPED
        elif topic in stamps and len(r):
            entry["median_delay_s"] = float(np.median((r - np.asarray(stamps[topic])) / 1e9))
        report["topics"][topic] = entry
    if mapping is not None:
        report["episodes"] = _planned_episodes(path, mapping)
    if plot_dir is not None:
        report["plots"] = _plot_bag(path, plot_dir, stamps or recv, joints)
    return report


def _planned_episodes(path: Path, mapping: Mapping) -> list[dict[str, Any]]:
    from dreamzero_policy.data.convert import episode_windows
    from dreamzero_policy.data.episodes import resolve_instruction
    from dreamzero_policy.data.index import build_index
    from dreamzero_policy.data.plan import plan_episode

    out: list[dict[str, Any]] = []
    try:
        with Bag(path, make_typestore()) as bag:
            index = build_index(bag, mapping)
    except DatasetError as exc:  # e.g. a topic the mapping cannot align: the report says why
        return [{"error": str(exc)}]
    for w in episode_windows(index, mapping):
        entry: dict[str, Any] = {"start_ns": w.start_ns, "end_ns": w.end_ns}
        try:
            text = resolve_instruction(w, mapping, path, index.instruction_events, None)
            plan = plan_episode(index, mapping, w, text)
            entry.update(
                frames=plan.length,
                instruction=text,
                video_only=plan.video_only_reason is not None,
                max_align_error_s={r.topic: r.max_error_s for r in plan.reports},
                **plan.coverage,
            )
        except DatasetError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


def _plot_bag(
    path: Path,
    plot_dir: Path,
    stamps: dict[str, list[int]],
    joints: dict[str, dict[str, tuple[array, array]]],
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    files = []
    t0 = min((min(v) for v in stamps.values() if v), default=0)
    fig, ax = plt.subplots(figsize=(10, 1 + 0.5 * max(1, len(stamps))))
    for topic, st in sorted(stamps.items()):
        s = (np.asarray(st, np.int64) - t0) / 1e9
        if len(s) > 1:
            ax.scatter(s[1:], np.diff(s) * 1e3, s=2, label=topic)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("interval to previous message (ms)")
    ax.set_yscale("symlog")
    ax.legend(fontsize=6, loc="upper right")
    ax.set_title(f"message timing: {path.name}")
    out = plot_dir / f"{path.name}_timing.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    files.append(str(out))
    for topic, per_joint in joints.items():
        if not per_joint:
            continue
        fig, ax = plt.subplots(figsize=(10, 4))
        for name, (ts, vals) in per_joint.items():
            ax.plot((np.frombuffer(ts, np.int64) - t0) / 1e9, np.frombuffer(vals, np.float64), lw=0.8, label=name)
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("position")
        ax.legend(fontsize=6, ncol=4)
        ax.set_title(f"joint trajectories {topic}")
        out = plot_dir / f"{path.name}_{topic.strip('/').replace('/', '_')}_joints.png"
        fig.savefig(out, dpi=100)
        plt.close(fig)
        files.append(str(out))
    return files


def inspect_dataset(root: Path, plot_dir: Path | None = None) -> dict[str, Any]:
    from dreamzero_policy.data.reader import DatasetReader

    ds = DatasetReader(root)
    eps = [
        {
            "episode_index": e["episode_index"],
            "length": e["length"],
            "video_only": e.get("video_only", False),
            "tasks": e.get("tasks", []),
        }
        for e in ds.episodes
    ]
    report = {
        "dataset": str(root),
        "fps": ds.fps,
        "episodes": eps,
        "total_frames": ds.info.get("total_frames"),
        "tasks": ds.tasks,
        "embodiment": ds.embodiment,
        "video_keys": ds.video_keys,
        "skipped_episodes": ds.report.get("skipped_episodes", []),
    }
    if plot_dir is not None and len(ds):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plot_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for i in range(min(len(ds), 5)):
            ep = ds.episode(i)
            fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
            for ax, group, title in ((axes[0], ep.state, "state"), (axes[1], ep.action, "action")):
                for key, arr in group.items():
                    for j in range(arr.shape[1]):
                        ax.plot(ep.timestamp, arr[:, j], lw=0.8, label=f"{key}[{j}]")
                ax.set_ylabel(title)
                ax.legend(fontsize=6, ncol=4)
            axes[1].set_xlabel("time (s)")
            out = plot_dir / f"episode_{ep.index:06d}.png"
            fig.savefig(out, dpi=100)
            plt.close(fig)
            files.append(str(out))
        report["plots"] = files
    return report
