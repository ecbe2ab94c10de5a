"""Policy node benchmarks on real rclpy (prints numbers; no pass/fail).

A peer node publishes three 640x480 rgb8 cameras at 15 Hz and /joint_states at 100 Hz (droid_sim
topics) from a separate process (like camera drivers on a robot; ``--in-process-peer`` for the old
setup) to a PolicyNode on a 4-thread PoolExecutor (as policy_node runs) in this process. The peer process gets a
16 MiB Fast DDS shared-memory segment (see ``_PEER_PROFILE``); garbage-collector pauses are printed.

1. Node overhead excluding the model, with an instant backend: (a) cost of the decision-timer
   callback when it harvests a result and publishes the chunk (+ ObservationStamp) and submits the
   next observation; (b) chunk received by a subscriber - (inference start + inference latency),
   i.e. waiting for the next tick + publishing + DDS; (c) the observation's age when its inference
   starts (frame period + tick wait). Target: p99 <= 10 ms for (a).
2. Sensor callback latency while the worker runs the ``tiny`` in-process model: middleware reception
   (MessageInfo ``received_timestamp``) -> callback start, the node's share; target p99 <= 5 ms. Also
   printed: node clock at callback - header stamp, which adds the peer's serialisation and DDS transport.
3. Achieved chunk rate with ``tiny`` (chunks/s) and its inference latency.

Run (re-executes itself with the colcon install sourced and, where possible, inside a
loopback-only network namespace, so DDS stays local):
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_policy_node.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INNER = "DREAMZERO_BENCH_INNER"


def _reexec() -> int:
    """Run this script again with install/setup.bash sourced, in `unshare -rn` when available."""
    me = " ".join(shlex.quote(a) for a in [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    script = (
        f"set +u; source {shlex.quote(str(ROOT / 'install' / 'setup.bash'))}; export {INNER}=1; "
        f"export ROS_DOMAIN_ID=${{ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 10 ))}}; "
        f"if unshare -rn true 2>/dev/null; then exec unshare -rn bash -c 'ip link set lo up; exec \"$@\"' _ {me}; "
        f"else export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1; exec {me}; fi"
    )
    return subprocess.call(["bash", "-c", script])


def pct(a: list[float] | np.ndarray, unit: float = 1e3) -> str:
    x = np.asarray(a, dtype=np.float64) * unit
    if x.size == 0:
        return "no samples"
    return f"p50 {np.percentile(x, 50):.2f} ms, p99 {np.percentile(x, 99):.2f} ms, max {x.max():.2f} ms (n={x.size})"


class InstantBackend:
    """Returns a constant chunk at once: isolates the node's own cost."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        return {"actions": np.zeros((24, 8), dtype=np.float32)}

    def reset(self) -> None:
        pass

    def metadata(self) -> dict[str, Any]:
        return {"backend": "bench", "model_id": "instant"}

    def close(self) -> None:
        pass


# Fast DDS passes same-host samples through the WRITER's shared-memory segment, 512 KiB by default:
# three 900 KB images per camera cycle do not fit, so most frames fell back to fragmented UDP and
# were lost (best effort) before this. A camera driver on a robot needs the same setting.
_PEER_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <profiles>
    <transport_descriptors>
      <transport_descriptor><transport_id>bench_shm</transport_id><type>SHM</type>
        <segment_size>16777216</segment_size></transport_descriptor>
      <transport_descriptor><transport_id>bench_udp</transport_id><type>UDPv4</type></transport_descriptor>
    </transport_descriptors>
    <participant profile_name="bench_peer" is_default_profile="true">
      <rtps>
        <userTransports><transport_id>bench_shm</transport_id><transport_id>bench_udp</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def _peer_env() -> dict[str, str]:
    """Environment of the peer process: a 16 MiB shared-memory segment for its camera writers."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"bench_policy_node_peer_{os.getpid()}.xml"
    path.write_text(_PEER_PROFILE)
    return {**os.environ, "FASTRTPS_DEFAULT_PROFILES_FILE": str(path)}


def start_sensor_peer(ctx: Any) -> Any:
    """Three 640x480 rgb8 cameras at 15 Hz and /joint_states at 100 Hz (droid_sim topics), spinning
    on its own executor thread in ``ctx``; returns the executor."""
    import rclpy
    from builtin_interfaces.msg import Time
    from dreamzero_policy.nodes import qos
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Header

    peer = rclpy.create_node("bench_peer", context=ctx)
    cams = ["/sim/exterior_1/image_raw", "/sim/exterior_2/image_raw", "/sim/wrist/image_raw"]
    cam_pubs = [peer.create_publisher(Image, t, qos.image_qos) for t in cams]
    js_pub = peer.create_publisher(JointState, "/joint_states", qos.joint_state_qos)
    pixels = np.random.default_rng(0).integers(0, 255, 640 * 480 * 3, dtype=np.uint8).tobytes()
    names = [*(f"panda_joint{i}" for i in range(1, 8)), "gripper"]

    def header() -> Header:
        ns = peer.get_clock().now().nanoseconds
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9))

    def publish_cams() -> None:
        h = header()
        for pub in cam_pubs:
            pub.publish(Image(header=h, height=480, width=640, encoding="rgb8", step=640 * 3, data=pixels))

    def publish_js() -> None:
        js_pub.publish(JointState(header=header(), name=names, position=[0.1] * 8))

    peer.create_timer(1 / 15, publish_cams)
    peer.create_timer(1 / 100, publish_js)
    return spin_in_thread(ctx, peer)


def spin_in_thread(ctx: Any, node: Any) -> Any:
    """Spin ``node`` on a SingleThreadedExecutor thread; returns a stop() callable that ends the
    spin and joins the thread (a thread left inside rcl at exit aborts the process)."""
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    thread = threading.Thread(target=ex.spin, daemon=True)
    thread.start()

    def stop() -> None:
        ex.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)
        node.destroy_node()

    return stop


def peer_main() -> int:
    """``--peer``: run the sensor peer alone until SIGTERM/SIGINT."""
    import signal

    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop_peer = start_sensor_peer(ctx)
    stop.wait()
    stop_peer()
    rclpy.try_shutdown(context=ctx)
    return 0


class GcPauses:
    """Durations of the cyclic garbage collector's runs (they hold the GIL: every thread waits)."""

    def __init__(self) -> None:
        import gc

        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._t0)

    def clear(self) -> None:
        for v in self.pauses.values():
            v.clear()

    def summary(self) -> str:
        return "; ".join(f"gen{g}: {len(v)} runs, max {max(v, default=0) * 1e3:.1f} ms" for g, v in self.pauses.items())


