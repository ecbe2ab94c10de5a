"""Conversion mappings: which bag topics become which dataset keys (``config/datasets/<name>.yaml``).

A mapping is data, never code: it is parsed with ``yaml.safe_load`` into frozen dataclasses that
validate themselves, so a typo fails before any bag is read. Schema (all times in seconds)::

    name: droid_franka                 # dataset/mapping name
    robot: droid_franka                # optional robot profile (config/robots/): joint names/units, see robot.py
    embodiment_tag: oxe_droid          # written to meta/embodiment.json
    robot_type: franka                 # written to meta/info.json
    fps: 15                            # dataset frame rate (the resampling grid)
    align_tolerance_s: 0.0334          # max |grid time - sample stamp|; default half a period
    action_horizon: 24                 # chunk length used for relative-action statistics
    min_episode_frames: 2
    video:                             # video key -> camera topic (Image or CompressedImage)
      wrist_image_left: {topic: /wrist/image_raw/compressed, width: 320, height: 180}
    state:                             # state key -> topic + joint names (or array indices)
      joint_position: {topic: /joint_states, names: [j1, j2], field: position}
      gripper_position: {topic: /joint_states}           # names from the robot profile (robot.py)
    action:                            # action key -> topic, or the next state of a state key
      joint_position: {topic: /dreamzero/action_chunk, names: [j1, j2]}
      gripper_position: {next_state: gripper_position}
    relative_action: {joint_position: joint_position}   # action key -> state key (or a list)
    episodes: {split: bag}             # bag | instruction_topic | run_task (+ topic, end_values)
    instruction: {text: "pick up the cup"}              # or {topic: /instruction} or {file: task.txt}
    video_encoding: {codec: libx264, crf: 18, preset: ultrafast, tune: zerolatency, gop: 8, threads: auto}
    receive_time_topics: [/joint_states]  # optional: topics whose publisher leaves header stamps at 0

Sample times are header stamps; messages without a header (``std_msgs`` arrays, ``String``) and
the topics in ``receive_time_topics`` use the bag's receive time. ``scale``/``offset`` map a value
linearly (``v * scale + offset``), e.g. to normalise a gripper to 0 = open, 1 = closed.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dreamzero_policy.core.errors import MappingError
from dreamzero_policy.data.robot import load_robot, robot_columns

JOINT_FIELDS = ("position", "velocity", "effort")
EPISODE_SPLITS = ("bag", "instruction_topic", "run_task")


def _check_keys(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise MappingError(f"{where}: unknown field '{key}'{hint}; allowed: {sorted(allowed)}")


def _as_dict(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MappingError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class StreamSpec:
    """One low-dimensional dataset key read from a topic.

    ``names`` select joints by name (JointState, JointTrajectory, ActionChunk); ``indices`` select
    elements of array messages (Float64MultiArray); a scalar ``std_msgs/Float64`` needs neither.
    ``time_offset_s`` shifts the query time; ``None`` means the default for the message kind.
    """

    key: str
    topic: str
    names: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    field: str = "position"
    scale: float = 1.0
    offset: float = 0.0
    time_offset_s: float | None = None
    alt_names: tuple[tuple[str, ...], ...] = ()  # per name: other column names accepted (robot aliases)
    wire_scale: tuple[float, ...] = ()  # per column, for driver-published messages (robot units)
    wire_offset: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.topic.startswith("/"):
            raise MappingError(f"'{self.key}': topic '{self.topic}' must be absolute (start with '/')")
        if self.names and self.indices:
            raise MappingError(f"'{self.key}': give either names or indices, not both")
        if len(set(self.names)) != len(self.names):
            raise MappingError(f"'{self.key}': duplicate joint names {list(self.names)}")
        if self.field not in JOINT_FIELDS:
            raise MappingError(f"'{self.key}': field must be one of {JOINT_FIELDS}, got '{self.field}'")
        for what, per in (
            ("alt_names", self.alt_names),
            ("wire_scale", self.wire_scale),
            ("wire_offset", self.wire_offset),
        ):
            if per and len(per) != len(self.names):
                raise MappingError(f"'{self.key}': {what} needs one entry per name")

    @property
    def dim(self) -> int | None:
        """Number of values, or None when only the message can tell (a scalar is 1)."""
        return len(self.names) or len(self.indices) or None


@dataclass(frozen=True)
class ActionSpec:
    """An action key: read from a topic (``stream``) or the next frame's value of ``next_state``."""

    key: str
    stream: StreamSpec | None = None
    next_state: str | None = None


@dataclass(frozen=True)
class VideoSpec:
    key: str
    topic: str
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if (self.width is None) != (self.height is None):
            raise MappingError(f"video '{self.key}': give both width and height or neither")
        for v in (self.width, self.height):
            if v is not None and (v <= 0 or v % 2):
                raise MappingError(f"video '{self.key}': width/height must be positive and even (H.264 4:2:0)")


