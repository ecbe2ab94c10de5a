"""Data pipeline benchmark: conversion throughput vs raw read+deserialise, and peak memory.

Writes an N-minute bag with 3 JPEG cameras (15 Hz, textured moving frames), JointState at 100 Hz
and ActionChunks at 5 Hz, then in fresh subprocesses (so ru_maxrss is per phase):
  1. reads and deserialises every message (the raw baseline),
  2. converts it with the droid-like mapping (decode selected frames, H.264 encode, parquet, meta).
Prints msg/s and MB/s for both, their ratio (target >= 0.5), and peak RSS of each phase. Run with
two durations to see that conversion memory does not grow with bag length:

    python bench/bench_data.py --minutes 1 --minutes 10 [--width 320 --height 240] [--storage mcap]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src" / "dreamzero_policy"))

CAMS = ("/cam_ext1/image/compressed", "/cam_ext2/image/compressed", "/cam_wrist/image/compressed")
JOINTS = [f"j{i}" for i in range(1, 8)] + ["gripper"]


def write_bench_bag(path: Path, minutes: float, width: int, height: int, storage: str) -> int:
    from dreamzero_policy.data.bagio import make_typestore
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = make_typestore()
    T = ts.types
    t0 = 1_700_000_000 * 10**9
    base = cv2.resize(
        np.random.default_rng(0).integers(0, 255, (height // 8, width // 8, 3), np.uint8), (width, height)
    )
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3

    def hdr(t: int) -> object:
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id=""
        )

    n = 0
    with Writer(path, version=9, storage_plugin=plugin) as w:
        cams = [w.add_connection(c, "sensor_msgs/msg/CompressedImage", typestore=ts) for c in CAMS]
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        ch = w.add_connection("/action_chunk", "dreamzero_msgs/msg/ActionChunk", typestore=ts)
        ticks = int(minutes * 60 * 100)
        for k in range(ticks + 1):  # 100 Hz clock: joints every tick, cameras every ~6.67, chunks every 20
            t = t0 + k * 10_000_000
            q = np.sin(0.01 * k + np.arange(len(JOINTS)))
            w.write(
                js,
                t,
                ts.serialize_cdr(
                    T["sensor_msgs/msg/JointState"](
                        header=hdr(t), name=JOINTS, position=q, velocity=np.zeros(8), effort=np.zeros(0)
                    ),
                    "sensor_msgs/msg/JointState",
                ),
            )
            n += 1
            if k % 20 == 0:
                data = np.random.default_rng(k).normal(size=24 * 8)
                dur = T["builtin_interfaces/msg/Duration"]
                msg = T["dreamzero_msgs/msg/ActionChunk"](
                    header=hdr(t),
                    session_id="s",
                    chunk_id=k // 20,
                    embodiment="bench",
                    action_space=0,
                    step_duration=dur(sec=0, nanosec=66_666_667),
                    horizon=24,
                    execute_horizon=8,
                    names=JOINTS,
                    data=data,
                    inference_started=hdr(t).stamp,
                    inference_latency=dur(sec=0, nanosec=0),
                )
                w.write(ch, t, ts.serialize_cdr(msg, "dreamzero_msgs/msg/ActionChunk"))
                n += 1
            if (k * 15) % 100 < 15:  # 15 Hz
                for i, c in enumerate(cams):
                    img = np.roll(base, k + 37 * i, axis=1)
                    _ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                    w.write(
                        c,
                        t,
                        ts.serialize_cdr(
                            T["sensor_msgs/msg/CompressedImage"](header=hdr(t), format="jpeg", data=buf.reshape(-1)),
                            "sensor_msgs/msg/CompressedImage",
                        ),
                    )
                    n += 1
    return n


def mapping(width: int, height: int) -> dict:
    return {
        "name": "bench",
        "fps": 15,
        "align_tolerance_s": 0.0667,
        "action_horizon": 24,
        "video": {f"view{i}": {"topic": c} for i, c in enumerate(CAMS)},
        "state": {
            "joint_position": {"topic": "/joint_states", "names": JOINTS[:7]},
            "gripper_position": {"topic": "/joint_states", "names": ["gripper"]},
        },
        "action": {
            "joint_position": {"topic": "/action_chunk", "names": JOINTS[:7]},
            "gripper_position": {"topic": "/action_chunk", "names": ["gripper"]},
        },
        "relative_action": ["joint_position"],
        "instruction": {"text": "bench"},
    }


def phase(kind: str, bag: str, out: str, width: int, height: int) -> None:
    """Runs inside a subprocess; prints one JSON line."""
    from dreamzero_policy.data.bagio import Bag, make_typestore

    t = time.perf_counter()
    n = nbytes = 0
    if kind == "read":
        with Bag(bag, make_typestore()) as b:
            for conn, _, raw in b.read(b.topics()):
                b.deserialize(raw, conn.msgtype)
                n += 1
                nbytes += len(raw)
    else:
        from dreamzero_policy.data.convert import ConvertOptions, convert
        from dreamzero_policy.data.mapping import mapping_from_dict

        res = convert([Path(bag)], mapping_from_dict(mapping(width, height)), Path(out), ConvertOptions(progress=False))
        n = res.frames
    dt = time.perf_counter() - t
    print(
        json.dumps(
            {
                "kind": kind,
                "seconds": dt,
                "count": n,
                "bytes": nbytes,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_phase(kind: str, bag: Path, out: Path, a: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--phase",
        kind,
        "--bag",
        str(bag),
        "--out",
        str(out),
        "--width",
        str(a.width),
        "--height",
        str(a.height),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, action="append")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--bag", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.phase:
        phase(a.phase, a.bag, a.out, a.width, a.height)
        return
    print(
        f"{'minutes':>7} {'msgs':>7} {'bag MB':>7} | {'read msg/s':>10} {'read MB/s':>9} {'rss MB':>7} | "
        f"{'conv msg/s':>10} {'conv MB/s':>9} {'rss MB':>7} | {'ratio':>5} frames"
    )
    for minutes in a.minutes or [1.0]:
        with tempfile.TemporaryDirectory() as tmp:
            bag = Path(tmp) / "bag"
            n = write_bench_bag(bag, minutes, a.width, a.height, a.storage)
            size = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
            r = run_phase("read", bag, Path(tmp) / "ds", a)
            c = run_phase("convert", bag, Path(tmp) / "ds", a)
            print(
                f"{minutes:7.1f} {n:7d} {size:7.1f} | "
                f"{n / r['seconds']:10.0f} {size / r['seconds']:9.1f} {r['peak_rss_mb']:7.0f} | "
                f"{n / c['seconds']:10.0f} {size / c['seconds']:9.1f} {c['peak_rss_mb']:7.0f} | "
                f"{r['seconds'] / c['seconds']:5.2f} {c['count']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
