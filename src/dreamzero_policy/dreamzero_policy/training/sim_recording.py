"""Scripted-expert demonstrations in the simulator, recorded as rosbags and converted with the data pipeline.

Each episode is one rosbag2 (MCAP) directory holding what the sim robot node and the policy node exchange
(topics and types of ``dreamzero_sim.sim_robot_node``), stamped on the sim clock:

* ``/joint_states`` (``sensor_msgs/JointState``, 7 arm joints + ``gripper`` 0 = open .. 1 = closed),
* ``/sim/<camera>/image_raw`` (``sensor_msgs/Image`` rgb8) for the three cameras,
* ``/arm_controller/joint_trajectory`` (``trajectory_msgs/JointTrajectory``): at every control tick one point
  ``1/fps`` ahead, exactly what the expert commanded,
* ``/gripper_controller/commands`` (``std_msgs/Float64MultiArray``, one value),
* ``/policy_node/instruction`` (``std_msgs/String``) once at the start.

``config/datasets/sim_tabletop.yaml`` maps them to dataset keys; ``convert`` (the pipeline) does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from dreamzero_sim.sim_core import ARM_JOINT_NAMES, CAMERA_NAMES, JOINT_NAMES, CameraRenderer, SimRobot
from dreamzero_sim.trajectory_follower import TrajectoryPoint
from rosbags.rosbag2 import StoragePlugin, Writer

from dreamzero_policy.data.bagio import make_typestore
from dreamzero_policy.data.convert import ConvertOptions, ConvertResult, convert
from dreamzero_policy.data.mapping import mapping_from_dict

from .sim_experts import load_chain, plan_episode
from .sim_tasks import TaskSpec, apply_placement, sample_placement

__all__ = ["DemoEpisode", "convert_demos", "load_sim_mapping", "record_demos", "repo_config"]

T0_NS = 1_700_000_000 * 1_000_000_000  # bag clock = T0 + sim time
TRAJECTORY_TOPIC = "/arm_controller/joint_trajectory"
GRIPPER_TOPIC = "/gripper_controller/commands"
INSTRUCTION_TOPIC = "/policy_node/instruction"


def repo_config(*parts: str) -> Path:
    """A file under the workspace's top-level ``config/`` folder."""
    for parent in Path(__file__).resolve().parents:
        cand = parent.joinpath("config", *parts)
        if cand.exists():
            return cand
    raise FileNotFoundError(f"config/{'/'.join(parts)} not found above {__file__}")


@dataclass(frozen=True)
class DemoEpisode:
    bag: Path
    task: str
    instruction: str
    frames: int
    placement: dict[str, tuple[float, float]]


class _BagWriter:
    """Thin wrapper: typed messages -> CDR -> one MCAP bag, connections created on first use."""

    def __init__(self, path: Path) -> None:
        self.ts = make_typestore()
        self.T = self.ts.types
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns: dict[str, Any] = {}

    def write(self, topic: str, msgtype: str, msg: Any, log_ns: int) -> None:
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.ts)
        self.writer.write(self.conns[topic], log_ns, self.ts.serialize_cdr(msg, msgtype))

    def header(self, t_ns: int) -> Any:
        return self.T["std_msgs/msg/Header"](
            stamp=self.T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=""
        )

    def close(self) -> None:
        self.writer.close()


def _record_tick(w: _BagWriter, t_ns: int, sim: SimRobot, images: dict[str, np.ndarray]) -> None:
    T = w.T
    js = sim.joint_state()
    w.write(
        "/joint_states",
        "sensor_msgs/msg/JointState",
        T["sensor_msgs/msg/JointState"](
            header=w.header(t_ns), name=list(JOINT_NAMES), position=js.position, velocity=js.velocity, effort=js.effort
        ),
        t_ns,
    )
    for cam, img in images.items():
        h, wd = img.shape[:2]
        msg = T["sensor_msgs/msg/Image"](
            header=w.header(t_ns),
            height=h,
            width=wd,
            encoding="rgb8",
            is_bigendian=0,
            step=wd * 3,
            data=np.ascontiguousarray(img).reshape(-1),
        )
        w.write(f"/sim/{cam}/image_raw", "sensor_msgs/msg/Image", msg, t_ns + 1_000_000)


