"""``report.png``: joint tracking per joint, chunk latency, tracking error and a text summary (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on robots / CI; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

from dreamzero_policy.demo_tools.episode import Episode

_MAX_JOINT_PANELS = 8


def _fmt(x: Any, unit: str = "", spec: str = ".3f") -> str:
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The few numbers a newcomer looks at first (also printed by the demo)."""
    ch, ctl, lim = report["chunks"], report["control"], report["limit_violations"]
    lat = ch["latency_s"]
    return [
        f"chunks: {ch['received']} received, {ch['dropped']} dropped, rate {_fmt(ch['rate_hz'], ' Hz', '.2f')}; "
        f"adapter accepted {_fmt(ch.get('accepted_by_adapter'), '', 'd')}, "
        f"rejected {_fmt(ch.get('rejected_by_adapter'), '', 'd')}",
        f"chunk latency: mean {_fmt(lat['mean'], ' s')}, p95 {_fmt(lat['p95'], ' s')}, max {_fmt(lat['max'], ' s')}",
        f"control: {_fmt(ctl['achieved_control_rate_hz'], ' Hz', '.1f')} commanded setpoints, "
        f"{_fmt(ctl['controller_command_rate_hz'], ' Hz', '.2f')} controller trajectories",
        f"tracking RMS (mean over joints): {_fmt(report['tracking_error_rad']['rms_mean'], ' rad', '.4f')}",
        f"largest joint motion: {_fmt(max(report['motion_rad'].values(), default=None), ' rad')}",
        f"limit violations: {lim['total']}",
    ]


def write_png(ep: Episode, report: dict[str, Any], limits: dict[str, tuple[float, float, float]], path: Path) -> None:
    """Draw the report figure into ``path``."""
    fig, axes = plt.subplots(3, 4, figsize=(16, 10), constrained_layout=True)
    flat = axes.ravel()
    names = list(ep.measured.names)[:_MAX_JOINT_PANELS]
    for k in range(_MAX_JOINT_PANELS):
        ax = flat[k]
        if k >= len(names):
            ax.axis("off")
            continue
        name = names[k]
        ax.plot(ep.measured.t, ep.measured.pos[:, k], lw=1.2, label="measured")
        if name in ep.commanded.names:
            j = ep.commanded.names.index(name)
            ax.plot(ep.commanded.t, ep.commanded.pos[:, j], "--", lw=1.0, label="commanded")
        lo, hi = ax.get_ylim()
        if name in limits:
            for bound in limits[name][:2]:
                if lo - 0.2 <= bound <= hi + 0.2:  # draw a limit only when it is near the data
                    ax.axhline(bound, color="r", lw=0.8, ls=":")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("t [s]", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    ax = flat[8]
    if len(ep.chunks):
        ax.plot(ep.chunks.recv_t, ep.chunks.latency_s, ".-")
    ax.set_title("chunk inference latency [s of compute]", fontsize=9)
    ax.set_xlabel("t [s]", fontsize=8)
    ax = flat[9]
    if len(ep.chunks) > 1:
        ax.plot(ep.chunks.recv_t[1:], np.diff(ep.chunks.recv_t), ".-")
    ax.set_title("time since previous chunk [s]", fontsize=9)
    ax.set_xlabel("t [s]", fontsize=8)
    ax = flat[10]
    track = report["tracking_error_rad"]["per_joint"]
    if track:
        ax.bar(range(len(track)), [v["rms"] for v in track.values()])
        ax.set_xticks(range(len(track)), [n.replace("panda_", "") for n in track], rotation=45, fontsize=7)
    ax.set_title("tracking error RMS [rad]", fontsize=9)
    ax = flat[11]
    ax.axis("off")
    ax.text(0.0, 1.0, "\n".join(summary_lines(report)), va="top", ha="left", fontsize=8, family="monospace", wrap=True)
    fig.suptitle(f"dreamzero demo: {path.parent.name}", fontsize=11)
    fig.savefig(path, dpi=80)
    plt.close(fig)
