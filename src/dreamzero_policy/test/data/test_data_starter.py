"""``dreamzero data inspect --starter-mapping``: a mapping guessed from a bag that loads and converts it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dreamzero_policy.cli import main
from dreamzero_policy.data.mapping import load_mapping
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.data.synth import Camera, SynthSpec, write_bag

SPEC = SynthSpec(
    duration_s=1.5,
    cameras=(
        Camera("/wrist/image_raw", "rgb8"),
        Camera("/exterior_1/image_raw/compressed", "jpeg", phase_s=0.01),
        Camera("/dreamzero_policy/predicted/image", "rgb8"),  # our own node's output, not a robot camera
    ),
    joints=("shoulder", "elbow", "wrist"),
    gripper_joint="finger_joint",
    seed=2,
)


def _starter(tmp_path: Path, spec: SynthSpec, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    write_bag(tmp_path / "bag", spec)
    out = tmp_path / "my_robot.yaml"
    assert main(["data", "inspect", str(tmp_path / "bag"), "--starter-mapping", str(out)]) == 0
    assert f"wrote a starter mapping to {out}" in capsys.readouterr().out
    return out, out.read_text()


def test_starter_mapping_names_cameras_and_joints_and_converts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, text = _starter(tmp_path, SPEC, capsys)
    assert text.startswith("# Starter mapping guessed from") and "no instruction" in text
    data = yaml.safe_load(text)
    assert data["name"] == "my_robot" and data["fps"] == 15
    assert data["video"] == {"wrist": {"topic": "/wrist/image_raw"}, "exterior_1": {"topic": SPEC.cameras[1].topic}}
    assert data["state"] == {
        "joint_position": {"topic": "/joint_states", "names": ["shoulder", "elbow", "wrist"]},
        "gripper_position": {"topic": "/joint_states", "names": ["finger_joint"]},
    }
    assert data["action"] == {
        "joint_position": {"next_state": "joint_position"},
        "gripper_position": {"next_state": "gripper_position"},
    }
    assert "receive_time_topics" not in data
    load_mapping(path)
    # Without an instruction conversion fails and says how to give one; with one it converts.
    base = ["data", "convert", str(tmp_path / "bag"), "-m", str(path), "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "none")]) == 2
    assert "--instruction" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "ds"), "--instruction", "pick the cube"]) == 0
    ds = DatasetReader(tmp_path / "ds")
    assert ds.info["total_episodes"] == 1 and len(ds.video(0, "wrist")) == len(ds.episode(0).columns["frame_index"])


def test_starter_mapping_for_an_unstamped_driver_aligns_on_receive_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _starter(tmp_path, SynthSpec(duration_s=1.5, unstamped=frozenset({"/joint_states"})), capsys)
    assert load_mapping(path).receive_time_topics == ("/joint_states",)
    argv = ["data", "convert", str(tmp_path / "bag"), "-m", str(path), "-o", str(tmp_path / "ds")]
    assert main([*argv, "--instruction", "x", "--no-progress"]) == 0


def test_starter_mapping_refuses_what_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_bag(tmp_path / "bag", SynthSpec(duration_s=0.5, cameras=()))
    out = tmp_path / "m.yaml"
    assert main(["data", "inspect", str(tmp_path / "bag"), "--starter-mapping", str(out)]) == 2
    assert "no camera topics" in capsys.readouterr().err and not out.exists()
    out.write_text("mine: true\n")
    assert main(["data", "inspect", str(tmp_path / "bag"), "--starter-mapping", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "mine: true\n"