@dataclass(frozen=True)
class EpisodeSpec:
    split: str = "bag"
    topic: str | None = None
    end_values: tuple[str, ...] = ("", "idle", "reset", "stop")

    def __post_init__(self) -> None:
        if self.split not in EPISODE_SPLITS:
            raise MappingError(f"episodes.split must be one of {EPISODE_SPLITS}, got '{self.split}'")
        if self.split != "bag" and not self.topic:
            raise MappingError(f"episodes.split '{self.split}' needs episodes.topic")


@dataclass(frozen=True)
class InstructionSpec:
    text: str | None = None
    topic: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.text, self.topic, self.file)) > 1:
            raise MappingError("instruction: give only one of text, topic, file")


@dataclass(frozen=True)
class VideoEncoding:
    """H.264 settings. The defaults favour conversion speed at near-lossless quality (CRF 18):
    ``ultrafast`` + ``zerolatency`` (no B-frames, no lookahead) costs ~3x less CPU than ``veryfast``
    for ~1.5x the bytes; a GOP of 8 frames keeps seeking cheap for clip-sampling loaders."""

    codec: str = "libx264"
    crf: int = 18  # 0 = lossless .. 51; ~18 is visually lossless
    preset: str = "ultrafast"
    gop: int = 8  # keyframe interval in frames
    pix_fmt: str = "yuv420p"
    tune: str | None = "zerolatency"
    threads: int | str = "auto"  # codec threads per camera: a number (0 = the codec decides) or "auto"

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise MappingError(f"video_encoding.crf must be in [0, 51], got {self.crf}")
        if self.gop < 1:
            raise MappingError(f"video_encoding.gop must be >= 1, got {self.gop}")
        t = self.threads
        if t != "auto" and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
            raise MappingError(
                f"video_encoding.threads must be 'auto' or a number >= 0 (0 = the codec decides), got {t!r}"
            )

    def for_cameras(self, cameras: int, cores: int | None = None) -> VideoEncoding:
        """These settings with ``threads: auto`` made a number for ``cameras`` encoding at once.

        Every camera has its own encoder thread, so one thread each uses the cores of a small
        machine; the cores beyond the bag's reading thread are shared out once there are more of
        them than cameras (x264 then slices each frame over its threads).
        """
        if self.threads != "auto":
            return self
        cores = cores or os.cpu_count() or 1
        return replace(self, threads=max(1, (cores - 1) // max(1, cameras)))


@dataclass(frozen=True)
class Mapping:
    name: str
    fps: float
    video: tuple[VideoSpec, ...]
    state: tuple[StreamSpec, ...]
    action: tuple[ActionSpec, ...]
    embodiment_tag: str = "new_embodiment"
    robot_type: str = "unknown"
    align_tolerance_s: float | None = None
    action_horizon: int = 24
    min_episode_frames: int = 2
    relative_action: dict[str, str] = field(default_factory=dict)
    episodes: EpisodeSpec = EpisodeSpec()
    instruction: InstructionSpec = InstructionSpec()
    video_encoding: VideoEncoding = VideoEncoding()
    robot: str | None = None  # robot profile the joint columns came from
    # Topics whose publishers leave header stamps unset (all zero): timed by the recorder's receive time.
    receive_time_topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise MappingError(f"fps must be positive, got {self.fps}")
        if not self.video:
            raise MappingError("a mapping needs at least one video key")
        if self.action_horizon < 1 or self.min_episode_frames < 1:
            raise MappingError("action_horizon and min_episode_frames must be >= 1")
        if self.align_tolerance_s is not None and not self.align_tolerance_s > 0:
            raise MappingError("align_tolerance_s must be positive")
        for group in (self.video, self.state, self.action):
            keys = [s.key for s in group]
            if len(set(keys)) != len(keys):
                raise MappingError(f"duplicate keys in {keys}")
        state_keys = {s.key for s in self.state}
        action_keys = {a.key for a in self.action}
        for a in self.action:
            if a.next_state is not None and a.next_state not in state_keys:
                raise MappingError(
                    f"action '{a.key}': next_state '{a.next_state}' is not a state key {sorted(state_keys)}"
                )
        for akey, skey in self.relative_action.items():
            if akey not in action_keys or skey not in state_keys:
                raise MappingError(f"relative_action {akey} -> {skey}: unknown action or state key")
        used = {v.topic for v in self.video} | {s.topic for s in self.state}
        used |= {a.stream.topic for a in self.action if a.stream is not None}
        for topic in self.receive_time_topics:
            if topic not in used:
                raise MappingError(f"receive_time_topics: {topic} is not the topic of any key (topics: {sorted(used)})")

    @property
    def tolerance_s(self) -> float:
        return self.align_tolerance_s if self.align_tolerance_s is not None else 0.5 / self.fps

    @property
    def period_ns(self) -> float:
        return 1e9 / self.fps


def _stream(key: str, data: dict[str, Any], robot: Any = None) -> StreamSpec:
    fields = {"topic", "names", "indices", "field", "scale", "offset", "time_offset_s", "from_robot"}
    _check_keys(key, data, fields)
    if "topic" not in data:
        raise MappingError(f"'{key}': missing 'topic'")
    names = tuple(str(n) for n in data.get("names") or ())
    indices = tuple(int(i) for i in data.get("indices") or ())
    extra: dict[str, Any] = {}
    if "from_robot" in data and (robot is None or names or indices):
        raise MappingError(f"'{key}': from_robot needs a top-level 'robot:' and no names/indices")
    if robot is not None and not names and not indices:
        cols = robot_columns(robot, str(data.get("from_robot", key)))
        names, extra["alt_names"] = cols.names, cols.alt_names
        if "scale" not in data and "offset" not in data:  # explicit scale/offset replace the profile's units
            extra["wire_scale"], extra["wire_offset"] = cols.wire_scale, cols.wire_offset
    return StreamSpec(
        key=key,
        topic=str(data["topic"]),
        names=names,
        indices=indices,
        field=str(data.get("field", "position")),
        scale=float(data.get("scale", 1.0)),
        offset=float(data.get("offset", 0.0)),
        time_offset_s=None if data.get("time_offset_s") is None else float(data["time_offset_s"]),
        **extra,
    )


def mapping_from_dict(data: dict[str, Any], base_dir: Path | None = None) -> Mapping:
    """Build and validate a :class:`Mapping` from parsed YAML (``base_dir``: the YAML's folder,
    for a ``robot:`` given as a relative path)."""
    data = _as_dict("mapping", data)
    allowed = {
        "robot",
        "name",
        "fps",
        "video",
        "state",
        "action",
        "embodiment_tag",
        "robot_type",
        "align_tolerance_s",
        "action_horizon",
        "min_episode_frames",
        "relative_action",
        "episodes",
        "instruction",
        "video_encoding",
        "receive_time_topics",
    }
    _check_keys("mapping", data, allowed)
    for required in ("name", "fps", "video"):
        if required not in data:
            raise MappingError(f"mapping: missing '{required}'")
    video = []
    for key, spec in _as_dict("video", data["video"]).items():
        spec = {"topic": spec} if isinstance(spec, str) else _as_dict(f"video.{key}", spec)
        _check_keys(f"video.{key}", spec, {"topic", "width", "height"})
        video.append(
            VideoSpec(key=str(key), topic=str(spec["topic"]), width=spec.get("width"), height=spec.get("height"))
        )
    robot = load_robot(str(data["robot"]), base_dir) if data.get("robot") else None
    state = [
        _stream(str(k), _as_dict(f"state.{k}", v), robot) for k, v in _as_dict("state", data.get("state") or {}).items()
    ]
    action = []
    for key, spec in _as_dict("action", data.get("action") or {}).items():
        spec = _as_dict(f"action.{key}", spec)
        if "next_state" in spec:
            _check_keys(f"action.{key}", spec, {"next_state"})
            action.append(ActionSpec(key=str(key), next_state=str(spec["next_state"])))
        else:
            action.append(ActionSpec(key=str(key), stream=_stream(str(key), spec, robot)))
    rel = data.get("relative_action") or {}
    rel_map = (
        {str(k): str(k) for k in rel}
        if isinstance(rel, list)
        else {str(k): str(v) for k, v in _as_dict("relative_action", rel).items()}
    )
    eps = _as_dict("episodes", data.get("episodes") or {})
    _check_keys("episodes", eps, {"split", "topic", "end_values"})
    episodes = EpisodeSpec(
        split=str(eps.get("split", "bag")),
        topic=eps.get("topic"),
        end_values=tuple(str(v) for v in eps.get("end_values", EpisodeSpec.end_values)),
    )
    ins = _as_dict("instruction", data.get("instruction") or {})
    _check_keys("instruction", ins, {"text", "topic", "file"})
    enc = _as_dict("video_encoding", data.get("video_encoding") or {})
    _check_keys("video_encoding", enc, {"codec", "crf", "preset", "gop", "pix_fmt", "tune", "threads"})
    return Mapping(
        name=str(data["name"]),
        fps=float(data["fps"]),
        video=tuple(video),
        state=tuple(state),
        action=tuple(action),
        embodiment_tag=str(data.get("embodiment_tag", "new_embodiment")),
        robot_type=str(data.get("robot_type", robot.name if robot is not None else "unknown")),
        align_tolerance_s=None if data.get("align_tolerance_s") is None else float(data["align_tolerance_s"]),
        action_horizon=int(data.get("action_horizon", 24)),
        min_episode_frames=int(data.get("min_episode_frames", 2)),
        relative_action=rel_map,
        episodes=episodes,
        instruction=InstructionSpec(**{k: str(v) for k, v in ins.items()}),
        video_encoding=VideoEncoding(**enc),
        robot=None if robot is None else str(robot.name),
        receive_time_topics=tuple(str(t) for t in _as_list("receive_time_topics", data.get("receive_time_topics"))),
    )


def _as_list(what: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise MappingError(f"{what}: expected a list, got {type(value).__name__}")
    return value


def load_mapping(path: str | Path) -> Mapping:
    """Load ``config/datasets/<name>.yaml`` (or any path). Raises :class:`MappingError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: cannot read mapping: {exc}") from exc
    try:
        return mapping_from_dict(data, path.parent)
    except MappingError as exc:
        raise MappingError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MappingError(f"{path}: invalid value: {exc}") from exc
