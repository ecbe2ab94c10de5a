"""Synthetic rosbags with known ground truth, for the data pipeline's tests and benchmark.

Writes real rosbag2 directories with ``rosbags`` (MCAP or sqlite3): cameras (raw ``Image`` in any
encoding or ``CompressedImage`` jpeg/png), ``JointState``, ``dreamzero_msgs/ActionChunk``
(registered at run time from the ``.msg`` text), an instruction ``String`` topic and a RunTask
status topic; with optional stamp jitter, dropped frames and stamps going backwards. The returned
:class:`Truth` holds every stamp and value written, so tests compare against it exactly.

Frame ``i`` of every camera is a flat colour (:func:`frame_color`), which survives JPEG and H.264
nearly unchanged, so a decoded frame identifies the source frame it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from dreamzero_policy.data.bagio import make_typestore

T0_NS = 1_700_000_000 * 1_000_000_000


def frame_color(i: int) -> tuple[int, int, int]:
    """RGB colour of synthetic frame ``i``; consecutive frames differ by >= 40 in some channel."""
    return (int((i * 53) % 200 + 28), int((i * 97) % 200 + 28), int((i * 151) % 200 + 28))


def frame_rgb(i: int, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.array(frame_color(i), np.uint8), (height, width, 3)).copy()


def joint_value(t_s: float, j: int) -> float:
    """Joint ``j``'s position at time ``t_s`` (s since the bag start), radians."""
    return float(np.sin(0.7 * (j + 1) * t_s + 0.3 * j))


@dataclass(frozen=True)
class Camera:
    topic: str
    encoding: str = "rgb8"  # raw encoding, or "jpeg"/"png" for CompressedImage
    width: int = 32
    height: int = 24
    rate: float | None = None  # None -> SynthSpec.camera_rate
    phase_s: float = 0.0

    @property
    def compressed(self) -> bool:
        return self.encoding in ("jpeg", "png")


@dataclass(frozen=True)
class SynthSpec:
    duration_s: float = 2.0
    camera_rate: float = 15.0
    cameras: tuple[Camera, ...] = (Camera("/cam/image_raw"),)
    joint_topic: str | None = "/joint_states"
    joint_rate: float = 100.0
    joints: tuple[str, ...] = ("j1", "j2", "j3")
    gripper_joint: str | None = "gripper"
    jitter_s: float = 0.0
    drop: dict[str, frozenset[int]] = field(default_factory=dict)  # topic -> message indices not written
    backwards: dict[str, frozenset[int]] = field(default_factory=dict)  # topic -> indices stamped 0.503 s early
    chunk_topic: str | None = None
    chunk_rate: float = 5.0
    chunk_horizon: int = 8
    chunk_step_s: float | None = None  # None -> 1 / camera_rate
    instructions: tuple[tuple[float, str], ...] = ()  # (time s, text) on /instruction
    run_task: tuple[tuple[float, float, int], ...] = ()  # (start s, end s, terminal status)
    unstamped: frozenset[str] = frozenset()  # topics published with zero header stamps (an unstamping driver)
    header_offset_s: float = 0.0  # header clock minus the recorder's (nodes on sim time, recorder on wall time)
    joint_overrides: tuple[tuple[int, str, float], ...] = ()  # (JointState index, joint, value), e.g. a NaN
    seed: int = 0


@dataclass
class Truth:
    """Everything written: per topic the header stamps (ns) and the values."""

    stamps: dict[str, list[int]] = field(default_factory=dict)
    received: dict[str, list[int]] = field(default_factory=dict)  # camera and joint topics: log time per message
    frames: dict[str, list[int]] = field(default_factory=dict)  # camera topic -> frame index per message
    joints: list[np.ndarray] = field(default_factory=list)  # per JointState message, position incl. gripper
    chunks: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (stamp, step ns, (H, D) data)
    joint_names: tuple[str, ...] = ()