def run(seconds: float, switch_interval_ms: float | None, torch_threads: int, in_process_peer: bool) -> None:
    import rclpy
    from dreamzero_policy.nodes import qos
    from dreamzero_policy.nodes.converters import duration_to_s, ns_from_time
    from dreamzero_policy.nodes.executor import PoolExecutor
    from dreamzero_policy.nodes.policy_node import PolicyNode
    from rclpy.parameter import Parameter

    from dreamzero_msgs.msg import ActionChunk

    if switch_interval_ms is not None:  # A/B only: policy_node keeps CPython's default (5 ms)
        sys.setswitchinterval(switch_interval_ms / 1e3)
    if torch_threads > 0:
        import torch

        torch.set_num_threads(torch_threads)
    print(
        f"settings: GIL switch interval {sys.getswitchinterval() * 1e3:.1f} ms, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch threads "
        f"{torch_threads if torch_threads > 0 else 'default'}, "
        f"sensor peer {'in this process' if in_process_peer else 'separate process'}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    gc_pauses = GcPauses()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    peer_proc = None
    if in_process_peer:
        stop_peer = start_sensor_peer(ctx)
    else:
        # The sensor peer stands for camera drivers and robot_state_publisher: separate processes on a
        # robot. In this process its publishing would compete with the node for the GIL and skew
        # exactly the latencies measured here.
        env = _peer_env()
        peer_proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--peer"], env=env)
        peer_proc.args_env_profile = env["FASTRTPS_DEFAULT_PROFILES_FILE"]
    rx = rclpy.create_node("bench_chunk_receiver", context=ctx)
    received: list[tuple[int, Any]] = []
    rx.create_subscription(
        ActionChunk,
        "/dreamzero/action_chunk",
        lambda m: received.append((rx.get_clock().now().nanoseconds, m)),
        qos.chunk_qos,
    )
    stop_rx = spin_in_thread(ctx, rx)

    def make_node(name: str, test_backend: Any | None, **params: Any) -> PolicyNode:
        base = {"instruction": "bench", "status_period_s": 0.5, **params}
        node = PolicyNode(
            name,
            backend_factory=(lambda p, s: test_backend) if test_backend else None,
            context=ctx,
            parameter_overrides=[Parameter(k, value=v) for k, v in base.items()],
        )
        ex = PoolExecutor(num_threads=4, context=ctx)
        ex.add_node(node)
        thread = threading.Thread(target=ex.spin, daemon=True)
        thread.start()
        node._bench_executor, node._bench_thread = ex, thread
        return node

    # 1. node overhead with an instant backend ----------------------------------------------
    node = make_node("bench_policy_overhead", InstantBackend())
    tick_s: list[float] = []
    original_tick = node._on_tick

    def timed_tick() -> None:
        before = node.report().chunks_published
        t = time.perf_counter()
        original_tick()
        if node.report().chunks_published != before:  # a tick that published a chunk
            tick_s.append(time.perf_counter() - t)

    node._on_tick = timed_tick  # the timer is created in on_activate and binds this attribute
    node.trigger_configure()
    node.trigger_activate()
    deadline = time.monotonic() + 30
    while not (node.inputs.image_delays_s and node.inputs.joint_delays_s) and time.monotonic() < deadline:
        time.sleep(0.05)  # discovery of the peer process
    time.sleep(1.0)
    tick_s.clear()
    gc_pauses.clear()
    received.clear()
    node.inputs.image_delays_s.clear()
    node.inputs.joint_delays_s.clear()
    time.sleep(seconds)
    node.trigger_deactivate()
    done = [
        (t_rx - ns_from_time(m.inference_started)) / 1e9 - duration_to_s(m.inference_latency) for t_rx, m in received
    ]
    age = [(ns_from_time(m.inference_started) - ns_from_time(m.header.stamp)) / 1e9 for _, m in received]
    print(f"node overhead, tick that publishes a chunk (3x 640x480 rgb8): {pct(tick_s)}  [target p99 <= 10 ms]")
    print(f"inference end -> chunk received by a subscriber:            {pct(done)}")
    print(f"observation age when inference starts (15 Hz cameras):      {pct(age)}")
    print(f"  chunks with the instant backend: {len(received) / seconds:.1f} /s")
    print(f"  garbage collector pauses: {gc_pauses.summary()}")
    print(f"  callback latency, instant backend: joint_states {pct(list(node.inputs.joint_delays_s))}")
    print(f"                                      images       {pct(list(node.inputs.image_delays_s))}")
    print(
        f"    of which node-side (reception -> callback):   joint_states {pct(list(node.inputs.joint_dispatch_s))}, "
        f"images {pct(list(node.inputs.image_dispatch_s))}"
    )
    node._bench_executor.shutdown(timeout_sec=5.0)
    node._bench_thread.join(timeout=5.0)
    node.shutdown_resources()
    node.destroy_node()

    # 2 + 3. the tiny model ----------------------------------------------------------------
    received.clear()
    node = make_node("bench_policy_tiny", None, backend="inprocess", checkpoint="tiny")
    t0 = time.perf_counter()
    node.trigger_configure()
    print(f"tiny: configure (load + warm-up) {time.perf_counter() - t0:.1f} s")
    node.trigger_activate()
    time.sleep(1.0)
    node.arrival_delays_s.clear()
    for d in (
        node.inputs.image_delays_s,
        node.inputs.joint_delays_s,
        node.inputs.image_dispatch_s,
        node.inputs.joint_dispatch_s,
    ):
        d.clear()
    gc_pauses.clear()
    received.clear()
    busy = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        busy.append(node.runtime.worker.busy)
        time.sleep(0.01)
    delays = list(node.arrival_delays_s)
    lat = [duration_to_s(m.inference_latency) for _, m in received]
    print(
        f"sensor callback latency while tiny runs (worker busy {100 * np.mean(busy):.0f} % of the time): "
        f"{pct(delays)}  [target p99 <= 5 ms]"
    )
    print(f"  joint_states (small messages):        {pct(list(node.inputs.joint_delays_s))}")
    print(f"  images (3x 640x480 rgb8, 900 KB each): {pct(list(node.inputs.image_delays_s))}")
    dispatch = list(node.inputs.image_dispatch_s) + list(node.inputs.joint_dispatch_s)
    print(
        f"node-side part (middleware reception -> callback start, excludes serialisation + DDS transport): "
        f"{pct(dispatch)}  [target p99 <= 5 ms]"
    )
    print(f"  joint_states: {pct(list(node.inputs.joint_dispatch_s))}")
    print(f"  images:       {pct(list(node.inputs.image_dispatch_s))}")
    print(f"tiny: achieved chunk rate {len(received) / seconds:.2f} chunks/s; inference latency {pct(lat)}")
    print(f"  garbage collector pauses: {gc_pauses.summary()}")
    node.trigger_deactivate()
    node._bench_executor.shutdown(timeout_sec=5.0)
    node._bench_thread.join(timeout=5.0)
    node.shutdown_resources()
    node.destroy_node()
    if peer_proc is not None:
        peer_proc.terminate()
        peer_proc.wait(timeout=10)
        Path(peer_proc.args_env_profile).unlink(missing_ok=True)
    else:
        stop_peer()
    stop_rx()
    rclpy.shutdown(context=ctx)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per phase")
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="GIL switch interval for an A/B run (default: CPython's, 5 ms, as policy_node)",
    )
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0 = leave)")
    parser.add_argument(
        "--in-process-peer",
        action="store_true",
        help="run the sensor peer in this process (the old setup; for comparison)",
    )
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.environ.get(INNER):
        return _reexec()
    if args.peer:
        return peer_main()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    run(args.seconds, args.switch_interval_ms, args.torch_threads, args.in_process_peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
