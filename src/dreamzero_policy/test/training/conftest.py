"""Fixtures for the training tests: small converted datasets made by the data pipeline itself
(synthetic rosbags -> ``dreamzero_policy.data.convert``), built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dreamzero_policy.data.convert import ConvertOptions, convert
from dreamzero_policy.data.mapping import mapping_from_dict
from dreamzero_policy.data.synth import SynthSpec, cameras, mapping_dict, write_bag


def make_dataset(
    root: Path,
    episodes: int = 3,
    duration_s: float = 2.0,
    instruction: str = "reach the cube",
    video_only: bool = False,
) -> Path:
    """``episodes`` bags of ``duration_s`` at 15 fps (1 camera 32x24, 3 joints + gripper) converted to a
    dataset at ``root``; ``video_only`` marks every episode video-only in ``meta/episodes.jsonl``."""
    spec = SynthSpec(duration_s=duration_s, cameras=cameras(1), seed=1)
    bags = []
    for i in range(episodes):
        bag = root.parent / f"{root.name}_bag{i}"
        write_bag(bag, spec)
        bags.append(bag)
    mapping = mapping_from_dict(mapping_dict(spec, instruction={"text": instruction}))
    convert(bags, mapping, root, ConvertOptions(progress=False))
    if video_only:
        path = root / "meta" / "episodes.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        path.write_text("".join(json.dumps({**r, "video_only": True}) + "\n" for r in rows))
    return root


@pytest.fixture(scope="session")
def robot_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("robot") / "ds")


@pytest.fixture(scope="session")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(
        tmp_path_factory.mktemp("video") / "ds", episodes=1, instruction="push the cube", video_only=True
    )