def _image_msg(ts: Typestore, cam: Camera, i: int, header: object) -> tuple[str, object]:
    rgb = frame_rgb(i, cam.height, cam.width)
    if cam.compressed:
        ok, buf = cv2.imencode("." + ("jpg" if cam.encoding == "jpeg" else "png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        msg = ts.types["sensor_msgs/msg/CompressedImage"](header=header, format=cam.encoding, data=buf.reshape(-1))
        return "sensor_msgs/msg/CompressedImage", msg
    enc = cam.encoding
    if enc in ("rgb8", "bgr8"):
        pix = rgb if enc == "rgb8" else rgb[..., ::-1]
    elif enc == "mono8":
        pix = rgb[..., :1]
    else:
        raise ValueError(f"synthetic camera encoding {enc} not supported")
    pix = np.ascontiguousarray(pix)
    step = cam.width * pix.shape[2] + 4  # deliberate row padding: decoders must honour step
    data = np.zeros((cam.height, step), np.uint8)
    data[:, : cam.width * pix.shape[2]] = pix.reshape(cam.height, -1)
    msg = ts.types["sensor_msgs/msg/Image"](
        header=header,
        height=cam.height,
        width=cam.width,
        encoding=enc,
        is_bigendian=0,
        step=step,
        data=data.reshape(-1),
    )
    return "sensor_msgs/msg/Image", msg


def write_bag(path: str | Path, spec: SynthSpec, storage: str = "mcap") -> Truth:
    """Write ``spec`` as a rosbag2 directory at ``path`` (must not exist) and return the truth."""
    ts = make_typestore()
    rng = np.random.default_rng(spec.seed)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    T = ts.types
    truth = Truth(joint_names=spec.joints + ((spec.gripper_joint,) if spec.gripper_joint else ()))
    events: list[tuple[int, str, str, object]] = []  # (log time, topic, type, msg)

    def stamp_of(topic: str, i: int, nominal_s: float) -> int | None:
        if i in spec.drop.get(topic, frozenset()):
            return None
        jitter = rng.uniform(-spec.jitter_s, spec.jitter_s) if spec.jitter_s else 0.0
        t = T0_NS + round((nominal_s + jitter + spec.header_offset_s) * 1e9)
        return t - 503_000_000 if i in spec.backwards.get(topic, frozenset()) else t

    def header(t_ns: int, topic: str = "") -> object:
        t_ns = 0 if topic in spec.unstamped else t_ns
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=""
        )

    for cam in spec.cameras:
        rate = cam.rate or spec.camera_rate
        truth.stamps[cam.topic], truth.frames[cam.topic] = [], []
        for i in range(int(spec.duration_s * rate) + 1):
            nominal = cam.phase_s + i / rate
            t = stamp_of(cam.topic, i, nominal)
            if t is None:
                continue
            msgtype, msg = _image_msg(ts, cam, i, header(t, cam.topic))
            events.append((T0_NS + int(nominal * 1e9) + 2_000_000, cam.topic, msgtype, msg))
            truth.received.setdefault(cam.topic, []).append(events[-1][0])
            truth.stamps[cam.topic].append(t)
            truth.frames[cam.topic].append(i)
    if spec.joint_topic:
        truth.stamps[spec.joint_topic] = []
        for i in range(int(spec.duration_s * spec.joint_rate) + 1):
            nominal = i / spec.joint_rate
            t = stamp_of(spec.joint_topic, i, nominal)
            if t is None:
                continue
            since_start = (t - T0_NS) / 1e9 - spec.header_offset_s
            q = np.array([joint_value(since_start, j) for j in range(len(truth.joint_names))])
            for index, joint, value in spec.joint_overrides:
                if index == i:
                    q[truth.joint_names.index(joint)] = value
            msg = T["sensor_msgs/msg/JointState"](
                header=header(t, spec.joint_topic),
                name=list(truth.joint_names),
                position=q,
                velocity=np.zeros_like(q),
                effort=np.array([], float),
            )
            events.append((T0_NS + int(nominal * 1e9) + 1_000_000, spec.joint_topic, "sensor_msgs/msg/JointState", msg))
            truth.received.setdefault(spec.joint_topic, []).append(events[-1][0])
            truth.stamps[spec.joint_topic].append(t)
            truth.joints.append(q)
    if spec.chunk_topic:
        step_ns = round((spec.chunk_step_s or 1.0 / spec.camera_rate) * 1e9)
        names = list(truth.joint_names)
        truth.stamps[spec.chunk_topic] = []
        Dur = T["builtin_interfaces/msg/Duration"]
        for i in range(int(spec.duration_s * spec.chunk_rate) + 1):
            t_log = T0_NS + round(i / spec.chunk_rate * 1e9)
            t = t_log + round(spec.header_offset_s * 1e9)
            data = rng.normal(size=(spec.chunk_horizon, len(names)))
            msg = T["dreamzero_msgs/msg/ActionChunk"](
                header=header(t),
                session_id="s0",
                chunk_id=i,
                embodiment="synthetic",
                action_space=0,
                step_duration=Dur(sec=step_ns // 10**9, nanosec=step_ns % 10**9),
                horizon=spec.chunk_horizon,
                execute_horizon=spec.chunk_horizon,
                names=names,
                data=data.reshape(-1),
                inference_started=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                inference_latency=Dur(sec=0, nanosec=1000),
            )
            events.append((t_log + 3_000_000, spec.chunk_topic, "dreamzero_msgs/msg/ActionChunk", msg))
            truth.stamps[spec.chunk_topic].append(t)
            truth.chunks.append((t, step_ns, data))
    for t_s, text in spec.instructions:
        events.append(
            (T0_NS + int(t_s * 1e9), "/instruction", "std_msgs/msg/String", T["std_msgs/msg/String"](data=text))
        )
    for k, (start, end, status) in enumerate(spec.run_task):
        uuid = T["unique_identifier_msgs/msg/UUID"](uuid=np.full(16, k + 1, np.uint8))
        info = T["action_msgs/msg/GoalInfo"](goal_id=uuid, stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0))
        for t_s, st in ((start, 2), (end, status)):
            arr = T["action_msgs/msg/GoalStatusArray"](
                status_list=[T["action_msgs/msg/GoalStatus"](goal_info=info, status=st)]
            )
            events.append((T0_NS + int(t_s * 1e9), "/run_task/_action/status", "action_msgs/msg/GoalStatusArray", arr))
    events.sort(key=lambda e: e[0])
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        conns: dict[str, object] = {}
        for log_t, topic, msgtype, msg in events:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], log_t, ts.serialize_cdr(msg, msgtype))
    return truth


