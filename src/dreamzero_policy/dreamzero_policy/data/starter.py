"""A starter conversion mapping guessed from an inspected bag (``dreamzero data inspect --starter-mapping``).

A newcomer's first mapping is mostly copying topic and joint names out of ``ros2 bag info``. This
writes that part from the inspect report: every camera becomes a video key, the robot's JointState
topic the state (gripper-like joints as ``gripper_position``), actions the next measured state, the
dataset rate the slowest camera's. What it cannot know is left for the user and said in the file's
header: the instruction (conversion fails until there is one), relative actions, image sizes.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from dreamzero_policy.core.errors import MappingError
from dreamzero_policy.data.cdr import JOINT_STATE
from dreamzero_policy.data.index import IMAGE_TYPES
from dreamzero_policy.data.inspect import UNSTAMPED
from dreamzero_policy.data.mapping import mapping_from_dict

GRIPPER_WORDS = ("gripper", "finger", "hand", "jaw")
OWN_NAMESPACES = ("/dreamzero", "/adapter_node", "/dreamzero_policy")  # our nodes' outputs, not the robot's
IMAGE_WORDS = {"image", "image_raw", "image_rect", "image_color", "image_rect_color", "compressed", "color", "rgb"}


def _video_key(topic: str, taken: set[str]) -> str:
    parts = [p for p in topic.strip("/").split("/") if p and p not in IMAGE_WORDS] or ["camera"]
    key = re.sub(r"[^0-9a-zA-Z_]", "_", parts[-1])
    for candidate in (key, "_".join(parts), *(f"{key}_{i}" for i in range(2, 100))):
        candidate = re.sub(r"[^0-9a-zA-Z_]", "_", candidate)
        if candidate not in taken:
            taken.add(candidate)
            return candidate
    raise MappingError(f"no free video key for {topic}")


def _robot_topic(topics: dict[str, dict[str, Any]]) -> str | None:
    candidates = [
        t
        for t, info in topics.items()
        if info["type"] == JOINT_STATE and info.get("joints") and not t.startswith(OWN_NAMESPACES)
    ]
    if "/joint_states" in candidates:
        return "/joint_states"
    return max(candidates, key=lambda t: topics[t].get("rate_hz", 0.0), default=None)


def starter_mapping(report: dict[str, Any], name: str) -> tuple[dict[str, Any], list[str]]:
    """(mapping as YAML data, notes for the user) from ``inspect_bag``'s report; the mapping validates."""
    topics: dict[str, dict[str, Any]] = report["topics"]
    notes: list[str] = []
    taken: set[str] = set()
    cameras = sorted(
        t for t, info in topics.items() if info["type"] in IMAGE_TYPES and not t.startswith(OWN_NAMESPACES)
    )
    if not cameras:
        raise MappingError(
            f"{report['bag']}: no camera topics (sensor_msgs Image or CompressedImage); a mapping needs one"
        )
    video = {_video_key(t, taken): {"topic": t} for t in cameras}
    rates = [topics[t]["rate_hz"] for t in cameras if topics[t].get("rate_hz")]
    fps = max(1, round(min(rates))) if rates else 15
    notes.append(f"fps {fps}: the slowest camera's rate. Videos keep the camera size; add width/height to resize.")
    data: dict[str, Any] = {"name": name, "fps": fps, "video": video}
    robot = _robot_topic(topics)
    if robot is None:
        notes.append("no JointState topic: this makes video-only episodes (no state, no actions)")
    else:
        joints = list(topics[robot]["joints"])
        gripper = [j for j in joints if any(w in j.lower() for w in GRIPPER_WORDS)]
        arm = [j for j in joints if j not in gripper]
        state = {}
        if arm:
            state["joint_position"] = {"topic": robot, "names": arm}
        if gripper:
            state["gripper_position"] = {"topic": robot, "names": gripper}
            notes.append(f"gripper joints {gripper}: add scale/offset if 0 = open, 1 = closed is wanted")
        data["state"] = state
        data["action"] = {key: {"next_state": key} for key in state}
        notes.append(
            f"state from {robot}; actions = the next measured state. For commanded actions use a topic instead "
            "(ActionChunk, JointTrajectory or JointState commands) with the same names."
        )
    used = [robot, *cameras] if robot is not None else cameras
    unstamped = [t for t in used if topics[t].get("time_source") == UNSTAMPED]
    if unstamped:
        data["receive_time_topics"] = unstamped
    instruction = [t for t, info in topics.items() if info["type"] == "std_msgs/msg/String" and "instruction" in t]
    if instruction:
        data["instruction"] = {"topic": instruction[0]}
    else:
        notes.append("no instruction: set instruction.text, .file or .topic, or pass --instruction to convert")
    mapping_from_dict(data)  # what is written must load
    return data, notes


def starter_yaml(report: dict[str, Any], name: str) -> str:
    data, notes = starter_mapping(report, name)
    header = [f"# Starter mapping guessed from {report['bag']} by `dreamzero data inspect --starter-mapping`.", "#"]
    header += [f"# - {n}" for n in notes]
    header += ["# Schema: src/dreamzero_policy/dreamzero_policy/data/mapping.py; examples: config/datasets/.", ""]
    return "\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False)
