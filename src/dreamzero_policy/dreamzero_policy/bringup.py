"""The node graph of every bringup, as plain data.

Launch files (``launch/*.launch.py``) and the demo runner both build their node lists from these
functions, so the graph is defined once and unit-tested without the ROS ``launch`` packages (which
are not installable from PyPI). A :class:`NodeSpec` says which installed executable to start, with
which parameter files, parameter overrides and remappings.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("inprocess", "websocket", "replay")

# Topics the data pipeline needs, recorded by record.launch.py (MCAP + zstd).
RECORD_TOPICS = (
    "/joint_states",
    "/sim/exterior_1/image_raw",
    "/sim/exterior_2/image_raw",
    "/sim/wrist/image_raw",
    "/dreamzero/action_chunk",
    "/dreamzero/observation_used",
    "/dreamzero/status",
    "/dreamzero_policy/instruction",  # the policy node's ~/instruction (node name dreamzero_policy)
    "/adapter_node/commanded",
    "/tf",
    "/tf_static",
    "/robot_description",
)


@dataclass(frozen=True)
class NodeSpec:
    """One node of a bringup: ``<install>/lib/<package>/<executable>`` with ROS arguments."""

    package: str
    executable: str
    name: str
    parameter_files: tuple[Path, ...] = ()
    parameters: dict[str, object] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    lifecycle: bool = False

    def ros_arguments(self) -> list[str]:
        """The ``--ros-args`` command-line tail that starts this node the same way launch would."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        for path in self.parameter_files:
            args += ["--params-file", str(path)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_param_literal(value)}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args


def _param_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def config_dir() -> Path:
    """The config/ folder: ``$DREAMZERO_CONFIG_DIR``, the installed share dir, or the source tree."""
    override = os.environ.get("DREAMZERO_CONFIG_DIR")
    if override:
        return Path(override)
    source = Path(__file__).resolve().parents[3] / "config"
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("dreamzero_policy")) / "config"


def bringup_nodes(
    robot: str,
    embodiment: str,
    backend: str = "inprocess",
    checkpoint: str = "",
    config: Path | None = None,
) -> list[NodeSpec]:
    """Policy node + embodiment adapter for ``robot`` (a profile in ``config/robots/``)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    cfg = config or config_dir()
    robot_file = cfg / "robots" / f"{robot}.yaml"
    if not robot_file.is_file():
        known = sorted(p.stem for p in (cfg / "robots").glob("*.yaml"))
        raise ValueError(f"unknown robot {robot!r} (no {robot_file}); known robots: {', '.join(known)}")
    policy_params: dict[str, object] = {"backend": backend, "embodiment": embodiment}
    if checkpoint:
        policy_params["checkpoint"] = checkpoint
    return [
        NodeSpec(
            package="dreamzero_policy",
            executable="policy_node",
            name="dreamzero_policy",
            parameter_files=(cfg / "nodes" / "policy_node.yaml",),
            parameters=policy_params,
            lifecycle=True,
        ),
        NodeSpec(
            package="embodiment_adapters",
            executable="adapter_node",
            name="adapter_node",
            parameter_files=(cfg / "nodes" / "adapter_node.yaml",),
            parameters={"robot": robot},
        ),
    ]


def sim_nodes(
    backend: str = "inprocess",
    checkpoint: str = "",
    config: Path | None = None,
    realtime_factor: float | None = None,
) -> list[NodeSpec]:
    """The simulated DROID-like robot plus the bringup that drives it.

    ``realtime_factor``: None keeps the sim's parameter file (wall-clock time). A number (sim seconds
    per wall second, > 0) runs the whole graph on sim time: the sim publishes ``/clock`` at that
    pace and every node gets ``use_sim_time:=true``, so model latency, input staleness, chunk
    horizons and watchdogs are all measured in sim time. Below 1 this lets a model that is slower
    than real time (a CPU) keep up with its own chunks.
    """
    if realtime_factor is not None and not realtime_factor > 0.0:
        raise ValueError(f"realtime_factor must be > 0 (sim seconds per wall second), got {realtime_factor}")
    cfg = config or config_dir()
    sim_params: dict[str, object] = {}
    if realtime_factor is not None:
        sim_params = {"publish_clock": True, "realtime_factor": float(realtime_factor)}
    sim = NodeSpec(
        package="dreamzero_sim",
        executable="sim_robot_node",
        name="sim_robot_node",
        parameter_files=(cfg / "nodes" / "sim_robot_node.yaml",),
        parameters=sim_params,
    )
    nodes = [sim, *bringup_nodes("droid_franka_sim", "droid_sim", backend, checkpoint, cfg)]
    if realtime_factor is None:
        return nodes
    return [dataclasses.replace(n, parameters={**n.parameters, "use_sim_time": True}) for n in nodes]


def record_command(output: str, topics: tuple[str, ...] = RECORD_TOPICS, use_sim_time: bool = False) -> list[str]:
    """``ros2 bag record`` in MCAP with zstd compression of the topics the data pipeline needs.

    ``use_sim_time``: log messages on ``/clock`` time, like nodes started with ``use_sim_time:=true``
    (the simulator with a realtime factor). The converter also copes with a wall-clock recording of
    sim-time nodes, but one clock throughout is simpler to read.
    """
    return [
        "ros2",
        "bag",
        "record",
        "-s",
        "mcap",
        "--storage-preset-profile",
        "zstd_fast",
        *(["--use-sim-time"] if use_sim_time else []),
        "-o",
        output,
        *topics,
    ]