def cameras(n: int, encodings: Sequence[str] = ("rgb8",), width: int = 32, height: int = 24) -> tuple[Camera, ...]:
    """``n`` cameras ``/cam{i}/image`` cycling through ``encodings``."""
    return tuple(Camera(f"/cam{i}/image", encodings[i % len(encodings)], width, height) for i in range(n))


def mapping_dict(spec: SynthSpec, fps: float = 15.0, **overrides: object) -> dict[str, object]:
    """A conversion mapping (as parsed YAML) for a bag written from ``spec``."""
    joints = list(spec.joints)
    data: dict[str, object] = {
        "name": "synthetic",
        "fps": fps,
        "embodiment_tag": "synthetic",
        "action_horizon": 4,
        "min_episode_frames": 2,
        "video": {f"view{i}": {"topic": c.topic} for i, c in enumerate(spec.cameras)},
        "state": {"joint_position": {"topic": spec.joint_topic, "names": joints}},
        "action": {
            "joint_position": {"topic": spec.chunk_topic, "names": joints}
            if spec.chunk_topic
            else {"next_state": "joint_position"}
        },
        "relative_action": {"joint_position": "joint_position"},
        "instruction": {"text": "synthetic task"},
    }
    if spec.gripper_joint:
        data["state"]["gripper_position"] = {"topic": spec.joint_topic, "names": [spec.gripper_joint]}  # type: ignore[index]
        data["action"]["gripper_position"] = {"next_state": "gripper_position"}  # type: ignore[index]
    data.update(overrides)
    return data
