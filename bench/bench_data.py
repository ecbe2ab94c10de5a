"""Data pipeline benchmark: conversion throughput vs raw read+deserialise, and peak memory.

Writes an N-minute bag with 3 cameras (15 Hz unless --camera-hz, textured moving frames; JPEG ``CompressedImage`` or
raw ``rgb8`` ``Image``), JointState at 100 Hz and ActionChunks at 5 Hz, then in fresh subprocesses
(so ru_maxrss is per phase):
  1. reads and deserialises every message (the raw baseline; the faster of two runs),
  2. converts it with a droid-like mapping (decode selected frames, H.264 encode, parquet, meta;
     video is encoded while indexing unless --two-pass).
Prints msg/s and MB/s for both, CPU seconds, their wall-time ratio (target >= 0.5) and peak RSS of
each phase. Both phases run back to back, so the ratio is comparable even on a shared machine.
The raw read uses the converter's own reader (``bagio.Bag``), so a faster reader speeds up both.
A third phase times the codec alone (decode + resize + H.264 encode of one camera's frames, one
thread): "codec ms" per frame, and "ceiling", the ratio this machine could reach if reading the bag
cost nothing and every core encoded (raw read time / (frames x codec ms / cores)). Where the
ceiling is below 0.5, no converter that H.264-encodes every frame meets the target here.
"reader" is the CPU time of the converter's reading thread (read, deserialise, series, grid; the
codec runs on other threads) and "bound" = raw read time / reader: the ratio that thread allows
however many cores encode. On a small machine it shares cores with the encoders, which inflates it.
"codec-free" converts once more with decoding and H.264 encoding replaced by frame counting (the
frames are still selected, queued and handed to the camera threads, and the dataset's parquet,
statistics and meta are written): the ratio the converter reaches when the codec's CPU is not the
limit, i.e. with enough cores. A measurement of everything but the codec, not of a many-core machine.
Run with two durations to see that conversion memory does not grow with bag length:

    python bench/bench_data.py --minutes 1 --minutes 10 [--images jpeg --images rgb8]
        [--width 320 --height 240] [--out-width 320 --out-height 180] [--storage mcap]
        [--encoder-threads 0] [--two-pass] [--camera-hz 30] [--codec-free]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src" / "dreamzero_policy"))

CAMS = ("/cam_ext1/image", "/cam_ext2/image", "/cam_wrist/image")
JOINTS = [f"j{i}" for i in range(1, 8)] + ["gripper"]


def write_bench_bag(
    path: Path, minutes: float, width: int, height: int, storage: str, images: str = "jpeg", camera_hz: int = 15
) -> int:
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
        img_type = "sensor_msgs/msg/CompressedImage" if images == "jpeg" else "sensor_msgs/msg/Image"
        cams = [w.add_connection(c, img_type, typestore=ts) for c in CAMS]
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
            if (k * camera_hz) % 100 < camera_hz:  # camera_hz on the 100 Hz clock
                for i, c in enumerate(cams):
                    img = np.roll(base, k + 37 * i, axis=1)
                    if images == "jpeg":
                        _ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                        msg = T[img_type](header=hdr(t), format="jpeg", data=buf.reshape(-1))
                    else:
                        msg = T[img_type](
                            header=hdr(t),
                            height=height,
                            width=width,
                            encoding="rgb8",
                            is_bigendian=0,
                            step=width * 3,
                            data=img.reshape(-1),
                        )
                    w.write(c, t, ts.serialize_cdr(msg, img_type))
                    n += 1
    return n


def mapping(out_width: int | None, out_height: int | None, encoder_threads: int | str = "auto") -> dict:
    size = {"width": out_width, "height": out_height} if out_width and out_height else {}
    return {
        "video_encoding": {"threads": encoder_threads},
        "name": "bench",
        "fps": 15,
        "align_tolerance_s": 0.0667,
        "action_horizon": 24,
        "video": {f"view{i}": {"topic": c, **size} for i, c in enumerate(CAMS)},
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


CODEC_SAMPLE = 300  # frames of one camera timed alone for the codec-bound ceiling


def codec_ms_per_frame(bag: str, m: object) -> float:
    """CPU ms to decode, resize and H.264-encode one frame of the bag's first camera, on one thread."""
    from dreamzero_policy.data.bagio import Bag, make_typestore
    from dreamzero_policy.data.convert import make_decoders
    from dreamzero_policy.data.video import VideoWriter

    with Bag(bag, make_typestore()) as b, tempfile.TemporaryDirectory() as tmp:
        topic = CAMS[0]
        decoder = make_decoders(m, b)[topic]
        msgs = []
        for conn, _, raw in b.read([topic]):
            msgs.append(b.deserialize(raw, conn.msgtype))
            if len(msgs) == CODEC_SAMPLE:
                break
        writer = VideoWriter(Path(tmp) / "v.mp4", m.fps, m.video_encoding.for_cameras(len(CAMS)), decoder.size)
        cv2.setNumThreads(1)  # as convert() does
        t = time.process_time()
        for msg in msgs:
            writer.write(decoder.decode(msg))
        writer.close()
        return (time.process_time() - t) / len(msgs) * 1e3


