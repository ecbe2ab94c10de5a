"""Official checkpoint import on small real tensors: LoRA merge exactness, corrupt/mismatched checkpoints, the
safetensors folder layout, metadata.json statistics, and configs whose ``_target_`` strings are never executed."""

from __future__ import annotations

import builtins
import importlib
import json
import os
import pydoc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dreamzero_policy.model.checkpoint import CheckpointError
from dreamzero_policy.model.configuration_dreamzero import get_preset
from dreamzero_policy.model.convert_official import OFFICIAL_DIT_PREFIX, official_to_ours
from dreamzero_policy.model.import_official import (
    load_official_checkpoint,
    load_official_state_dict,
    merge_lora,
    parse_official_metadata,
    read_official_config,
    read_official_weights,
)
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT
from parity_fixture import load_case

PEFT = OFFICIAL_DIT_PREFIX + "base_model.model."
LORA_TARGETS = (
    "self_attn.q",
    "self_attn.k",
    "self_attn.v",
    "self_attn.o",
    "cross_attn.q",
    "cross_attn.k",
    "cross_attn.v",
    "cross_attn.o",
    "ffn.0",
    "ffn.2",
)


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return load_case("weights")  # the tiny official-configuration DiT of the parity fixture, official names


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    tf, shared = load_case("train_forward"), load_case("shared_inputs")
    return {**tf, "clip_feature": shared["clip_feature"]}


