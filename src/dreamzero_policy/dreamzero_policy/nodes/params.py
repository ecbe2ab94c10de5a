"""Policy node parameters: declared once, with type, default, description and validator.

:class:`NodeParams` is the single source: each field carries a :class:`ParamInfo` (ROS name,
description, read-only flag, validator) in its dataclass metadata. The node declares every field
as a ROS parameter from it (:func:`declare_all`), reads the values back into a frozen
``NodeParams`` (:func:`read_all`) and validates runtime changes with :func:`check_update`; the
rest of the node reads only the dataclass.

Parameters are declared with ``dynamic_typing=True`` on purpose: a YAML value of the wrong type
must not raise from the node constructor (rclpy would), but fail ``configure`` with a reason.
Type checks therefore live here (:func:`coerce`), ints are accepted for float parameters.

Structural parameters (backend, model, embodiment, topics) are read-only: changing them needs a
cleanup + configure. The dynamic ones are marked ``read_only=False`` below.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from dreamzero_policy.core.errors import DreamZeroError

BACKENDS = ("inprocess", "websocket", "replay")


class ParameterError(DreamZeroError, ValueError):
    """A node parameter has a bad value; the message names the ROS parameter and why."""


@dataclass(frozen=True)
class ParamInfo:
    """How one dataclass field appears as a ROS parameter."""

    ros_name: str
    description: str
    read_only: bool = True
    check: Callable[[Any], str | None] | None = None  # returns a reason when the value is bad


def _p(
    default: Any,
    ros_name: str,
    description: str,
    *,
    read_only: bool = True,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    return field(default=default, metadata={"info": ParamInfo(ros_name, description, read_only, check)})


def _positive(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else "must be a positive finite number"


def _non_negative(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "must be a finite number >= 0"


def _between(lo: float, hi: float) -> Callable[[float], str | None]:
    def check(v: float) -> str | None:
        return None if math.isfinite(v) and lo <= v <= hi else f"must be in [{lo}, {hi}]"

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in choices else f"must be one of {list(choices)}"

    return check


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _topic(v: str) -> str | None:
    return None if re.fullmatch(r"[~/]?[A-Za-z_][A-Za-z0-9_/]*", v) and "//" not in v else "is not a valid topic name"


def _device(v: str) -> str | None:
    return None if re.fullmatch(r"cpu|cuda(:\d+)?|mps", v) else "must be 'cpu', 'cuda', 'cuda:<index>' or 'mps'"


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else "must be a TCP port in [1, 65535]"


@dataclass(frozen=True)
class NodeParams:
    """Validated policy node configuration (times in seconds, rates in Hz)."""

    backend: str = _p(
        "inprocess",
        "backend",
        "Where inference runs: inprocess (the model in this process), "
        "websocket (a remote DreamZero/openpi server) or replay (actions from a recorded bag).",
        check=_one_of(BACKENDS),
    )
    checkpoint: str = _p(
        "tiny",
        "checkpoint",
        "In-process model: a preset name (tiny, small, ...) or a checkpoint directory (safetensors).",
        check=_non_empty,
    )
    embodiment: str = _p(
        "droid_sim",
        "embodiment",
        "Embodiment I/O spec: a name in config/embodiments/ or a "
        "path to a YAML file (cameras, joints, action space, statistics).",
        check=_non_empty,
    )
    embodiment_dir: str = _p(
        "", "embodiment_dir", "Folder of embodiment specs; empty = the installed config/embodiments."
    )
    device: str = _p("cpu", "device", "Torch device of the in-process model.", check=_device)
    seed: int = _p(
        0,
        "seed",
        "Random seed of the in-process model (reproducible noise).",
        check=lambda v: None if v >= 0 else "must be >= 0",
    )
    websocket_host: str = _p("127.0.0.1", "websocket.host", "Policy server host (websocket backend).", check=_non_empty)
    websocket_port: int = _p(8000, "websocket.port", "Policy server port (websocket backend).", check=_port)
    websocket_timeout_s: float = _p(
        30.0,
        "websocket.timeout_s",
        "Connect/answer deadline of the policy server (websocket backend).",
        check=_positive,
    )
    replay_bag_path: str = _p(
        "", "replay.bag_path", "Recorded bag with /dreamzero/action_chunk messages (replay backend)."
    )
    replay_loop: bool = _p(
        False,
        "replay.loop",
        "Start the recording over after its last chunk (replay "
        "backend); otherwise the node reports a backend error once it is exhausted.",
    )
    backend_retry_s: float = _p(
        1.0,
        "backend_retry_s",
        "Pause after a backend failure or timeout before the "
        "next inference is started (the failure starts a new session).",
        check=_between(0.0, 60.0),
    )
    warmup: bool = _p(
        True,
        "warmup",
        "Run one inference on a blank observation during configure, so the "
        "first real chunk is not slowed by lazy initialisation.",
    )
    inference_timeout_s: float = _p(
        60.0,
        "inference_timeout_s",
        "An inference running longer than this is reported as a backend timeout (status BACKEND_ERROR).",
        check=_positive,
    )
    query_period_s: float = _p(
        0.02,
        "query_period_s",
        "Period of the decision timer that harvests results and starts the next inference when the worker is idle.",
        check=_between(0.001, 1.0),
    )
    status_period_s: float = _p(
        0.5, "status_period_s", "Period of /dreamzero/status and /diagnostics.", check=_between(0.01, 10.0)
    )
    max_age_s: float = _p(
        0.2,
        "sync.max_age_s",
        "Newest frame / joint state older than this is stale: no inference.",
        read_only=False,
        check=_positive,
    )
    max_skew_s: float = _p(
        0.05,
        "sync.max_skew_s",
        "Largest allowed spread of the camera stamps used in one observation.",
        read_only=False,
        check=_positive,
    )
    max_joint_gap_s: float = _p(
        0.1,
        "sync.max_joint_gap_s",
        "Largest allowed gap between joint states around the observation time.",
        read_only=False,
        check=_positive,
    )
    backwards_tolerance_s: float = _p(
        0.0,
        "sync.backwards_tolerance_s",
        "Stamps may go back this much before it counts as a time jump (buffers cleared, new session).",
        read_only=False,
        check=_non_negative,
    )
    joint_state_topic: str = _p("/joint_states", "joint_state_topic", "sensor_msgs/JointState input.", check=_topic)
    reject_extra_joints: bool = _p(
        False,
        "reject_extra_joints",
        "Reject JointState messages naming joints the embodiment does not use (default: ignore them).",
    )
    frame_id: str = _p(
        "",
        "frame_id",
        "ActionChunk.header.frame_id (reference frame of Cartesian action spaces; empty for joint spaces).",
    )
    publish_joint_trajectory: bool = _p(
        False,
        "publish_joint_trajectory",
        "Also publish each chunk as a "
        "trajectory_msgs/JointTrajectory on ~/joint_trajectory (joint-position "
        "embodiments only; the gripper column is left out).",
    )
    publish_predicted_video: bool = _p(
        False,
        "predicted_video.enabled",
        "Publish the newest predicted frame on ~/predicted/image when the backend returns video.",
        read_only=False,
    )
    predicted_video_max_rate_hz: float = _p(
        2.0,
        "predicted_video.max_rate_hz",
        "Upper bound on the predicted frame rate.",
        read_only=False,
        check=_between(0.01, 30.0),
    )
    instruction: str = _p(
        "",
        "instruction",
        "Language instruction; empty = none (no chunks until one is set "
        "here, on ~/instruction, ~/set_instruction or by a ~/run_task goal).",
        read_only=False,
    )
    autostart: bool = _p(
        False,
        "autostart",
        "Configure and activate once right after start. Only for running "
        "the node without launch or a lifecycle manager (demo runner, quick bring-up); "
        "normally the lifecycle is driven from outside.",
    )

    def __post_init__(self) -> None:
        problems = [_field_problem(f.metadata["info"], getattr(self, f.name)) for f in fields(self)]
        problems = [p for p in problems if p]
        if self.backend == "replay" and not self.replay_bag_path.strip():
            problems.append("replay.bag_path: must be set when backend is 'replay'")
        if problems:
            raise ParameterError("; ".join(problems))


def _field_problem(info: ParamInfo, value: Any) -> str | None:
    reason = info.check(value) if info.check is not None else None
    return f"{info.ros_name}: {reason} (got {value!r})" if reason else None


def param_fields() -> list[tuple[str, ParamInfo, Any]]:
    """(field name, info, default) for every parameter, in declaration order."""
    return [(f.name, f.metadata["info"], f.default) for f in fields(NodeParams)]


_BY_ROS_NAME: dict[str, tuple[str, ParamInfo, Any]] = {info.ros_name: (n, info, d) for n, info, d in param_fields()}


def coerce(ros_name: str, value: Any) -> Any:
    """``value`` converted to the parameter's Python type; ParameterError names the problem."""
    if ros_name not in _BY_ROS_NAME:
        raise ParameterError(f"{ros_name}: unknown parameter")
    _, _, default = _BY_ROS_NAME[ros_name]
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise ParameterError(f"{ros_name}: expected {kind.__name__}, got {type(value).__name__} {value!r}")


