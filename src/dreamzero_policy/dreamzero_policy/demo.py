"""``dreamzero demo``: one simulated episode of the whole loop, recorded and reported.

Stages (each failure stops the demo with ``ERROR [<stage>]: <why>`` and a non-zero exit):

1. ``isolate``: as root, re-run inside a private loopback-only network namespace (like
   ``scripts/run_tests.sh``); always a random ``ROS_DOMAIN_ID`` and localhost-only discovery.
2. ``start``: the bag recorder and a monitor node in this process, then the nodes of
   :func:`~dreamzero_policy.bringup.sim_nodes` (sim robot, policy with ``autostart``, adapter) as
   child processes from their installed executables; logs in ``<run>/logs/``.
3. ``ready``: the policy is active (status WAITING_FOR_INPUT/RUNNING), its ``~/run_task`` action
   server answers and ``/joint_states`` flow.
4. ``episode``: a ``RunTask`` goal with the instruction and the episode duration; the policy must
   reach RUNNING and chunks must flow until the goal ends.
5. ``shutdown``: bag closed, children stopped (SIGINT -> SIGTERM -> SIGKILL); each must exit 0.
6. ``report``: ``report.json``/``report.png`` and ``demo.mp4`` from the bag; 0 limit violations.

Output: ``<run>/bag/`` (rosbag2, MCAP + zstd), ``<run>/demo.mp4``, ``<run>/report.json``,
``<run>/report.png``, ``<run>/logs/*.log``.

Sim time: every node runs with ``use_sim_time:=true`` on the sim's ``/clock``, which advances at
``--realtime-factor`` sim seconds per wall second. A chunk covers 24 steps x 1/15 s = 1.6 s; on a
2-core CPU shared with other work the model (``small-flash``) needs 1-7 s of wall time per chunk
(mean ~2.5-3 s; every 4th chunk restarts the session), so at factor 1 every chunk would be in the
past on arrival and the adapter would (rightly) reject it. At 0.2 the same compute costs a fifth of
that in sim time. Defaults (``auto``): without CUDA, factor 0.2 and the ``small-flash``
preset (the ``small`` model in 1-step mode); with CUDA, factor 1, device cuda and the parameter
file's checkpoint. Durations (``--duration``) are sim seconds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamzero_policy.bringup import BACKENDS, RECORD_TOPICS, NodeSpec

ROBOT = "droid_franka_sim"
CAMERA_TOPICS = ["/sim/exterior_1/image_raw", "/sim/exterior_2/image_raw", "/sim/wrist/image_raw"]
NETNS_ENV = "DREAMZERO_DEMO_NETNS"
CPU_REALTIME_FACTOR = 0.2
CPU_CHECKPOINT = "small-flash"


@dataclass(frozen=True)
class GraphNames:
    """Names that follow from the bringup's node names (``~/...`` topics of the policy and adapter)."""

    policy: str
    adapter: str

    @classmethod
    def from_specs(cls, specs: list[NodeSpec]) -> GraphNames:
        by_exe = {s.executable: s.name for s in specs}
        return cls(policy=by_exe["policy_node"], adapter=by_exe["adapter_node"])

    @property
    def predicted(self) -> str:
        return f"/{self.policy}/predicted/image"

    @property
    def run_task(self) -> str:
        return f"/{self.policy}/run_task"

    @property
    def commanded(self) -> str:
        return f"/{self.adapter}/commanded"

    def record_topics(self) -> tuple[str, ...]:
        """RECORD_TOPICS plus what the video and the report need."""
        extra = (
            self.predicted,
            self.commanded,
            f"/{self.adapter}/status",
            f"/{self.policy}/instruction",
            "/arm_controller/joint_trajectory",
            "/gripper_controller/commands",
            "/diagnostics",
        )
        return tuple(dict.fromkeys((*RECORD_TOPICS, *extra)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run one simulated episode: the MuJoCo robot, the policy node (in-process model) and the embodiment "
        "adapter, started as processes from the colcon install. Writes <output-dir>/ with the episode as a "
        "rosbag2 (MCAP), demo.mp4 (camera views above the model's predicted frames), report.json + report.png "
        "(chunk latency, control rate, dropped chunks, joint tracking, limit violations) and the node logs."
    )
    parser.add_argument("--duration", type=float, default=25.0, help="episode length in sim seconds (default 25)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="run folder to create (default runs/<YYYYmmdd-HHMMSS>/); must not exist or be empty",
    )
    parser.add_argument(
        "--instruction",
        default="pick up the red cube and put it next to the green can",
        help="language instruction sent with the RunTask goal",
    )
    parser.add_argument(
        "--checkpoint",
        "--preset",
        dest="checkpoint",
        default="",
        help="model preset name (tiny, small, small-flash) or checkpoint directory; default: "
        f"{CPU_CHECKPOINT} without CUDA, else the one in config/nodes/policy_node.yaml "
        "(random weights until a trained checkpoint exists)",
    )
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=None,
        help=f"sim seconds per wall second; default {CPU_REALTIME_FACTOR} without CUDA, 1.0 with "
        "CUDA. Lower it when the adapter rejects chunks as too old (slow model)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="policy device (default auto: cuda when torch sees a GPU, else the parameter file's)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="inprocess", help="policy backend (default inprocess)")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=300.0,
        help="seconds for the nodes to start and the model to load and warm up (default 300)",
    )
    parser.add_argument(
        "--running-timeout",
        type=float,
        default=120.0,
        help="seconds after the goal for the policy to reach RUNNING (default 120)",
    )
    parser.add_argument("--video-fps", type=float, default=10.0, help="frame rate of demo.mp4 (default 10)")
    parser.add_argument(
        "--no-netns",
        action="store_true",
        help="do not re-run inside a private network namespace (DDS then stays on localhost)",
    )


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces ``args`` (used to re-run inside the network namespace)."""
    out = [
        "--duration",
        str(args.duration),
        "--output-dir",
        str(args.output_dir),
        "--instruction",
        args.instruction,
        "--backend",
        args.backend,
        "--startup-timeout",
        str(args.startup_timeout),
        "--running-timeout",
        str(args.running_timeout),
        "--video-fps",
        str(args.video_fps),
        "--no-netns",
        "--device",
        args.device,
    ]
    if args.checkpoint:
        out += ["--checkpoint", args.checkpoint]
    if args.realtime_factor is not None:
        out += ["--realtime-factor", str(args.realtime_factor)]
    return out


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_auto(args: argparse.Namespace, cuda: bool | None = None) -> list[str]:
    """Fill the ``auto`` defaults (realtime factor, checkpoint, device) in place; returns what was chosen."""
    gpu = _cuda_available() if cuda is None else bool(cuda)
    chosen = []
    if args.device == "auto":
        args.device = "cuda" if gpu else ""  # "": the parameter file's device
        chosen.append(f"device {args.device or '(parameter file)'}")
    if args.realtime_factor is None:
        args.realtime_factor = 1.0 if gpu else CPU_REALTIME_FACTOR
        chosen.append(f"realtime factor {args.realtime_factor:g}")
    if not args.checkpoint and not gpu:
        args.checkpoint = CPU_CHECKPOINT
        chosen.append(f"checkpoint {CPU_CHECKPOINT}")
    if chosen:
        chosen[0] = ("no CUDA: " if not gpu else "CUDA: ") + chosen[0]
    return chosen


def _reexec_in_netns(args: argparse.Namespace) -> int | None:
    """Run the demo again inside ``unshare -n`` (loopback only); None when that is not possible/wanted."""
    if args.no_netns or os.environ.get(NETNS_ENV) or os.environ.get("DREAMZERO_TEST_NETNS"):
        return None
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return None
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return None
    print("==> [demo] re-running inside a private loopback-only network namespace (unshare -n)", flush=True)
    cmd = [
        "unshare",
        "-n",
        "--",
        "bash",
        "-c",
        'ip link set lo up && exec "$@"',
        "_",
        "env",
        f"{NETNS_ENV}=isolated",
        sys.executable,
        "-m",
        "dreamzero_policy.cli",
        "demo",
        *_argv(args),
    ]
    return subprocess.call(cmd)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # A fresh domain per run: without a private namespace, other graphs on this machine stay apart.
    env["ROS_DOMAIN_ID"] = str(random.randint(10, 99))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        print("ERROR [args]: --duration must be > 0", file=sys.stderr)
        return 2
    if args.realtime_factor is not None and not 0.0 < args.realtime_factor <= 10.0:
        print("ERROR [args]: --realtime-factor must be in (0, 10]", file=sys.stderr)
        return 2
    if args.output_dir is None:
        args.output_dir = Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.output_dir = Path(args.output_dir).resolve()
    if args.output_dir.exists() and any(args.output_dir.iterdir()):
        print(f"ERROR [args]: output folder {args.output_dir} exists and is not empty", file=sys.stderr)
        return 2
    rc = _reexec_in_netns(args)
    if rc is not None:
        return rc
    # rclpy is imported only from here on (``--help`` and the netns re-run stay light).
    from dreamzero_policy.demo_tools.session import DemoError, DemoSession, say

    args.output_dir.mkdir(parents=True, exist_ok=True)
    chosen = resolve_auto(args)
    if chosen:
        say("defaults: " + ", ".join(chosen))
    env = _environment()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    say(
        f"run folder {args.output_dir}  (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, "
        f"network: {os.environ.get(NETNS_ENV) or os.environ.get('DREAMZERO_TEST_NETNS') or 'localhost only'})"
    )
    t_start = time.monotonic()
    session = DemoSession(args, env)
    names = GraphNames.from_specs(session.specs)
    session.topics = names.record_topics()
    session.run_task_action = names.run_task
    errors: list[str] = []
    try:
        session.run_episode()
    except DemoError as exc:
        errors.append(str(exc))
    except KeyboardInterrupt:
        errors.append("ERROR [interrupted]: Ctrl-C; stopping the nodes")
    finally:
        errors += session.shutdown()
    report = _finish(args, session, names, errors, time.monotonic() - t_start)
    for line in errors:
        print(line, file=sys.stderr, flush=True)
    if errors:
        print(f"demo FAILED; see the node logs in {args.output_dir / 'logs'}", file=sys.stderr, flush=True)
        return 1
    _print_summary(args.output_dir, report)
    return 0


def _finish(
    args: argparse.Namespace, session: Any, names: GraphNames, errors: list[str], wall_s: float
) -> dict[str, Any] | None:
    """Video + report from the bag (also after a failed episode, when there is a bag to look at)."""
    from dreamzero_policy.demo_tools.report import build_report
    from dreamzero_policy.demo_tools.video import write_video

    out = args.output_dir
    bag = out / "bag"
    if not (bag / "metadata.yaml").is_file():
        errors.append(f"ERROR [report]: no finished bag in {bag}")
        return None
    video: dict[str, Any] = {}
    try:
        v = write_video(bag, out / "demo.mp4", CAMERA_TOPICS, names.predicted, fps=args.video_fps)
        video = {
            "path": "demo.mp4",
            "frames": v.frames,
            "fps": v.fps,
            "size": list(v.size),
            "camera_frames": v.camera_frames,
            "predicted_frames": v.predicted_frames,
        }
    except Exception as exc:
        errors.append(f"ERROR [video]: {type(exc).__name__}: {exc}")
    info = {**session.run_info(), "wall_time_s": wall_s, "video": video, "errors": list(errors)}
    try:
        report = build_report(bag, out, ROBOT, info, names.commanded)
    except Exception as exc:
        errors.append(f"ERROR [report]: {type(exc).__name__}: {exc}")
        return None
    verdicts = _check(report)
    if verdicts:  # keep report.json in step with the verdict
        errors += verdicts
        report["run"]["errors"] = list(errors)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _check(report: dict[str, Any]) -> list[str]:
    """Verdicts a successful episode must pass: chunks flowed, the arm moved, no limit was crossed."""
    out = []
    ch = report["chunks"]
    if ch["received"] == 0:
        out.append("ERROR [report]: no action chunk was recorded")
    elif ch.get("accepted_by_adapter") == 0:
        lat, horizon = ch["latency_s"]["mean"], ch.get("horizon_s")
        rtf = float(report.get("run", {}).get("realtime_factor") or 1.0)
        why = (
            f"the model needs {lat:.2f} s of compute per chunk on average, {lat * rtf:.2f} s of sim time at "
            f"realtime factor {rtf:g}, but a chunk covers only {horizon:.2f} s, so every chunk is already in "
            "the past when it arrives"
            if lat and horizon and lat * rtf > horizon
            else "see the adapter log for the reasons"
        )
        out.append(
            f"ERROR [episode]: the arm did not move: the adapter's safety checks rejected all "
            f"{ch['received']} chunks ({why}). On a CPU lower --realtime-factor, try a smaller model "
            "(--checkpoint tiny) or use a GPU."
        )
    elif max(report["motion_rad"].values(), default=0.0) < 1e-3:
        out.append("ERROR [episode]: chunks were accepted but the arm did not move (see the sim and adapter logs)")
    if report["limit_violations"]["total"] != 0:
        lim = report["limit_violations"]
        where = ", ".join(
            f"{joint} {kind} x{n}" for joint, counts in lim["per_joint"].items() for kind, n in counts.items() if n
        )
        out.append(
            f"ERROR [limits]: {lim['total']} joint limit violations ({where}; worst position excess "
            f"{lim.get('max_position_excess_rad', 0.0):.4f} rad; see limit_violations in report.json)"
        )
    return out


def _print_summary(out: Path, report: dict[str, Any] | None) -> None:
    from dreamzero_policy.demo_tools.plots import summary_lines

    if report is None:
        return
    print("\n== dreamzero demo: done ==", flush=True)
    run_info = report["run"]
    print(
        f"episode: {run_info.get('episode_sim_s', 0):.1f} s sim time ({run_info.get('episode_s', 0):.1f} s wall, "
        f"realtime factor {run_info.get('realtime_factor', 1.0):g}), checkpoint {run_info.get('checkpoint')}, "
        f"task: {run_info.get('task_message', '')}"
    )
    for line in summary_lines(report):
        print(f"  {line}")
    ch, rtf = report["chunks"], float(run_info.get("realtime_factor") or 1.0)
    if ch["latency_s"]["mean"] is not None and ch.get("horizon_s"):
        print(
            f"  sim time: chunk latency {ch['latency_s']['mean'] * rtf:.2f} s (mean) of a {ch['horizon_s']:.2f} s "
            f"chunk; rates and durations above are per sim second"
        )
    print(f"\nfiles in {out}:")
    for name in ("bag/", "demo.mp4", "report.json", "report.png", "logs/"):
        print(f"  {out / name}")
    sys.stdout.flush()
