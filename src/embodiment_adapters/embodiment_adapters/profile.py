"""Robot profiles: one YAML file per robot in ``config/robots/<name>.yaml``, loaded into frozen dataclasses.

A profile is data, not code: joint names and limits, wire units, controllers, grippers, which chunk columns
map to which joints, the accepted action spaces and (for end-effector spaces) the kinematic chains.
Units inside a profile are SI (rad, m, rad/s, rad/s²) whatever ``units`` says; ``units`` only tells the
adapter what the robot's driver speaks on the wire (``deg`` for e.g. SO-101). Gripper ``open``/``closed``
values are raw controller values.

Every validation error names the file and the field, e.g.
``config/robots/ur5e.yaml: joints[2].limits.velocity: must be > 0, got -1``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embodiment_adapters.safety.types import ActionSpace

CONFIG_ENV = "DREAMZERO_CONFIG_DIR"
_PROFILES_SUBDIR = "robots"


class ProfileError(ValueError):
    """A robot profile is missing, unreadable or invalid; the message names the file and field."""


@dataclass(frozen=True)
class JointLimits:
    """Position [lower, upper] (rad or m), velocity (rad/s or m/s) and acceleration (rad/s² or m/s²) limits."""

    lower: float
    upper: float
    velocity: float
    acceleration: float


@dataclass(frozen=True)
class JointSpec:
    name: str
    type: str  # "revolute" | "prismatic": only revolute joints are converted when units == "deg"
    limits: JointLimits


@dataclass(frozen=True)
class ControllerSpec:
    """A joint_trajectory_controller: topic ``<name>/joint_trajectory``, optional FollowJointTrajectory action."""

    name: str
    joints: tuple[str, ...]
    topic: str
    action: str | None = None


GRIPPER_INTERFACES = ("forward_command", "gripper_command", "parallel_gripper_command")


@dataclass(frozen=True)
class GripperSpec:
    """A gripper driven by a normalised chunk column (0 = open, 1 = closed).

    ``interface``: ``forward_command`` (std_msgs/Float64MultiArray on ``topic``), ``gripper_command``
    (control_msgs GripperCommand on ``action``) or ``parallel_gripper_command`` (ParallelGripperCommand).
    The controller value is ``open + x * (closed - open)``.
    """

    name: str  # chunk column, "gripper" or "<arm>/gripper"
    joint: str  # joint name used in the ~/commanded JointState
    interface: str
    topic: str | None
    action: str | None
    open: float
    closed: float
    epsilon: float  # normalised change below which no new command is sent
    max_effort: float

    def to_controller(self, normalised: float) -> float:
        x = min(1.0, max(0.0, normalised))
        return self.open + x * (self.closed - self.open)


KINEMATIC_CONVENTIONS = ("dh_standard", "dh_modified", "urdf")


@dataclass(frozen=True)
class LinkSpec:
    """One joint's geometry. DH: ``a, d, alpha, theta_offset``; urdf: ``xyz, rpy, axis`` of the joint origin."""

    a: float = 0.0
    d: float = 0.0
    alpha: float = 0.0
    theta_offset: float = 0.0
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class KinematicsSpec:
    """A serial chain from ``base_frame`` to ``tip_frame`` over ``joints`` (revolute only).

    ``prefix`` selects the chunk columns of this chain: ``""`` -> ``ee.x``; ``"left/"`` -> ``left/ee.x``.
    ``tool_xyz``/``tool_rpy`` give the fixed flange -> TCP transform (m, rad, REP-103 fixed-axis rpy).
    """

    prefix: str
    base_frame: str
    tip_frame: str
    convention: str
    joints: tuple[str, ...]
    links: tuple[LinkSpec, ...]
    tool_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tool_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class RobotProfile:
    name: str
    source: str  # file the profile came from (for messages)
    description: str
    simulated: bool  # simulated robots start enabled
    units: str  # "rad" | "deg" on the wire
    embodiments: tuple[str, ...]  # chunk.embodiment values accepted
    action_spaces: tuple[ActionSpace, ...]
    joints: tuple[JointSpec, ...]
    controllers: tuple[ControllerSpec, ...]
    grippers: tuple[GripperSpec, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()  # chunk column -> joint/gripper name
    ignored_dims: tuple[str, ...] = ()  # chunk columns the adapter deliberately does not execute
    kinematics: tuple[KinematicsSpec, ...] = ()
    delta_mode: str = "anchored"  # JOINT_POSITION_DELTA rows: "anchored" (each row vs the stamp) | "cumulative"
    allow_nonzero_final_velocity: bool = False
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({j.name: i for i, j in enumerate(self.joints)})

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    def joint_index(self, name: str) -> int:
        return self._index[name]

    def limits_arrays(self) -> tuple[Any, Any, Any, Any]:
        """(lower, upper, velocity, acceleration) as float arrays in joint order."""
        import numpy as np

        lim = [j.limits for j in self.joints]
        return (
            np.array([x.lower for x in lim]),
            np.array([x.upper for x in lim]),
            np.array([x.velocity for x in lim]),
            np.array([x.acceleration for x in lim]),
        )

    def resolve(self, column: str) -> str | None:
        """Joint or gripper name a chunk column drives, or None if unknown."""
        target = dict(self.aliases).get(column, column)
        if target in self._index or any(g.name == target for g in self.grippers):
            return target
        return None


# ---------------------------------------------------------------------------------------------- loading


def config_dir() -> Path:
    """The workspace ``config/`` folder: $DREAMZERO_CONFIG_DIR, the installed share dir, or the repo's."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            share = Path(get_package_share_directory("dreamzero_policy")) / "config"
            if (share / _PROFILES_SUBDIR).is_dir():
                return share
        except (PackageNotFoundError, ValueError, LookupError, OSError):
            pass
    except ImportError:
        pass
    # <repo>/src/embodiment_adapters/embodiment_adapters/profile.py -> <repo>/config
    return Path(__file__).resolve().parents[3] / "config"


def list_profiles() -> list[str]:
    """Names of the profiles in the config dir's ``robots/`` folder, sorted."""
    folder = config_dir() / _PROFILES_SUBDIR
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_profile(name_or_path: str | os.PathLike[str]) -> RobotProfile:
    """Load and validate a profile by name (``droid_franka``) or by path to a YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or os.sep in text):
        path = config_dir() / _PROFILES_SUBDIR / f"{text}.yaml"
        if not path.is_file():
            known = ", ".join(list_profiles()) or "none"
            raise ProfileError(f"unknown robot profile '{text}' (looked in {path.parent}; known: {known})")
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    from embodiment_adapters.profile_schema import parse_profile

    return parse_profile(raw, _display(path))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
