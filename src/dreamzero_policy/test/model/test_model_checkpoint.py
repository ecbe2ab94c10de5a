"""Presets, the official-name converter, strict loading errors and our checkpoint format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dreamzero_policy.model.checkpoint import CheckpointError, load_component, save_component
from dreamzero_policy.model.configuration_dreamzero import DreamZeroConfig, get_preset, preset_names
from dreamzero_policy.model.convert_official import (
    OFFICIAL_DIT_PREFIX,
    convert_official_state_dict,
    load_official_dit,
    official_to_ours,
)
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT
from dreamzero_policy.model.pipeline import WorldActionPipeline
from parity_fixture import load_case


def test_presets_exist_and_validate() -> None:
    assert {"tiny", "small", "dreamzero-14b", "dreamzero-5b"} <= set(preset_names())
    big = get_preset("dreamzero-14b")
    assert big.tokens_per_frame == 880 and big.rope_split == (44, 42, 42) and big.image_size == (352, 640)
    five = get_preset("dreamzero-5b")
    assert five.tokens_per_frame == 50 and not five.concat_first_frame_latent and five.image_size == (160, 320)


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(KeyError, match="dreamzero-14b"):
        get_preset("dreamzero14b")


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(num_heads=5), "divisible"),
        (dict(in_dim=20), "in_dim"),
        (dict(dit_step_mask=(True,) * 3), "dit_step_mask"),
        (dict(cfg_scale=float("nan")), "cfg_scale"),
        (dict(latent_width=7), "divisible"),
    ],
)
def test_config_validation(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_preset("tiny", **change)


def test_config_dict_round_trip_and_unknown_keys() -> None:
    cfg = get_preset("small")
    assert DreamZeroConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        DreamZeroConfig.from_dict({**cfg.to_dict(), "_target_": "os.system"})


def test_small_preset_has_tens_of_millions_of_dit_params() -> None:
    with torch.device("meta"):
        dit = DreamZeroDiT(get_preset("small"))
    n = sum(p.numel() for p in dit.parameters())
    assert 20e6 < n < 100e6, n


def test_converter_maps_every_official_tensor() -> None:
    official = load_case("weights")
    converted = convert_official_state_dict(official)
    assert len(converted) == len(official) == 101
    model = DreamZeroDiT(get_preset("tiny"))
    assert set(converted) == set(model.state_dict())
    w = official[OFFICIAL_DIT_PREFIX + "action_encoder.W2.W"]
    assert torch.equal(converted["action_encoder.W2.weight"], w[0].T)


def test_converter_rejects_unknown_key() -> None:
    with pytest.raises(CheckpointError, match=r"blocks\.0\.self_attn\.bogus"):
        official_to_ours("blocks.0.self_attn.bogus.weight")
    with pytest.raises(CheckpointError, match="no tensor under prefix"):
        convert_official_state_dict({"x.weight": torch.zeros(1)})


def test_converter_works_on_meta_tensors() -> None:
    official = {k: torch.empty(v.shape, device="meta") for k, v in load_case("weights").items()}
    with torch.device("meta"):
        model = DreamZeroDiT(get_preset("tiny"))
    load_official_dit(model, official, assign=True)
    assert model.proj_out.weight.device.type == "meta"


def test_mismatched_official_checkpoint_names_first_bad_tensor() -> None:
    official = dict(load_case("weights"))
    model = DreamZeroDiT(get_preset("tiny"))
    bad = dict(official)
    bad[OFFICIAL_DIT_PREFIX + "blocks.1.ffn.0.weight"] = torch.zeros(7, 64)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.ffn\.net\.0\.proj\.weight.*\(7, 64\)"):
        load_official_dit(model, bad)
    missing = dict(official)
    del missing[OFFICIAL_DIT_PREFIX + "head.modulation"]
    with pytest.raises(CheckpointError, match="missing tensor 'scale_shift_table'"):
        load_official_dit(model, missing)


def test_pipeline_round_trip(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pipe = WorldActionPipeline.from_preset("tiny", seed=3)
    pipe.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["format"] == "dreamzero-ros"
    loaded = WorldActionPipeline.from_pretrained(tmp_path)
    for name in ("dit", "text_encoder", "image_encoder", "vae"):
        a, b = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    frame = np.random.default_rng(0).integers(0, 255, (1, *pipe.image_size, 3), dtype=np.uint8)
    state = np.zeros(8, np.float32)
    assert np.array_equal(pipe.infer(frame, state, "go").actions, loaded.infer(frame, state, "go").actions)


def test_corrupt_and_mismatched_our_format_names_first_bad_tensor(tmp_path: Path) -> None:
    pipe = WorldActionPipeline.from_preset("tiny", seed=3)
    pipe.save_pretrained(tmp_path)
    dit_file = tmp_path / "dit.safetensors"
    good = load_file(str(dit_file))
    corrupt = dict(good)
    corrupt["blocks.0.attn1.to_q.weight"] = torch.full_like(good["blocks.0.attn1.to_q.weight"], float("nan"))
    save_file(corrupt, str(dit_file))
    with pytest.raises(CheckpointError, match=r"\[dit\].*blocks\.0\.attn1\.to_q\.weight.*non-finite"):
        WorldActionPipeline.from_pretrained(tmp_path)
    shaped = dict(good)
    shaped["action_decoder.layer2.weight"] = torch.zeros(8, CFG_HIDDEN)
    save_file(shaped, str(dit_file))
    with pytest.raises(CheckpointError, match=r"action_decoder\.layer2\.weight.*\(8, 48\)"):
        WorldActionPipeline.from_pretrained(tmp_path)
    extra = {**good, "blocks.9.extra": torch.zeros(1)}
    save_file(extra, str(dit_file))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'blocks\.9\.extra'"):
        WorldActionPipeline.from_pretrained(tmp_path)
    dit_file.write_bytes(dit_file.read_bytes()[:100])  # truncated file
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        WorldActionPipeline.from_pretrained(tmp_path)


CFG_HIDDEN = get_preset("tiny").hidden_size


def test_sharded_component_round_trip(tmp_path: Path) -> None:
    sd = {f"t{i}": torch.full((256,), float(i)) for i in range(5)}
    save_component(sd, tmp_path, "part", max_shard_bytes=2048)
    assert (tmp_path / "part.index.json").is_file() and len(list(tmp_path.glob("part-*.safetensors"))) == 3
    back = load_component(tmp_path, "part")
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
