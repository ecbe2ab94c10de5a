"""Benchmark of the policy runtime's CPU-side costs (prints numbers; no pass/fail).

* observation assembly for three 640x480 rgb8 cameras: decode (sensor_msgs/Image fields) +
  resize-with-pad to the request size + crop/resize/tile into the model mosaic (352x640), for the
  1-frame first call and the 4-frame later calls (target <= 3 ms per frame set on a 2-core machine);
* callback-side cost: ``add_image`` / ``add_joint_state`` while the worker is busy;
* tick overhead (snapshot + submit) while the worker is busy, and the worker's submit -> result
  round trip with a no-op backend (runtime overhead excluding the model).

Run: OMP_NUM_THREADS=1 PYTHONPATH=src/dreamzero_policy python bench/bench_runtime.py
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
from dreamzero_policy.core.images import decode_any_image
from dreamzero_policy.runtime import BufferLimits, PolicyRuntime, load_io_spec
from dreamzero_policy.runtime.observation import build_mosaic, build_request, request_images

NS = 1_000_000_000
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper"]


def pct(xs: list[float]) -> str:
    a = np.array(xs) * 1e3
    return f"p50 {np.percentile(a, 50):.3f} ms  p99 {np.percentile(a, 99):.3f} ms  (n={len(a)})"


def image_msg(rng: np.random.Generator) -> SimpleNamespace:
    img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return SimpleNamespace(height=480, width=640, encoding="rgb8", is_bigendian=0, step=640 * 3, data=img.tobytes())


class BusyBackend:
    """A real PolicyBackend that holds the worker for ``delay_s`` (stands for a slow model)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def infer(self, obs: dict) -> dict:
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"actions": np.zeros((24, 8), np.float32)}

    def reset(self) -> None: ...
    def metadata(self) -> dict:
        return {"backend": "bench"}

    def close(self) -> None: ...


def bench_assembly(spec, rng) -> None:
    for n_frames in (1, 4):
        frames = {c.name: [image_msg(rng) for _ in range(n_frames)] for c in spec.cameras}
        times = []
        for _ in range(60):
            t0 = time.perf_counter()
            req = build_request(spec, frames, np.zeros(8), "pick", "s", decode=decode_any_image)
            build_mosaic(spec, request_images(spec, req), (352, 640))
            times.append(time.perf_counter() - t0)
        print(
            f"assembly 3 cams 640x480 rgb8 -> request 180x320 + mosaic 352x640, T={n_frames}: {pct(times)}"
            f"  per frame set p50 {np.percentile(times, 50) * 1e3 / n_frames:.3f} ms"
        )


def bench_runtime(spec, rng) -> None:
    rt = PolicyRuntime(spec, BusyBackend(0.5), limits=BufferLimits(max_age_s=1.0))
    rt.set_instruction("pick")
    msgs = [image_msg(rng) for _ in range(4)]
    cb, tick_t = [], []
    t = 100.0
    stop = time.monotonic() + 3.0
    while time.monotonic() < stop:
        t += 1 / 15
        for i, cam in enumerate(spec.cameras):
            t0 = time.perf_counter()
            rt.add_image(cam.name, round(t * NS), msgs[i])
            cb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rt.add_joint_state(round(t * NS), JOINTS, [0.1] * 8)
        cb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rt.tick(round(t * NS))
        rt.poll()
        tick_t.append(time.perf_counter() - t0)
        time.sleep(1 / 15)
    print(f"callback add_image/add_joint_state while inference runs: {pct(cb)}")
    print(f"timer tick + poll while inference runs:                  {pct(tick_t)}")
    rt.close()

    # Runtime overhead excluding the model: submit -> decode/assemble -> no-op backend -> ChunkData.
    rt = PolicyRuntime(spec, BusyBackend(0.0), limits=BufferLimits(max_age_s=10.0))
    rt.set_instruction("pick")
    t = 200.0
    for _ in range(40):
        t += 1 / 15
        for i, cam in enumerate(spec.cameras):
            rt.add_image(cam.name, round(t * NS), msgs[i])
        rt.add_joint_state(round(t * NS), JOINTS, [0.1] * 8)
    rounds = []
    for _ in range(50):
        done = threading.Event()
        t0 = time.perf_counter()
        assert rt.tick(round(t * NS)).submitted
        while not done.is_set():
            if any(e.kind == "chunk" for e in rt.poll()):
                done.set()
        rounds.append(time.perf_counter() - t0)
    print(f"runtime overhead per chunk (no-op model, T=4 frames):    {pct(rounds)}")
    rt.close()


def main() -> None:
    spec = load_io_spec("droid_sim")
    rng = np.random.default_rng(0)
    bench_assembly(spec, rng)
    bench_runtime(spec, rng)


if __name__ == "__main__":
    main()
