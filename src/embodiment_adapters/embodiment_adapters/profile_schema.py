"""Validating parser: raw YAML mapping -> :class:`RobotProfile`. Errors name ``<file>: <field>: <problem>``."""

from __future__ import annotations

import math
from typing import Any

from embodiment_adapters.profile import (
    GRIPPER_INTERFACES,
    KINEMATIC_CONVENTIONS,
    ControllerSpec,
    GripperSpec,
    JointLimits,
    JointSpec,
    KinematicsSpec,
    LinkSpec,
    ProfileError,
    RobotProfile,
)
from embodiment_adapters.safety.types import ActionSpace

_TOP_KEYS = {
    "name",
    "description",
    "simulated",
    "units",
    "embodiments",
    "action_spaces",
    "joints",
    "controllers",
    "grippers",
    "aliases",
    "ignored_dims",
    "kinematics",
    "delta_mode",
    "allow_nonzero_final_velocity",
}


class _Ctx:
    """Carries the file name so every error can name it."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.source}: {where}: {problem}")

    def mapping(self, value: Any, where: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {type(value).__name__}")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.fail(f"{where}.{unknown[0]}" if where else unknown[0], "unknown field")
        return value

    def get(self, m: dict[str, Any], key: str, where: str, default: Any = ...) -> Any:
        if key not in m:
            if default is ...:
                raise self.fail(_join(where, key), "missing required field")
            return default
        return m[key]

    def string(self, m: dict[str, Any], key: str, where: str, default: Any = ..., empty_ok: bool = False) -> Any:
        v = self.get(m, key, where, default)
        if v is None and default is None:
            return None
        if not isinstance(v, str) or (not v and not empty_ok):
            raise self.fail(_join(where, key), f"must be a non-empty string, got {v!r}")
        return v

    def number(self, m: dict[str, Any], key: str, where: str, default: Any = ..., positive: bool = False) -> float:
        v = self.get(m, key, where, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(_join(where, key), f"must be a finite number, got {v!r}")
        if positive and v <= 0:
            raise self.fail(_join(where, key), f"must be > 0, got {v}")
        return float(v)

    def boolean(self, m: dict[str, Any], key: str, where: str, default: Any = ...) -> bool:
        v = self.get(m, key, where, default)
        if not isinstance(v, bool):
            raise self.fail(_join(where, key), f"must be true or false, got {v!r}")
        return v

    def seq(self, m: dict[str, Any], key: str, where: str, default: Any = ..., non_empty: bool = True) -> list[Any]:
        v = self.get(m, key, where, default)
        if not isinstance(v, list) or (non_empty and not v):
            raise self.fail(_join(where, key), f"must be a{' non-empty' if non_empty else ''} list, got {v!r}")
        return v

    def vec3(self, m: dict[str, Any], key: str, where: str, default: Any) -> tuple[float, float, float]:
        v = self.get(m, key, where, default)
        ok = isinstance(v, (list, tuple)) and len(v) == 3
        if ok:
            ok = all(not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x) for x in v)
        if not ok:
            raise self.fail(_join(where, key), f"must be a list of 3 finite numbers, got {v!r}")
        return (float(v[0]), float(v[1]), float(v[2]))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _joint(ctx: _Ctx, raw: Any, where: str) -> JointSpec:
    m = ctx.mapping(raw, where, {"name", "type", "limits"})
    name = ctx.string(m, "name", where)
    jtype = ctx.string(m, "type", where, "revolute")
    if jtype not in ("revolute", "prismatic"):
        raise ctx.fail(f"{where}.type", f"must be 'revolute' or 'prismatic', got {jtype!r}")
    lw = f"{where}.limits"
    lim = ctx.mapping(ctx.get(m, "limits", where), lw, {"lower", "upper", "velocity", "acceleration"})
    lower, upper = ctx.number(lim, "lower", lw), ctx.number(lim, "upper", lw)
    if not lower < upper:
        raise ctx.fail(f"{lw}.upper", f"must be > lower ({lower}), got {upper}")
    limits = JointLimits(
        lower, upper, ctx.number(lim, "velocity", lw, positive=True), ctx.number(lim, "acceleration", lw, positive=True)
    )
    return JointSpec(name, jtype, limits)


def _gripper(ctx: _Ctx, raw: Any, where: str) -> GripperSpec:
    keys = {"name", "joint", "interface", "topic", "action", "open", "closed", "epsilon", "max_effort"}
    m = ctx.mapping(raw, where, keys)
    interface = ctx.string(m, "interface", where)
    if interface not in GRIPPER_INTERFACES:
        raise ctx.fail(f"{where}.interface", f"must be one of {list(GRIPPER_INTERFACES)}, got {interface!r}")
    topic, action = ctx.string(m, "topic", where, None), ctx.string(m, "action", where, None)
    if interface == "forward_command" and topic is None:
        raise ctx.fail(f"{where}.topic", "missing required field (interface forward_command)")
    if interface != "forward_command" and action is None:
        raise ctx.fail(f"{where}.action", f"missing required field (interface {interface})")
    open_v, closed_v = ctx.number(m, "open", where), ctx.number(m, "closed", where)
    if open_v == closed_v:
        raise ctx.fail(f"{where}.closed", f"must differ from open ({open_v})")
    eps = ctx.number(m, "epsilon", where, 0.02, positive=True)
    if eps >= 1.0:
        raise ctx.fail(f"{where}.epsilon", f"must be < 1 (normalised units), got {eps}")
    name = ctx.string(m, "name", where)
    return GripperSpec(
        name=name,
        joint=ctx.string(m, "joint", where, name),
        interface=interface,
        topic=topic,
        action=action,
        open=open_v,
        closed=closed_v,
        epsilon=eps,
        max_effort=ctx.number(m, "max_effort", where, 0.0),
    )


def _kinematics(ctx: _Ctx, raw: Any, where: str, joints: dict[str, JointSpec]) -> KinematicsSpec:
    keys = {"prefix", "base_frame", "tip_frame", "convention", "joints", "links", "tool"}
    m = ctx.mapping(raw, where, keys)
    convention = ctx.string(m, "convention", where)
    if convention not in KINEMATIC_CONVENTIONS:
        raise ctx.fail(f"{where}.convention", f"must be one of {list(KINEMATIC_CONVENTIONS)}, got {convention!r}")
    chain = ctx.seq(m, "joints", where)
    for i, j in enumerate(chain):
        if j not in joints:
            raise ctx.fail(f"{where}.joints[{i}]", f"unknown joint {j!r}")
        if joints[j].type != "revolute":
            raise ctx.fail(f"{where}.joints[{i}]", f"only revolute joints are supported, {j!r} is {joints[j].type}")
    links_raw = ctx.seq(m, "links", where)
    if len(links_raw) != len(chain):
        raise ctx.fail(f"{where}.links", f"must have one entry per joint ({len(chain)}), got {len(links_raw)}")
    links = []
    for i, lr in enumerate(links_raw):
        lw = f"{where}.links[{i}]"
        if convention == "urdf":
            lm = ctx.mapping(lr, lw, {"xyz", "rpy", "axis"})
            axis = ctx.vec3(lm, "axis", lw, [0.0, 0.0, 1.0])
            if math.hypot(*axis) < 1e-9:
                raise ctx.fail(f"{lw}.axis", "must be a non-zero vector")
            xyz, rpy = ctx.vec3(lm, "xyz", lw, [0, 0, 0]), ctx.vec3(lm, "rpy", lw, [0, 0, 0])
            links.append(LinkSpec(xyz=xyz, rpy=rpy, axis=axis))
        else:
            lm = ctx.mapping(lr, lw, {"a", "d", "alpha", "theta_offset"})
            links.append(
                LinkSpec(
                    a=ctx.number(lm, "a", lw, 0.0),
                    d=ctx.number(lm, "d", lw, 0.0),
                    alpha=ctx.number(lm, "alpha", lw, 0.0),
                    theta_offset=ctx.number(lm, "theta_offset", lw, 0.0),
                )
            )
    tool = ctx.mapping(ctx.get(m, "tool", where, {}), f"{where}.tool", {"xyz", "rpy"})
    prefix = ctx.string(m, "prefix", where, "", empty_ok=True)
    return KinematicsSpec(
        prefix=prefix,
        base_frame=ctx.string(m, "base_frame", where),
        tip_frame=ctx.string(m, "tip_frame", where),
        convention=convention,
        joints=tuple(chain),
        links=tuple(links),
        tool_xyz=ctx.vec3(tool, "xyz", f"{where}.tool", [0, 0, 0]),
        tool_rpy=ctx.vec3(tool, "rpy", f"{where}.tool", [0, 0, 0]),
    )


def parse_profile(raw: Any, source: str) -> RobotProfile:
    """Validate ``raw`` (parsed YAML) and build the profile; raises :class:`ProfileError` naming the field."""
    ctx = _Ctx(source)
    if not isinstance(raw, dict):
        raise ctx.fail("(top level)", f"must be a mapping, got {type(raw).__name__}")
    m = ctx.mapping(raw, "", _TOP_KEYS)
    name = ctx.string(m, "name", "")
    units = ctx.string(m, "units", "", "rad")
    if units not in ("rad", "deg"):
        raise ctx.fail("units", f"must be 'rad' or 'deg', got {units!r}")

    joints = [_joint(ctx, j, f"joints[{i}]") for i, j in enumerate(ctx.seq(m, "joints", ""))]
    by_name: dict[str, JointSpec] = {}
    for i, j in enumerate(joints):
        if j.name in by_name:
            raise ctx.fail(f"joints[{i}].name", f"duplicate joint name {j.name!r}")
        by_name[j.name] = j

    controllers, owner = [], {}
    for i, cr in enumerate(ctx.seq(m, "controllers", "")):
        w = f"controllers[{i}]"
        cm = ctx.mapping(cr, w, {"name", "joints", "topic", "action"})
        cname = ctx.string(cm, "name", w)
        cj = ctx.seq(cm, "joints", w)
        for k, j in enumerate(cj):
            if j not in by_name:
                raise ctx.fail(f"{w}.joints[{k}]", f"unknown joint {j!r}")
            if j in owner:
                raise ctx.fail(f"{w}.joints[{k}]", f"joint {j!r} already belongs to controller {owner[j]!r}")
            owner[j] = cname
        topic = ctx.string(cm, "topic", w, f"/{cname}/joint_trajectory")
        controllers.append(ControllerSpec(cname, tuple(cj), topic, ctx.string(cm, "action", w, None)))
    missing = [j.name for j in joints if j.name not in owner]
    if missing:
        raise ctx.fail("controllers", f"joint {missing[0]!r} is not driven by any controller")

    grippers = [_gripper(ctx, g, f"grippers[{i}]") for i, g in enumerate(ctx.seq(m, "grippers", "", [], False))]
    names = set(by_name)
    for i, g in enumerate(grippers):
        if g.name in names:
            raise ctx.fail(f"grippers[{i}].name", f"duplicate name {g.name!r}")
        names.add(g.name)

    aliases_raw = ctx.mapping(ctx.get(m, "aliases", "", {}), "aliases")
    for col, target in aliases_raw.items():
        if not isinstance(target, str) or target not in names:
            raise ctx.fail(f"aliases.{col}", f"must name a joint or gripper, got {target!r}")
    ignored = ctx.seq(m, "ignored_dims", "", [], False)
    for i, col in enumerate(ignored):
        if not isinstance(col, str) or col in names or col in aliases_raw:
            raise ctx.fail(f"ignored_dims[{i}]", f"must be a column name that is not executed, got {col!r}")

    spaces = []
    for i, s in enumerate(ctx.seq(m, "action_spaces", "")):
        try:
            spaces.append(ActionSpace.from_name(str(s)))
        except KeyError:
            known = [a.name.lower() for a in ActionSpace]
            raise ctx.fail(f"action_spaces[{i}]", f"must be one of {known}, got {s!r}") from None
    kin_raw = ctx.seq(m, "kinematics", "", [], False)
    kin = tuple(_kinematics(ctx, k, f"kinematics[{i}]", by_name) for i, k in enumerate(kin_raw))
    if any(s in (ActionSpace.EEF_POSE, ActionSpace.EEF_POSE_DELTA) for s in spaces) and not kin:
        raise ctx.fail("kinematics", "required for end-effector action spaces (eef_pose, eef_pose_delta)")
    if len({k.prefix for k in kin}) != len(kin):
        raise ctx.fail("kinematics", "chain prefixes must be unique")

    delta_mode = ctx.string(m, "delta_mode", "", "anchored")
    if delta_mode not in ("anchored", "cumulative"):
        raise ctx.fail("delta_mode", f"must be 'anchored' or 'cumulative', got {delta_mode!r}")
    embodiments = ctx.seq(m, "embodiments", "", [name])
    if not all(isinstance(e, str) and e for e in embodiments):
        raise ctx.fail("embodiments", f"must be a list of non-empty strings, got {embodiments!r}")
    return RobotProfile(
        name=name,
        source=source,
        description=ctx.string(m, "description", "", "", empty_ok=True),
        simulated=ctx.boolean(m, "simulated", "", False),
        units=units,
        embodiments=tuple(embodiments),
        action_spaces=tuple(spaces),
        joints=tuple(joints),
        controllers=tuple(controllers),
        grippers=tuple(grippers),
        aliases=tuple((str(k), str(v)) for k, v in aliases_raw.items()),
        ignored_dims=tuple(ignored),
        kinematics=kin,
        delta_mode=delta_mode,
        allow_nonzero_final_velocity=ctx.boolean(m, "allow_nonzero_final_velocity", "", False),
    )
