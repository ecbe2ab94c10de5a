"""Adapter node parameters: declared with descriptors, read once, validated into a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from embodiment_adapters.safety.types import SafetyConfig
from embodiment_adapters.safety.watchdog import WatchdogConfig

# name: (default, description, (min, max) or None); read-only: they are fixed for the node's life.
_SPEC: dict[str, tuple[object, str, tuple[float, float] | None]] = {
    "robot": ("droid_franka_sim", "robot profile name (config/robots/<robot>.yaml) or path to a profile YAML", None),
    "chunk_topic": ("/dreamzero/action_chunk", "dreamzero_msgs/ActionChunk input topic", None),
    "joint_states_topic": ("/joint_states", "sensor_msgs/JointState input topic", None),
    "lead_time": (0.05, "s: steps due sooner than now + lead_time are dropped", (0.0, 2.0)),
    "lookahead": (1.0, "s: steps further ahead than this are dropped (robot stops soon without chunks)", (0.05, 10.0)),
    "min_points": (1, "fewer remaining points -> chunk rejected, previous command stands", (1, 100)),
    "blend_steps": (3, "points of a new chunk blended with the running plan", (0, 50)),
    "min_step_duration": (0.005, "s: smallest plausible step_duration", (0.0001, 1.0)),
    "max_step_duration": (1.0, "s: largest plausible step_duration", (0.001, 10.0)),
    "start_tolerance": (0.3, "rad: first point further than this from the measured state -> ramp/refuse", (0.0, 6.3)),
    "start_policy": ("ramp", "'ramp' (approach slowly) or 'refuse' when the first point is far", None),
    "ramp_velocity_scale": (0.25, "fraction of the velocity limits used for a ramp", (0.01, 1.0)),
    "velocity_scale": (1.0, "fraction of the profile velocity limits the adapter may use", (0.01, 1.0)),
    "acceleration_scale": (1.0, "fraction of the profile acceleration limits the adapter may use", (0.01, 1.0)),
    "position_margin": (
        0.02,
        "rad: targets are clamped this far inside the position limits (room for tracking overshoot)",
        (0.0, 0.5),
    ),
    "max_stamp_skew": (0.5, "s: chunks stamped further in the future are rejected", (0.0, 10.0)),
    "allow_nonzero_final_velocity": (False, "keep the last point's velocity (controller must allow it)", None),
    "chunk_timeout": (1.5, "s without a new chunk while moving -> hold", (0.01, 60.0)),
    "joint_state_timeout": (0.25, "s without joint_states -> hold and refuse chunks", (0.01, 10.0)),
    "watchdog_rate": (50.0, "Hz of the watchdog / ~/commanded timer", (1.0, 1000.0)),
    "status_rate": (2.0, "Hz of ~/status and /diagnostics", (0.1, 100.0)),
    "use_action_interface": (False, "use FollowJointTrajectory when control_msgs is importable", None),
}


@dataclass(frozen=True)
class AdapterParams:
    robot: str
    chunk_topic: str
    joint_states_topic: str
    safety: SafetyConfig
    watchdog: WatchdogConfig
    watchdog_rate: float
    status_rate: float
    use_action_interface: bool


def _descriptor(
    name: str, description: str, bounds: tuple[float, float] | None, default: object
) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, description=description, read_only=True)
    if bounds is not None and isinstance(default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]))]
    elif bounds is not None and isinstance(default, int) and not isinstance(default, bool):
        desc.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    return desc


def declare_and_read(node: Node) -> AdapterParams:
    """Declare every parameter and return the validated set; raises ValueError naming the bad parameter."""
    values: dict[str, object] = {}
    for name, (default, description, bounds) in _SPEC.items():
        node.declare_parameter(name, default, _descriptor(name, description, bounds, default))
        values[name] = node.get_parameter(name).value
    for name in ("robot", "chunk_topic", "joint_states_topic"):
        if not isinstance(values[name], str) or not values[name]:
            raise ValueError(f"parameter '{name}' must be a non-empty string, got {values[name]!r}")
    if values["start_policy"] not in ("ramp", "refuse"):
        raise ValueError(f"parameter 'start_policy' must be 'ramp' or 'refuse', got {values['start_policy']!r}")
    try:
        safety = SafetyConfig(
            lead_time=float(values["lead_time"]),
            lookahead=float(values["lookahead"]),  # type: ignore[arg-type]
            min_points=int(values["min_points"]),
            blend_steps=int(values["blend_steps"]),  # type: ignore[call-overload]
            min_step_duration=float(values["min_step_duration"]),  # type: ignore[arg-type]
            max_step_duration=float(values["max_step_duration"]),  # type: ignore[arg-type]
            start_tolerance=float(values["start_tolerance"]),
            start_policy=str(values["start_policy"]),  # type: ignore[arg-type]
            ramp_velocity_scale=float(values["ramp_velocity_scale"]),  # type: ignore[arg-type]
            velocity_scale=float(values["velocity_scale"]),  # type: ignore[arg-type]
            acceleration_scale=float(values["acceleration_scale"]),  # type: ignore[arg-type]
            position_margin=float(values["position_margin"]),
            max_stamp_skew=float(values["max_stamp_skew"]),  # type: ignore[arg-type]
            allow_nonzero_final_velocity=bool(values["allow_nonzero_final_velocity"]),
        )
        watchdog = WatchdogConfig(float(values["chunk_timeout"]), float(values["joint_state_timeout"]))  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"invalid adapter parameters: {exc}") from exc
    if safety.lookahead <= safety.lead_time:
        raise ValueError(f"parameter 'lookahead' ({safety.lookahead}) must exceed 'lead_time' ({safety.lead_time})")
    return AdapterParams(
        robot=str(values["robot"]),
        chunk_topic=str(values["chunk_topic"]),
        joint_states_topic=str(values["joint_states_topic"]),
        safety=safety,
        watchdog=watchdog,
        watchdog_rate=float(values["watchdog_rate"]),
        status_rate=float(values["status_rate"]),  # type: ignore[arg-type]
        use_action_interface=bool(values["use_action_interface"]),
    )
