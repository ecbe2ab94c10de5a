"""``report.json`` + ``report.png`` of a demo run, from its bag and the robot profile's limits."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dreamzero_policy.demo_tools import metrics, plots
from dreamzero_policy.demo_tools.episode import COMMANDED, load_episode


def profile_limits(robot: str) -> dict[str, tuple[float, float, float]]:
    """joint name -> (lower, upper, max speed) from ``config/robots/<robot>.yaml`` (SI units)."""
    from embodiment_adapters.profile import load_profile

    profile = load_profile(robot)
    return {j.name: (j.limits.lower, j.limits.upper, j.limits.velocity) for j in profile.joints}


def _json_safe(x: Any) -> Any:
    """NaN/inf are not JSON; write them as null so every reader can parse the report."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def build_report(
    bag: Path, out_dir: Path, robot: str, run_info: dict[str, Any] | None = None, commanded_topic: str = COMMANDED
) -> dict[str, Any]:
    """Analyse ``bag``; write ``out_dir/report.json`` and ``out_dir/report.png``; return the report.

    ``commanded_topic``: the adapter's ``~/commanded`` (tracking and achieved control rate).
    """
    limits = profile_limits(robot)
    episode = load_episode(bag, commanded_topic)
    report = {"run": dict(run_info or {}), "robot": robot, **metrics.compute(episode, limits)}
    report = _json_safe(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    plots.write_png(episode, report, limits, out_dir / "report.png")
    return report
