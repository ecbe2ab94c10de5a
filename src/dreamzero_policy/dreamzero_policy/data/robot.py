"""Robot profiles in conversion mappings: ``robot: <profile>`` supplies joint names, order and units.

With ``robot:`` set (a profile name from ``config/robots/`` or a path to a profile YAML, loaded
with ``embodiment_adapters.profile.load_profile``), a state/action entry that gives neither
``names`` nor ``indices`` takes its columns from the profile. ``from_robot`` (default: the dataset
key) says which:

* a key the profile aliases as ``<key>.0 .. <key>.N-1`` (``joint_position`` on droid_franka):
  those joints in index order;
* a key aliased to a gripper (``gripper_position: gripper``): that gripper's joint;
* a controller name (its joints), a gripper name (its joint), or ``joints`` (every joint).

Column names: ``JointState`` carries joint names; ``ActionChunk``/``JointTrajectory`` columns
may instead use the profile's alias (``joint_position.3``) or gripper name (``gripper``); both are
accepted, the joint name first.

Units: messages the robot's own driver/controllers publish (``JointState``, ``JointTrajectory``,
``std_msgs`` arrays) are converted to the dataset's units: revolute joints from degrees when the
profile says ``units: deg``, and a gripper joint from its controller range ``open .. closed`` to
0 = open .. 1 = closed (this assumes the gripper joint reports in the controller's units, true for
the shipped profiles). ``ActionChunk`` columns are model outputs, already rad and normalised, and
are left alone. An explicit ``scale``/``offset`` replaces the profile's conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamzero_policy.core.errors import MappingError

ALL_JOINTS = "joints"


@dataclass(frozen=True)
class RobotColumns:
    """Columns of one dataset key resolved from a robot profile."""

    names: tuple[str, ...]  # joint names, in dataset column order
    alt_names: tuple[tuple[str, ...], ...]  # per column: other names accepted in a message
    wire_scale: tuple[float, ...]  # per column: driver units -> dataset units (v * scale + offset)
    wire_offset: tuple[float, ...]


def load_robot(name_or_path: str, base_dir: Path | None = None) -> Any:
    """The :class:`embodiment_adapters.profile.RobotProfile` named by a mapping's ``robot:``.

    A relative path (anything with a ``/`` or a ``.yaml`` suffix) is taken relative to the mapping
    file's folder ``base_dir``; a bare name is looked up in ``config/robots/``.
    """
    try:
        from embodiment_adapters.profile import ProfileError, load_profile
    except ImportError as exc:  # the data pipeline only needs embodiment_adapters for robot: mappings
        raise MappingError(f"robot '{name_or_path}': embodiment_adapters is not importable ({exc})") from exc
    target: str | Path = name_or_path
    if ("/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))) and base_dir is not None:
        path = Path(name_or_path)
        target = path if path.is_absolute() else base_dir / path
    try:
        return load_profile(target)
    except ProfileError as exc:
        raise MappingError(f"robot: {exc}") from exc


def _gripper_columns(grip: Any, alias: str | None) -> RobotColumns:
    span = float(grip.closed) - float(grip.open)
    if span == 0:
        raise MappingError(f"robot gripper '{grip.name}': open == closed, cannot normalise")
    alts = tuple(n for n in (grip.name, alias) if n and n != grip.joint)
    return RobotColumns((grip.joint,), (alts,), (1.0 / span,), (-float(grip.open) / span,))


def robot_columns(profile: Any, selector: str) -> RobotColumns:
    """Resolve ``selector`` (see the module docstring) against ``profile``; MappingError if unknown."""
    aliases = dict(profile.aliases)
    grippers = {g.name: g for g in profile.grippers}
    joints = {j.name: j for j in profile.joints}
    indexed = []
    while f"{selector}.{len(indexed)}" in aliases:
        indexed.append(aliases[f"{selector}.{len(indexed)}"])
    if indexed:
        names, alts = tuple(indexed), tuple((f"{selector}.{i}",) for i in range(len(indexed)))
    elif selector in aliases and aliases[selector] in grippers:
        return _gripper_columns(grippers[aliases[selector]], selector)
    elif selector in grippers:
        return _gripper_columns(grippers[selector], None)
    elif selector == ALL_JOINTS:
        names = profile.joint_names
        back = {v: k for k, v in aliases.items()}
        alts = tuple((back[n],) if n in back else () for n in names)
    else:
        ctrl = next((c for c in profile.controllers if c.name == selector), None)
        if ctrl is None:
            options = sorted({k.rsplit(".", 1)[0] for k in aliases} | set(grippers) | {ALL_JOINTS})
            options += sorted(c.name for c in profile.controllers)
            raise MappingError(
                f"robot '{profile.name}' has nothing called '{selector}' (from_robot / key); choose one of {options}"
            )
        names = tuple(ctrl.joints)
        back = {v: k for k, v in aliases.items()}
        alts = tuple((back[n],) if n in back else () for n in names)
    unknown = [n for n in names if n not in joints]
    if unknown:
        raise MappingError(f"robot '{profile.name}': '{selector}' refers to joints {unknown} it does not define")
    deg = profile.units == "deg"
    scale = tuple(math.pi / 180.0 if deg and joints[n].type == "revolute" else 1.0 for n in names)
    return RobotColumns(names, alts, scale, (0.0,) * len(names))
