"""Embodiment adapter benchmarks (prints numbers; no pass/fail).

1. Per-chunk processing time of the safety core for a 24x8 joint-position chunk (7 joints + gripper), target <= 1 ms.
2. The same for end-effector chunks (24 poses, rotation vectors) solved with the numerical IK.
3. Watchdog reaction time: a 50 Hz timer loop (the node's default watchdog_rate) checks a pure Watchdog while
   joint states stop at a random moment; reaction = detection - (last joint state + timeout). No ROS transport.
Run: OMP_NUM_THREADS=1 PYTHONPATH=src/embodiment_adapters .venv/bin/python bench/bench_adapter.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "embodiment_adapters"))

from embodiment_adapters.kinematics import build_chains, mat_to_rotvec
from embodiment_adapters.profile import load_profile
from embodiment_adapters.safety.planner import AdapterCore
from embodiment_adapters.safety.types import ActionSpace, ChunkInput, SafetyConfig
from embodiment_adapters.safety.watchdog import Watchdog, WatchdogConfig

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def stats(ms: list[float]) -> str:
    a = np.array(ms)
    return f"p50 {np.percentile(a, 50):.3f} ms, p95 {np.percentile(a, 95):.3f} ms, max {a.max():.3f} ms (n={len(a)})"


def bench_joint(n: int = 300) -> None:
    p = load_profile("droid_franka_sim")
    core = AdapterCore(p, SafetyConfig(lookahead=2.0))
    rng = np.random.default_rng(0)
    names = (*p.joint_names, "gripper")
    times = []
    now = 1000.0
    for i in range(n):
        core.update_joint_state(p.joint_names, HOME + rng.normal(0, 0.01, 7), now)
        arm = HOME + np.cumsum(rng.normal(0, 0.01, (24, 7)), axis=0)
        data = np.hstack([arm, rng.uniform(0, 1, (24, 1))])
        chunk = ChunkInput("s", i, "droid_franka", 0, now - 0.1, 1 / 15, 24, 8, names, data)
        t = time.perf_counter()
        core.process_chunk(chunk, now)
        times.append((time.perf_counter() - t) * 1e3)
        now += 0.5
    print(f"joint-position chunk 24x8 (droid_franka_sim): {stats(times[10:])}  [target <= 1 ms]")


def bench_eef(n: int = 30) -> None:
    p = load_profile("droid_franka_sim")
    chain = build_chains(p)[""]
    core = AdapterCore(p, SafetyConfig(lookahead=2.0))
    start = chain.fk(HOME)
    names = ("ee.x", "ee.y", "ee.z", "ee.rx", "ee.ry", "ee.rz", "gripper")
    rot = mat_to_rotvec(start[:3, :3])
    times = []
    now = 1000.0
    for i in range(n):
        core.update_joint_state(p.joint_names, HOME, now)
        core.clear()
        rows = [[*(start[:3, 3] + [0.005 * k, 0.003 * k, -0.002 * k]), *rot, 0.5] for k in range(1, 25)]
        chunk = ChunkInput(
            f"s{i}", 0, "droid_franka", int(ActionSpace.EEF_POSE), now - 0.1, 1 / 15, 24, 8, names, np.array(rows)
        )
        t = time.perf_counter()
        core.process_chunk(chunk, now)
        times.append((time.perf_counter() - t) * 1e3)
        now += 0.5
    print(f"EEF-pose chunk 24x7 with IK (droid_franka_sim): {stats(times[3:])}")


def bench_watchdog(trials: int = 40, rate: float = 50.0, timeout: float = 0.25) -> None:
    reactions = []
    period = 1.0 / rate
    for _ in range(trials):
        w = Watchdog(WatchdogConfig(chunk_timeout=10.0, joint_state_timeout=timeout))
        t0 = time.monotonic()
        stop_at = t0 + random.uniform(0.05, 0.15)
        last_js = t0
        next_tick = t0
        while True:
            now = time.monotonic()
            if now < stop_at:  # joint states at 100 Hz until they stop
                last_js = now
                w.joint_state_received(now)
            if now >= next_tick:
                next_tick += period
                if w.check(now, moving=True) is not None:
                    reactions.append((now - (last_js + timeout)) * 1e3)
                    break
            time.sleep(0.002)
    print(f"watchdog reaction after timeout ({rate:.0f} Hz timer, {timeout} s timeout): {stats(reactions)}")


if __name__ == "__main__":
    bench_joint()
    bench_eef()
    bench_watchdog()