def from_values(values: Mapping[str, Any]) -> NodeParams:
    """NodeParams from ROS names -> values (missing ones keep their default). Collects all problems."""
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    for ros_name, value in values.items():
        try:
            kwargs[_BY_ROS_NAME[ros_name][0] if ros_name in _BY_ROS_NAME else ros_name] = coerce(ros_name, value)
        except ParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise ParameterError("; ".join(problems))
    return NodeParams(**kwargs)


def check_update(current: NodeParams, changes: Mapping[str, Any]) -> NodeParams:
    """The parameters after applying ``changes`` (ROS names -> values); ParameterError if any is bad
    or read-only. Used by the node's on-set-parameters callback."""
    kwargs: dict[str, Any] = {}
    for ros_name, value in changes.items():
        if ros_name not in _BY_ROS_NAME:
            continue  # not ours (e.g. use_sim_time): rclpy validates those
        name, info, _ = _BY_ROS_NAME[ros_name]
        if info.read_only:
            raise ParameterError(f"{ros_name}: read-only; change it with cleanup + configure")
        kwargs[name] = coerce(ros_name, value)
    return replace(current, **kwargs)


# --------------------------------------------------------------------------- rclpy glue


def declare_all(node: Any) -> None:
    """Declare every parameter on ``node`` with a ParameterDescriptor (values from YAML override)."""
    from rcl_interfaces.msg import ParameterDescriptor

    for _, info, default in param_fields():
        desc = ParameterDescriptor(description=info.description, read_only=info.read_only, dynamic_typing=True)
        node.declare_parameter(info.ros_name, default, desc)


def read_all(node: Any) -> NodeParams:
    """Read the declared parameters back into a validated NodeParams (ParameterError on bad values)."""
    values = {info.ros_name: node.get_parameter(info.ros_name).value for _, info, _ in param_fields()}
    return from_values(values)