def _forward(model: DreamZeroDiT, d: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.forward_train(
            d["x"],
            d["timestep"],
            d["clean_x"],
            d["context"],
            d["action"],
            d["timestep_action"],
            d["state"],
            y=d["y"],
            clip_feature=d["clip_feature"],
        )


def _dit(sd: dict[str, torch.Tensor]) -> DreamZeroDiT:
    torch.set_num_threads(1)
    model = DreamZeroDiT(get_preset("tiny"))
    load_official_state_dict(sd, dit=model)
    return model.eval()


def _lora_checkpoint(
    official: dict[str, torch.Tensor],
    base_layer: bool,
    rank: int = 3,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The tiny DiT in peft's LoRA layout with random (non-zero) A/B; returns (checkpoint, {module: (A, B)})."""
    g = torch.Generator().manual_seed(seed)
    ckpt: dict[str, torch.Tensor] = {}
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, t in official.items():
        rel = key[len(OFFICIAL_DIT_PREFIX) :]
        module, _, leaf = rel.rpartition(".")
        targeted = any(module.endswith(s) for s in LORA_TARGETS) and module.startswith("blocks.")
        base_name = f"{module}.base_layer.{leaf}" if targeted and base_layer else rel
        ckpt[PEFT + base_name] = t
        if targeted and leaf == "weight":
            a = torch.randn(rank, t.shape[1], generator=g) * 0.1
            b = torch.randn(t.shape[0], rank, generator=g) * 0.1
            ckpt[f"{PEFT}{module}.lora_A.default.weight"] = a
            ckpt[f"{PEFT}{module}.lora_B.default.weight"] = b
            pairs[module] = (a, b)
    return ckpt, pairs


@pytest.mark.parametrize("base_layer,scaling", [(False, 1.0), (True, 0.5)])
def test_lora_merge_equals_base_plus_lora_forward(
    official: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor], base_layer: bool, scaling: float
) -> None:
    ckpt, pairs = _lora_checkpoint(official, base_layer)
    merged, n = merge_lora(ckpt, scaling=scaling)
    assert n == len(pairs) == 2 * len(LORA_TARGETS)
    assert set(merged) == set(official)
    merged_model = _dit(merged)
    # reference: the unmerged base model with each LoRA branch added at run time (x @ A^T @ B^T * scaling)
    ref = _dit(official)
    for module, (a, b) in pairs.items():
        ours = official_to_ours(module + ".weight")[0].rpartition(".")[0]
        ref.get_submodule(ours).register_forward_hook(
            lambda _m, args, out, a=a, b=b: out + scaling * (args[0] @ a.T) @ b.T
        )
    v_ref, a_ref = _forward(ref, inputs)
    v, act = _forward(merged_model, inputs)
    torch.testing.assert_close(v, v_ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(act, a_ref, atol=2e-5, rtol=1e-5)
    v_base, _ = _forward(_dit(official), inputs)
    assert (v - v_base).abs().max() > 1e-3  # the LoRA really changed the model


def test_lora_errors_name_the_tensor(official: dict[str, torch.Tensor]) -> None:
    ckpt, _ = _lora_checkpoint(official, base_layer=False)
    a_key = PEFT + "blocks.0.self_attn.q.lora_A.default.weight"
    b_key = PEFT + "blocks.0.self_attn.q.lora_B.default.weight"
    unpaired = {k: v for k, v in ckpt.items() if k != b_key}
    with pytest.raises(CheckpointError, match=r"blocks\.0\.self_attn\.q\.lora_A\.default\.weight.*no lora_B"):
        merge_lora(unpaired)
    shaped = {**ckpt, b_key: torch.zeros(5, 3)}
    with pytest.raises(CheckpointError, match=r"blocks\.0\.self_attn\.q\.lora_A.*does not fit"):
        merge_lora(shaped)
    lora_only = {k: v for k, v in ckpt.items() if "lora_" in k}
    with pytest.raises(CheckpointError, match=r"base weight 'action_head\.model\.blocks\.\d+\..*missing.*base="):
        merge_lora(lora_only)
    two = {**ckpt, a_key.replace(".default.", ".other."): ckpt[a_key]}
    with pytest.raises(CheckpointError, match="several adapters"):
        merge_lora(two)
    dup = {**ckpt, PEFT + "blocks.0.self_attn.q.base_layer.weight": ckpt[PEFT + "blocks.0.self_attn.q.weight"]}
    with pytest.raises(CheckpointError, match="duplicates"):
        merge_lora(dup)


def test_corrupt_and_mismatched_official_checkpoint_names_first_bad_tensor(official: dict[str, torch.Tensor]) -> None:
    nan = dict(official)
    nan[OFFICIAL_DIT_PREFIX + "blocks.1.cross_attn.k_img.weight"] = torch.full_like(
        official[OFFICIAL_DIT_PREFIX + "blocks.1.cross_attn.k_img.weight"], float("nan")
    )
    with pytest.raises(CheckpointError, match=r"\[dit\] tensor 'blocks\.1\.attn2\.add_k_proj\.weight'.*non-finite"):
        _dit(nan)
    shaped = dict(official)
    shaped[OFFICIAL_DIT_PREFIX + "action_decoder.layer2.W"] = torch.zeros(1, 48, 16)
    with pytest.raises(CheckpointError, match=r"action_decoder\.layer2\.weight.*\(16, 48\)"):
        _dit(shaped)


def _write_official_folder(folder: Path, sd: dict[str, torch.Tensor], config: dict, metadata: dict | None) -> None:
    keys = sorted(sd)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    folder.mkdir(parents=True, exist_ok=True)
    for fname, names in shards.items():
        save_file({k: sd[k].contiguous() for k in names}, str(folder / fname))
    weight_map = {k: f for f, names in shards.items() for k in names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))
    if metadata is not None:
        (folder / "experiment_cfg").mkdir()
        (folder / "experiment_cfg" / "metadata.json").write_text(json.dumps(metadata))


DROID_META = {
    "oxe_droid": {
        "statistics": {
            "state": {
                "joint_position": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "min": [-2.0] * 7, "max": [2.0] * 7},
                "gripper_position": {"q01": [0.0], "q99": [1.0]},
            },
            "action": {
                "joint_position": {
                    "q01": [-0.1 * i for i in range(1, 8)],
                    "q99": [0.1 * i for i in range(1, 8)],
                    "mean": [0.0] * 7,
                    "std": [0.05] * 7,
                },
                "gripper_position": {"q01": [0.0], "q99": [0.9]},
            },
        },
        "modalities": {"video": {"exterior_image_1_left": {"resolution": [320, 180], "channels": 3, "fps": 15}}},
        "embodiment_tag": "oxe_droid",
    }
}


