"""I/O spec loading and validation: shipped YAMLs load; each bad field is named in the error."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml
from dreamzero_policy.core.errors import IoSpecError
from dreamzero_policy.runtime.io_spec import default_config_dir, load_io_spec, parse_io_spec, stats_from_metadata


@pytest.fixture
def sim_data() -> dict:
    return yaml.safe_load((default_config_dir() / "droid_sim.yaml").read_text())


def test_shipped_specs_load() -> None:
    droid = load_io_spec("droid")
    sim = load_io_spec("droid_sim")
    assert [c.key for c in droid.cameras] == ["exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"]
    assert droid.state_dim == 8 and droid.action_dim == 8 and droid.action_horizon == 24 and droid.fps == 15.0
    assert droid.relative_action == (True,) * 7 + (False,)
    assert droid.state_stats is None  # read from the checkpoint's metadata.json
    assert sim.embodiment == "droid_franka_sim"
    assert [c.topic for c in sim.cameras] == [
        "/sim/exterior_1/image_raw",
        "/sim/exterior_2/image_raw",
        "/sim/wrist/image_raw",
    ]
    assert sim.state_joints == tuple(f"panda_joint{i}" for i in range(1, 8)) and sim.gripper_joint == "gripper"
    assert sim.state_stats is not None and sim.state_stats.q01.shape == (8,)
    assert sim.cameras[0].request_key == "observation/exterior_image_0_left"
    assert sim.format_prompt("  pick the cube ") == "pick the cube"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["control"].update(fps=0), "control.fps"),
        (lambda d: d["control"].update(execute_horizon=99), "control.execute_horizon"),
        (lambda d: d.pop("cameras"), "cameras"),
        (lambda d: d["cameras"].append(dict(d["cameras"][0])), "cameras: duplicate"),
        (lambda d: d["image"].update(request_size=[180]), "image.request_size"),
        (lambda d: d["image"].update(crop_fraction=1.5), "image.crop_fraction"),
        (lambda d: d["image"].update(mosaic=[["wrist", "nope"], ["exterior_1", "exterior_2"]]), "image.mosaic[0][1]"),
        (lambda d: d["image"].update(mosaic=[["wrist", "exterior_1"], ["exterior_2", "wrist"]]), "rectangle"),
        (lambda d: d["state"].update(joints=["a", "a"]), "state.joints"),
        (lambda d: d["action"].update(space="teleport"), "action.space"),
        (lambda d: d["action"].update(relative=["unknown"]), "action.relative"),
        (lambda d: d["normalization"]["state"].update(q01=[0.0] * 3), "normalization.state.q01"),
        (lambda d: d["normalization"]["action"].update(q99=[-9.0] * 8), "normalization.action"),
        (lambda d: d.update(prompt_template="no placeholder"), "prompt_template"),
    ],
)
def test_bad_fields_are_named(sim_data: dict, mutate, field: str) -> None:
    data = copy.deepcopy(sim_data)
    mutate(data)
    with pytest.raises(IoSpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_io_spec(data)


def test_empty_instruction_rejected() -> None:
    with pytest.raises(IoSpecError, match="instruction"):
        load_io_spec("droid_sim").format_prompt("   ")


def test_missing_file_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(IoSpecError, match="not found"):
        load_io_spec("does_not_exist", config_dir=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(IoSpecError, match="not valid YAML"):
        load_io_spec(bad)


def test_stats_from_checkpoint_metadata(tmp_path) -> None:
    meta = {
        "oxe_droid": {
            "statistics": {
                "state": {
                    "joint_position": {"q01": [-1.0] * 7, "q99": [1.0] * 7},
                    "gripper_position": {"q01": [0.0], "q99": [1.0]},
                },
                "action": {
                    "joint_position": {"q01": [-0.5] * 7, "q99": [0.5] * 7},
                    "gripper_position": {"q01": [0.0], "q99": [1.0]},
                },
            }
        }
    }
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(meta))
    stats = stats_from_metadata(
        path, "oxe_droid", ["joint_position", "gripper_position"], ["joint_position", "gripper_position"]
    )
    np.testing.assert_array_equal(stats["action"].q99, [0.5] * 7 + [1.0])
    spec = load_io_spec("droid", stats_override=stats)
    assert spec.state_stats is not None and spec.state_stats.q01[0] == -1.0
    with pytest.raises(IoSpecError, match="embodiment_tag"):
        stats_from_metadata(path, "yam", ["joint_position"], ["joint_position"])