def _record_command(w: _BagWriter, t_ns: int, arm: np.ndarray, gripper: float, fps: float) -> None:
    T = w.T
    step_ns = round(1e9 / fps)
    point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.asarray(arm, np.float64),
        velocities=np.zeros(0),
        accelerations=np.zeros(0),
        effort=np.zeros(0),
        time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=step_ns),
    )
    w.write(
        TRAJECTORY_TOPIC,
        "trajectory_msgs/msg/JointTrajectory",
        T["trajectory_msgs/msg/JointTrajectory"](
            header=w.header(t_ns), joint_names=list(ARM_JOINT_NAMES), points=[point]
        ),
        t_ns + 2_000_000,
    )
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    w.write(
        GRIPPER_TOPIC,
        "std_msgs/msg/Float64MultiArray",
        T["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.array([gripper], np.float64)),
        t_ns,
    )


def record_demos(
    out_dir: Path,
    tasks: Sequence[TaskSpec],
    episodes_per_task: int,
    seed: int,
    image_size: tuple[int, int] = (64, 128),
    fps: float = 15.0,
) -> list[DemoEpisode]:
    """Record ``episodes_per_task`` expert episodes per task (tasks interleaved) as bags ``out_dir/ep_NNNN``.

    ``image_size`` is (height, width) of every camera image; placements come from ``seed``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7])
    chain = load_chain()
    sim = SimRobot()
    renderer = CameraRenderer(sim.model, image_size[1], image_size[0], CAMERA_NAMES)
    episodes: list[DemoEpisode] = []
    try:
        for i in range(episodes_per_task * len(tasks)):
            task = tasks[i % len(tasks)]
            placement = sample_placement(task, rng)
            apply_placement(sim, placement)
            plan = plan_episode(task, placement, chain, sim.home_positions, fps)
            bag = out_dir / f"ep_{i:04d}"
            w = _BagWriter(bag)
            try:
                t0 = sim.time
                w.write(
                    INSTRUCTION_TOPIC,
                    "std_msgs/msg/String",
                    w.T["std_msgs/msg/String"](data=task.instruction),
                    T0_NS + round(t0 * 1e9),
                )
                for k in range(len(plan) + 1):
                    sim.advance_to(t0 + k / fps)
                    t_ns = T0_NS + round(sim.time * 1e9)
                    _record_tick(w, t_ns, sim, renderer.render(sim.snapshot()))
                    if k < len(plan):
                        sim.submit_trajectory(ARM_JOINT_NAMES, [TrajectoryPoint(1.0 / fps, plan.arm[k].tolist())])
                        sim.command_gripper(float(plan.gripper[k]))
                        _record_command(w, t_ns, plan.arm[k], float(plan.gripper[k]), fps)
            finally:
                w.close()
            episodes.append(DemoEpisode(bag, task.name, task.instruction, len(plan), placement.xy))
    finally:
        renderer.close()
    return episodes


def load_sim_mapping(action_horizon: int, path: Path | None = None) -> Any:
    """``config/datasets/sim_tabletop.yaml`` with ``action_horizon`` set to the model's actions per block."""
    data = yaml.safe_load((path or repo_config("datasets", "sim_tabletop.yaml")).read_text())
    data["action_horizon"] = int(action_horizon)
    data["min_episode_frames"] = max(int(data.get("min_episode_frames", 2)), int(action_horizon) + 1)
    return mapping_from_dict(data)


def convert_demos(bags: Sequence[Path], output: Path, action_horizon: int) -> ConvertResult:
    """Bags -> LeRobot v2.1 dataset at ``output`` with the data pipeline (``dreamzero data convert``)."""
    return convert(list(bags), load_sim_mapping(action_horizon), output, ConvertOptions(overwrite=True, progress=False))