def test_checkpoint_folder_with_lora_only_file_and_base(
    tmp_path: Path, official: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> None:
    ckpt, _ = _lora_checkpoint(official, base_layer=False)
    expected = _forward(_dit(merge_lora(ckpt)[0]), inputs)
    lora_only = {k: v for k, v in ckpt.items() if "lora_" in k or "_encoder." in k or "action_decoder." in k}
    config = {"action_head_cfg": {"train_architecture": "lora"}}
    _write_official_folder(tmp_path / "lora", lora_only, config, DROID_META)
    save_file(official, str(tmp_path / "base.safetensors"))
    with pytest.raises(CheckpointError, match="pass base="):
        load_official_checkpoint(tmp_path / "lora")
    loaded = load_official_checkpoint(tmp_path / "lora", base=tmp_path / "base.safetensors")
    assert loaded.lora_merged == 2 * len(LORA_TARGETS) and loaded.config == config
    assert set(loaded.metadata) == {"oxe_droid"}
    bare = {k[len(OFFICIAL_DIT_PREFIX) :]: v for k, v in official.items()}  # a Wan DiT file has no prefix
    again = load_official_checkpoint(tmp_path / "lora", base=bare, base_prefix=OFFICIAL_DIT_PREFIX)
    assert again.state_dict.keys() == loaded.state_dict.keys()
    assert all(torch.equal(again.state_dict[k], v) for k, v in loaded.state_dict.items())
    model = DreamZeroDiT(get_preset("tiny"))
    report = loaded.load_into(dit=model)
    assert report.loaded == {"dit": len(official)}
    got = _forward(model.eval(), inputs)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_read_official_weights_errors(tmp_path: Path, official: dict[str, torch.Tensor]) -> None:
    folder = tmp_path / "ckpt"
    _write_official_folder(folder, official, {}, None)
    assert read_official_weights(folder).keys() == official.keys()
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["action_head.model.ghost.weight"] = "model-00001-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"'action_head\.model\.ghost\.weight'.*shard lacks it"):
        read_official_weights(folder)
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:64])
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors: unreadable"):
        read_official_weights(folder)
    pickled = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, pickled)
    with pytest.raises(CheckpointError, match="only safetensors"):
        read_official_weights(pickled)
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        read_official_weights(tmp_path / "empty_dir_missing")


def test_metadata_statistics_parse() -> None:
    stats = parse_official_metadata(DROID_META)["oxe_droid"]
    q01, q99 = stats.bounds("action", ["joint_position", "gripper_position"])
    assert q01.dtype == np.float64 and q01.shape == (8,)
    np.testing.assert_allclose(q99, [0.1 * i for i in range(1, 8)] + [0.9])
    np.testing.assert_allclose(stats.state["joint_position"]["max"], [2.0] * 7)
    assert stats.modalities["video"]["exterior_image_1_left"]["fps"] == 15
    with pytest.raises(KeyError, match="cartesian"):
        stats.bounds("state", ["cartesian"])


@pytest.mark.parametrize(
    "change,match",
    [
        (("state", "gripper_position", "q99"), "needs q01 and q99"),
        (("action", "joint_position", "q99", [-1.0] * 7), r"q99 < q01 at indices \[0, 1, 2, 3, 4, 5, 6\]"),
        (("action", "joint_position", "mean", [0.0] * 3), "differ in length"),
        (("state", "joint_position", "q01", ["a"] * 7), "list of numbers"),
        (("state", "joint_position", "q01", [float("nan")] * 7), "non-finite"),
    ],
)
def test_metadata_bad_statistics_are_named(change: tuple, match: str) -> None:
    meta = json.loads(json.dumps(DROID_META))
    entry = meta["oxe_droid"]["statistics"][change[0]][change[1]]
    if len(change) == 3:
        del entry[change[2]]
    else:
        entry[change[2]] = change[3]
    with pytest.raises(CheckpointError, match=match):
        parse_official_metadata(meta)


def test_config_targets_are_never_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, official: dict[str, torch.Tensor]
) -> None:
    calls: list[str] = []
    for mod, attr in [
        (os, "system"),
        (subprocess, "Popen"),
        (importlib, "import_module"),
        (pydoc, "locate"),
        (builtins, "eval"),
    ]:
        monkeypatch.setattr(mod, attr, lambda *a, _n=f"{mod.__name__}.{attr}", **k: calls.append(_n))
    marker = tmp_path / "pwned"
    config = {
        "_target_": "os.system",
        "_args_": [f"touch {marker}"],
        "action_head_cfg": {
            "_target_": "builtins.eval",
            "_recursive_": True,
            "train_architecture": "full",
            "vae_cfg": {"_target_": "subprocess.Popen", "_args_": [["touch", str(marker)]], "vae_path": "/x"},
            "transforms": [{"_target_": "os.system", "command": f"touch {marker}"}],
        },
    }
    clean, ignored = read_official_config(config)
    assert "_target_" not in json.dumps(clean) and "_args_" not in json.dumps(clean)
    assert clean["action_head_cfg"]["vae_cfg"] == {"vae_path": "/x"}
    assert clean["action_head_cfg"]["transforms"] == [{"command": f"touch {marker}"}]
    assert set(ignored) == {
        "_target_",
        "_args_",
        "action_head_cfg._target_",
        "action_head_cfg._recursive_",
        "action_head_cfg.vae_cfg._target_",
        "action_head_cfg.vae_cfg._args_",
        "action_head_cfg.transforms[0]._target_",
    }
    _write_official_folder(tmp_path / "ckpt", official, config, DROID_META)
    loaded = load_official_checkpoint(tmp_path / "ckpt")
    assert loaded.config == clean and set(loaded.ignored_config_keys) == set(ignored)
    assert calls == [] and not marker.exists()
