"""Per-embodiment I/O spec: what the model sees and what it returns, loaded from YAML.

A spec (``config/embodiments/<name>.yaml``) says which cameras feed the model and how they are
tiled into the model's mosaic, which joints form the state vector, what the action columns mean,
the q01/q99 normalisation statistics, the prompt template and the frame schedule.

Every validation error is an :class:`IoSpecError` whose message starts with the dotted path of the
offending field (e.g. ``state.joints``), so a bad YAML file is fixed from the message alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dreamzero_policy.core.errors import IoSpecError

# ActionChunk.action_space constants, by their YAML names.
ACTION_SPACES: dict[str, int] = {
    "joint_position": 0,
    "joint_position_delta": 1,
    "joint_velocity": 2,
    "eef_pose": 3,
    "eef_pose_delta": 4,
}


@dataclass(frozen=True)
class CameraSpec:
    """One camera. ``key`` is the model's view name (e.g. ``exterior_image_1_left``);
    ``request_key`` the key of its image in a websocket request (RoboArena DROID numbers the
    exterior views from 0: ``observation/exterior_image_0_left`` is the model's ``exterior_image_1_left``)."""

    name: str
    key: str
    topic: str
    compressed: bool = False
    required: bool = True
    request_key: str = ""


@dataclass(frozen=True)
class NormStats:
    """q01/q99 statistics of one vector (state or action), float64 arrays of equal length."""

    q01: np.ndarray
    q99: np.ndarray


@dataclass(frozen=True)
class IoSpec:
    """A validated embodiment I/O spec. Sizes are (height, width) in pixels; times in seconds."""

    name: str
    embodiment: str
    embodiment_tag: str
    prompt_template: str
    fps: float
    action_horizon: int
    execute_horizon: int
    frames_first_call: int
    frames_per_call: int
    frame_interval_s: float
    cameras: tuple[CameraSpec, ...]
    request_size: tuple[int, int]
    crop_fraction: float
    mosaic: tuple[tuple[str | None, ...], ...]
    state_joints: tuple[str, ...]
    gripper_joint: str | None
    gripper_open: float
    gripper_closed: float
    action_space: str
    action_names: tuple[str, ...]
    relative_action: tuple[bool, ...]
    state_stats: NormStats | None
    action_stats: NormStats | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dim(self) -> int:
        return len(self.state_joints) + (1 if self.gripper_joint else 0)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def action_space_id(self) -> int:
        return ACTION_SPACES[self.action_space]

    @property
    def step_duration_s(self) -> float:
        return 1.0 / self.fps

    def camera(self, name: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise IoSpecError(f"cameras: no camera named {name!r} (have {[c.name for c in self.cameras]})")

    def format_prompt(self, instruction: str) -> str:
        """The model prompt for a user instruction (template field ``{instruction}``)."""
        text = instruction.strip()
        if not text:
            raise IoSpecError("instruction: must not be empty")
        return self.prompt_template.replace("{instruction}", text)


# --------------------------------------------------------------------------- field readers


def _req(d: dict[str, Any], key: str, path: str) -> Any:
    if not isinstance(d, dict):
        raise IoSpecError(f"{path}: expected a mapping, got {type(d).__name__}")
    if key not in d:
        raise IoSpecError(f"{path}.{key}: missing" if path else f"{key}: missing")
    return d[key]


def _str(v: Any, path: str, allow_empty: bool = False) -> str:
    if not isinstance(v, str) or (not allow_empty and not v.strip()):
        raise IoSpecError(f"{path}: expected a non-empty string, got {v!r}")
    return v


def _pos_int(v: Any, path: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise IoSpecError(f"{path}: expected a positive integer, got {v!r}")
    return v


def _pos_float(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise IoSpecError(f"{path}: expected a positive finite number, got {v!r}")
    return float(v)


def _size(v: Any, path: str) -> tuple[int, int]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise IoSpecError(f"{path}: expected [height, width], got {v!r}")
    return (_pos_int(v[0], f"{path}[0]"), _pos_int(v[1], f"{path}[1]"))


def _names(v: Any, path: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise IoSpecError(f"{path}: expected a non-empty list of names, got {v!r}")
    out = tuple(_str(x, f"{path}[{i}]") for i, x in enumerate(v))
    dupes = sorted({x for x in out if out.count(x) > 1})
    if dupes:
        raise IoSpecError(f"{path}: duplicate names {dupes}")
    return out


def _vector(v: Any, n: int, path: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) != n:
        raise IoSpecError(f"{path}: expected a list of {n} numbers, got {v!r}")
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise IoSpecError(f"{path}: not numeric ({exc})") from exc
    if not np.all(np.isfinite(arr)):
        raise IoSpecError(f"{path}: contains NaN or inf")
    return arr


def _stats(v: Any, n: int, path: str) -> NormStats:
    q01 = _vector(_req(v, "q01", path), n, f"{path}.q01")
    q99 = _vector(_req(v, "q99", path), n, f"{path}.q99")
    bad = np.nonzero(q99 < q01)[0]
    if bad.size:
        raise IoSpecError(f"{path}: q99 < q01 at indices {bad.tolist()}")
    return NormStats(q01=q01, q99=q99)


def _cameras(v: Any) -> tuple[CameraSpec, ...]:
    if not isinstance(v, list) or not v:
        raise IoSpecError("cameras: expected a non-empty list")
    cams = []
    for i, c in enumerate(v):
        p = f"cameras[{i}]"
        compressed = c.get("compressed", False) if isinstance(c, dict) else None
        required = c.get("required", True) if isinstance(c, dict) else None
        if not isinstance(compressed, bool):
            raise IoSpecError(f"{p}.compressed: expected true/false, got {compressed!r}")
        if not isinstance(required, bool):
            raise IoSpecError(f"{p}.required: expected true/false, got {required!r}")
        cams.append(
            CameraSpec(
                name=_str(_req(c, "name", p), f"{p}.name"),
                key=_str(_req(c, "key", p), f"{p}.key"),
                topic=_str(_req(c, "topic", p), f"{p}.topic"),
                compressed=compressed,
                required=required,
                request_key=_str(c.get("request_key", f"observation/{c['key']}"), f"{p}.request_key"),
            )
        )
    for attr in ("name", "key", "topic", "request_key"):
        values = [getattr(c, attr) for c in cams]
        dupes = sorted({x for x in values if values.count(x) > 1})
        if dupes:
            raise IoSpecError(f"cameras: duplicate {attr} {dupes}")
    return tuple(cams)


def _mosaic(v: Any, cameras: tuple[CameraSpec, ...]) -> tuple[tuple[str | None, ...], ...]:
    """A grid of camera names (null = black cell); a camera may span a rectangle of cells."""
    if not isinstance(v, list) or not v or not all(isinstance(r, list) and r for r in v):
        raise IoSpecError("image.mosaic: expected a non-empty list of non-empty rows")
    ncols = len(v[0])
    if any(len(r) != ncols for r in v):
        raise IoSpecError("image.mosaic: all rows must have the same number of cells")
    names = {c.name for c in cameras}
    for r, row in enumerate(v):
        for c, cell in enumerate(row):
            if cell is not None and cell not in names:
                raise IoSpecError(f"image.mosaic[{r}][{c}]: unknown camera {cell!r} (have {sorted(names)})")
    grid = tuple(tuple(row) for row in v)
    for name in names:
        cells = [(r, c) for r, row in enumerate(grid) for c, x in enumerate(row) if x == name]
        if not cells:
            raise IoSpecError(f"image.mosaic: camera {name!r} is not placed in the mosaic")
        rows = [r for r, _ in cells]
        cols = [c for _, c in cells]
        area = (max(rows) - min(rows) + 1) * (max(cols) - min(cols) + 1)
        if area != len(cells):
            raise IoSpecError(f"image.mosaic: camera {name!r} does not occupy a rectangle of cells")
    return grid


def parse_io_spec(data: dict[str, Any], stats_override: dict[str, NormStats] | None = None) -> IoSpec:
    """Validate a spec mapping (the parsed YAML). ``stats_override`` supplies state/action stats
    (e.g. from a checkpoint's metadata.json) and wins over inline ones."""
    if not isinstance(data, dict):
        raise IoSpecError(f"spec: expected a mapping at top level, got {type(data).__name__}")
    control = _req(data, "control", "")
    video = _req(data, "video", "")
    image = _req(data, "image", "")
    state = _req(data, "state", "")
    action = _req(data, "action", "")

    cameras = _cameras(_req(data, "cameras", ""))
    fps = _pos_float(_req(control, "fps", "control"), "control.fps")
    horizon = _pos_int(_req(control, "action_horizon", "control"), "control.action_horizon")
    execute = _pos_int(_req(control, "execute_horizon", "control"), "control.execute_horizon")
    if execute > horizon:
        raise IoSpecError(f"control.execute_horizon: {execute} exceeds control.action_horizon {horizon}")

    crop = image.get("crop_fraction", 1.0) if isinstance(image, dict) else None
    if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0.0 < crop <= 1.0:
        raise IoSpecError(f"image.crop_fraction: expected a number in (0, 1], got {crop!r}")

    joints = _names(_req(state, "joints", "state"), "state.joints")
    gripper = state.get("gripper")
    g_open, g_closed = 0.0, 1.0
    if gripper is not None:
        gname = _str(_req(gripper, "joint", "state.gripper"), "state.gripper.joint")
        if gname in joints:
            raise IoSpecError(f"state.gripper.joint: {gname!r} is also listed in state.joints")
        g_open = float(_vector([gripper.get("open", 0.0)], 1, "state.gripper.open")[0])
        g_closed = float(_vector([gripper.get("closed", 1.0)], 1, "state.gripper.closed")[0])
        if g_open == g_closed:
            raise IoSpecError("state.gripper: open and closed must differ")
        gripper = gname

    space = _str(_req(action, "space", "action"), "action.space")
    if space not in ACTION_SPACES:
        raise IoSpecError(f"action.space: {space!r} is not one of {sorted(ACTION_SPACES)}")
    names = _names(_req(action, "names", "action"), "action.names")
    rel = action.get("relative", [])
    if not isinstance(rel, list) or any(n not in names for n in rel):
        raise IoSpecError(f"action.relative: expected a list of names from action.names, got {rel!r}")
    state_names = (*joints, *([gripper, "gripper"] if gripper else []))
    missing = [n for n in rel if n not in state_names]
    if missing:
        raise IoSpecError(f"action.relative: {missing} have no matching state value to add back")
    relative = tuple(n in rel for n in names)

    state_dim = len(joints) + (1 if gripper else 0)
    norm = data.get("normalization") or {}
    stats = dict(stats_override or {})
    state_stats = stats.get("state") or (
        _stats(norm["state"], state_dim, "normalization.state") if "state" in norm else None
    )
    action_stats = stats.get("action") or (
        _stats(norm["action"], len(names), "normalization.action") if "action" in norm else None
    )
    if state_stats is not None and state_stats.q01.shape != (state_dim,):
        raise IoSpecError(f"normalization.state: expected {state_dim} values, got {state_stats.q01.shape}")
    if action_stats is not None and action_stats.q01.shape != (len(names),):
        raise IoSpecError(f"normalization.action: expected {len(names)} values, got {action_stats.q01.shape}")

    first = _pos_int(_req(video, "frames_first_call", "video"), "video.frames_first_call")
    per = _pos_int(_req(video, "frames_per_call", "video"), "video.frames_per_call")
    template = _str(data.get("prompt_template", "{instruction}"), "prompt_template")
    if "{instruction}" not in template:
        raise IoSpecError("prompt_template: must contain '{instruction}'")

    return IoSpec(
        name=_str(_req(data, "name", ""), "name"),
        embodiment=_str(_req(data, "embodiment", ""), "embodiment"),
        embodiment_tag=_str(data.get("embodiment_tag", data["name"]), "embodiment_tag"),
        prompt_template=template,
        fps=fps,
        action_horizon=horizon,
        execute_horizon=execute,
        frames_first_call=first,
        frames_per_call=per,
        frame_interval_s=_pos_float(_req(video, "frame_interval_s", "video"), "video.frame_interval_s"),
        cameras=cameras,
        request_size=_size(_req(image, "request_size", "image"), "image.request_size"),
        crop_fraction=float(crop),
        mosaic=_mosaic(_req(image, "mosaic", "image"), cameras),
        state_joints=joints,
        gripper_joint=gripper,
        gripper_open=g_open,
        gripper_closed=g_closed,
        action_space=space,
        action_names=names,
        relative_action=relative,
        state_stats=state_stats,
        action_stats=action_stats,
        extra={**dict(data.get("extra") or {}), "normalization": dict(norm)},
    )


def load_io_spec(
    path_or_name: str | Path, config_dir: str | Path | None = None, stats_override: dict[str, NormStats] | None = None
) -> IoSpec:
    """Load ``<config_dir>/<name>.yaml`` (or a path to a YAML file) and validate it."""
    path = Path(path_or_name)
    if path.suffix not in (".yaml", ".yml"):
        base = Path(config_dir) if config_dir is not None else default_config_dir()
        path = base / f"{path_or_name}.yaml"
    if not path.is_file():
        raise IoSpecError(f"spec: file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise IoSpecError(f"spec: {path} is not valid YAML: {exc}") from exc
    try:
        return parse_io_spec(data, stats_override)
    except IoSpecError as exc:
        raise IoSpecError(f"{path.name}: {exc}") from exc


def default_config_dir() -> Path:
    """``config/embodiments`` of the source tree, or of the installed share folder."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "config" / "embodiments"
        if cand.is_dir():
            return cand
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("dreamzero_policy")) / "config" / "embodiments"
    except Exception as exc:  # any failure means "not installed"
        raise IoSpecError(f"spec: cannot locate config/embodiments ({exc})") from exc


def stats_from_metadata(
    path: str | Path, embodiment_tag: str, state_keys: list[str], action_keys: list[str]
) -> dict[str, NormStats]:
    """q01/q99 from a DreamZero checkpoint's ``experiment_cfg/metadata.json``.

    Layout: ``{<tag>: {"statistics": {"state"|"action": {<key>: {"q01": [...], "q99": [...]}}}}}``;
    the per-key vectors are concatenated in the order of ``state_keys`` / ``action_keys``.
    Data only: the file is parsed as JSON, nothing in it is executed.
    """
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IoSpecError(f"metadata: cannot read {path}: {exc}") from exc
    if embodiment_tag not in meta:
        raise IoSpecError(f"metadata: no entry for embodiment_tag {embodiment_tag!r} (have {sorted(meta)})")
    stats = _req(meta[embodiment_tag], "statistics", f"metadata.{embodiment_tag}")
    out: dict[str, NormStats] = {}
    for group, keys in (("state", state_keys), ("action", action_keys)):
        table = _req(stats, group, f"metadata.{embodiment_tag}.statistics")
        q01, q99 = [], []
        for k in keys:
            entry = _req(table, k, f"metadata.{embodiment_tag}.statistics.{group}")
            q01 += list(_req(entry, "q01", f"statistics.{group}.{k}"))
            q99 += list(_req(entry, "q99", f"statistics.{group}.{k}"))
        out[group] = _stats({"q01": q01, "q99": q99}, len(q01), f"metadata.statistics.{group}")
    return out