def make_codec_free() -> None:
    """Replace decoding and H.264 encoding with frame counting (the "codec-free" phase only)."""
    from dreamzero_policy.data.encode import FrameDecoder
    from dreamzero_policy.data.video import VideoWriter

    def write(self: VideoWriter, rgb: np.ndarray, repeat: int = 1) -> None:
        self.frames += repeat

    FrameDecoder.decode = lambda self, msg: None  # type: ignore[method-assign]
    VideoWriter.write = write  # type: ignore[method-assign]


def phase(
    kind: str,
    bag: str,
    out: str,
    out_width: int | None,
    out_height: int | None,
    encoder_threads: int | str,
    two_pass: bool,
) -> None:
    """Runs inside a subprocess; prints one JSON line. Imports happen before the clock starts."""
    from dreamzero_policy.data.allocators import use_lean_allocators

    use_lean_allocators()  # what `dreamzero data convert` does first, in both phases for a like-for-like read
    from dreamzero_policy.data.bagio import Bag, make_typestore
    from dreamzero_policy.data.mapping import mapping_from_dict

    if kind == "codec-free":
        make_codec_free()
    if kind != "read":  # the raw baseline stays free of the converter's libraries (its peak RSS is theirs)
        from dreamzero_policy.data.convert import ConvertOptions, convert

    m = mapping_from_dict(mapping(out_width, out_height, encoder_threads))
    t, reader = time.perf_counter(), time.thread_time()
    n = nbytes = 0
    extra: dict[str, float] = {}
    if kind == "read":
        with Bag(bag, make_typestore()) as b:
            for conn, _, raw in b.read(b.topics()):
                b.deserialize(raw, conn.msgtype)
                n += 1
                nbytes += len(raw)
    elif kind == "codec":
        extra["codec_ms"] = codec_ms_per_frame(bag, m)
    else:
        res = convert([Path(bag)], m, Path(out), ConvertOptions(progress=False, single_pass=not two_pass))
        n = res.frames
    dt, reader = time.perf_counter() - t, time.thread_time() - reader
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "kind": kind,
                "seconds": dt,
                "reader_cpu_s": reader,  # this thread: reading, deserialising, series, grid (not the codec)
                "count": n,
                "bytes": nbytes,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                **extra,
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
    ]
    if a.out_width and a.out_height:
        cmd += ["--out-width", str(a.out_width), "--out-height", str(a.out_height)]
    cmd += ["--encoder-threads", str(a.encoder_threads)] + (["--two-pass"] if a.two_pass else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, action="append", help="bag length in minutes (repeatable; default 1)")
    p.add_argument("--images", action="append", choices=("jpeg", "rgb8"), help="camera message kind (repeatable)")
    p.add_argument("--width", type=int, default=320, help="camera width in the bag")
    p.add_argument("--height", type=int, default=240, help="camera height in the bag")
    p.add_argument("--out-width", type=int, help="dataset video width (default: the camera's)")
    p.add_argument("--out-height", type=int, help="dataset video height (default: the camera's)")
    p.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    p.add_argument(
        "--camera-hz",
        type=int,
        default=15,
        choices=(15, 30, 60),
        help="camera rate in the bag; the dataset is 15 fps, so above 15 Hz frames off the grid are never decoded",
    )
    p.add_argument(
        "--encoder-threads",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="x264 threads per camera: auto (the converter's default: spare cores shared among the cameras), "
        "a number, or 0 (x264 decides)",
    )
    p.add_argument("--two-pass", action="store_true", help="convert with --two-pass (no video during indexing)")
    p.add_argument(
        "--codec-free",
        action="store_true",
        help="also convert with decoding and encoding replaced by frame counting (column 'free': the ratio without "
        "the codec's CPU)",
    )
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--bag", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.phase:
        phase(a.phase, a.bag, a.out, a.out_width, a.out_height, a.encoder_threads, a.two_pass)
        return
    from dreamzero_policy.data.mapping import VideoEncoding

    out = f"{a.out_width}x{a.out_height}" if a.out_width and a.out_height else "same"
    threads = VideoEncoding(threads=a.encoder_threads).for_cameras(len(CAMS)).threads  # as convert() resolves it
    print(
        f"cameras {a.width}x{a.height} at {a.camera_hz} Hz -> video {out} at 15 fps, storage {a.storage}, "
        f"{os.cpu_count()} cores, "
        f"x264 threads/camera {threads}, {'two passes' if a.two_pass else 'single pass'}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'images':>6} {'min':>4} {'msgs':>7} {'bag MB':>7} | {'read msg/s':>10} {'read MB/s':>9} {'cpu s':>6} "
        f"{'rss MB':>6} | {'conv msg/s':>10} {'conv MB/s':>9} {'cpu s':>6} {'rss MB':>6} | {'ratio':>5} "
        f"{'codec ms':>8} {'ceiling':>7} {'reader':>6} {'bound':>5} {'free':>5} frames"
    )
    for images in a.images or ["jpeg"]:
        for minutes in a.minutes or [1.0]:
            with tempfile.TemporaryDirectory() as tmp:
                bag = Path(tmp) / "bag"
                n = write_bench_bag(bag, minutes, a.width, a.height, a.storage, images, a.camera_hz)
                size = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
                # The faster of two raw reads: a multi-GB bag is partly read from disk the first time.
                r = min((run_phase("read", bag, Path(tmp) / "ds", a) for _ in range(2)), key=lambda x: x["seconds"])
                c = run_phase("convert", bag, Path(tmp) / "ds", a)
                codec_ms = run_phase("codec", bag, Path(tmp) / "ds", a)["codec_ms"]
                free = "-"
                if a.codec_free:
                    shutil.rmtree(Path(tmp) / "ds")
                    f = run_phase("codec-free", bag, Path(tmp) / "ds", a)
                    free = f"{r['seconds'] / f['seconds']:.2f}"
                # The best ratio this machine allows if reading were free and every core encoded.
                ceiling = r["seconds"] / (c["count"] * len(CAMS) * codec_ms / 1e3 / (os.cpu_count() or 1))
                print(
                    f"{images:>6} {minutes:4.0f} {n:7d} {size:7.1f} | "
                    f"{n / r['seconds']:10.0f} {size / r['seconds']:9.1f} {r['cpu_s']:6.2f} {r['peak_rss_mb']:6.0f} | "
                    f"{n / c['seconds']:10.0f} {size / c['seconds']:9.1f} {c['cpu_s']:6.2f} {c['peak_rss_mb']:6.0f} | "
                    f"{r['seconds'] / c['seconds']:5.2f} {codec_ms:8.2f} {ceiling:7.2f} "
                    f"{c['reader_cpu_s']:6.2f} {r['seconds'] / c['reader_cpu_s']:5.2f} {free:>5} {c['count']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
