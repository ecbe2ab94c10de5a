"""Official checkpoint import verified from the parameter manifests (meta device, no download).

For the 14B, 5B and LoRA-wrapped 14B manifests (every official tensor name and shape), a meta-device state dict is
converted and loaded strictly into our DiT, UMT5 text encoder, CLIP vision tower and Wan VAE: every official tensor
is consumed (or is one of the two documented CLIP tensors the official model never applies), every shape is equal,
nothing is left over. Parameter totals are checked against the numbers in dreamzero-architecture.md §2.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dreamzero_policy.model.checkpoint import CheckpointError
from dreamzero_policy.model.configuration_dreamzero import DreamZeroConfig, get_preset
from dreamzero_policy.model.encoders import build_image_encoder, build_text_encoder, build_vae
from dreamzero_policy.model.import_official import (
    COMPONENT_PREFIXES,
    DROPPED_IMAGE_ENCODER_TENSORS,
    load_official_state_dict,
    merge_lora,
)
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT
from torch import nn

MANIFESTS = Path(__file__).resolve().parents[4] / "test" / "fixtures" / "reference"
# dreamzero-architecture.md §2.1: parameters per component of the official models
DOC_COUNTS = {
    "dreamzero-14b-droid": dict(
        dit=16_484_292_448, text_encoder=5_680_910_336, image_encoder=632_076_801, vae=126_892_531
    ),
    "dreamzero-5b-wan22": dict(
        dit=5_606_692_832, text_encoder=5_680_910_336, image_encoder=632_076_801, vae=704_688_668
    ),
}
DOC_COUNTS["dreamzero-14b-droid-lora"] = DOC_COUNTS["dreamzero-14b-droid"]
PRESET = {
    "dreamzero-14b-droid": "dreamzero-14b",
    "dreamzero-14b-droid-lora": "dreamzero-14b",
    "dreamzero-5b-wan22": "dreamzero-5b",
}


def _manifest(name: str) -> dict[str, torch.Tensor]:
    path = MANIFESTS / f"{name}.params.jsonl"
    out: dict[str, torch.Tensor] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out[row["name"]] = torch.empty(row["shape"], dtype=getattr(torch, row["dtype"]), device="meta")
    return out


def _modules(cfg: DreamZeroConfig) -> dict[str, nn.Module]:
    with torch.device("meta"):
        return {
            "dit": DreamZeroDiT(cfg),
            "text_encoder": build_text_encoder(cfg),
            "image_encoder": build_image_encoder(cfg),
            "vae": build_vae(cfg),
        }


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() counts a tied table once


@pytest.mark.parametrize("name", ["dreamzero-14b-droid", "dreamzero-5b-wan22", "dreamzero-14b-droid-lora"])
def test_manifest_converts_and_loads_strictly(name: str) -> None:
    official = _manifest(name)
    n_official = len(official)
    merged, n_lora = merge_lora(official)
    assert not any("lora_" in k or "base_model" in k for k in merged)
    if name.endswith("lora"):
        assert n_lora == 400  # 40 blocks x (q, k, v, o of self- and cross-attn + ffn.0 + ffn.2)
        lora_params = sum(t.numel() for k, t in official.items() if ".lora_" in k)
        assert lora_params == 19_169_280  # §2.1
        assert len(merged) == n_official - 2 * n_lora
    else:
        assert n_lora == 0 and len(merged) == n_official
    modules = _modules(get_preset(PRESET[name]))
    expected_shapes = {c: {k: tuple(v.shape) for k, v in m.state_dict().items()} for c, m in modules.items()}
    report = load_official_state_dict(merged, assign=True, **modules)
    assert set(report.loaded) == set(COMPONENT_PREFIXES)
    assert report.dropped == tuple("action_head.image_encoder.model." + k for k in DROPPED_IMAGE_ENCODER_TENSORS)
    vae = modules["vae"]
    assert len(vae.config.latents_mean) == len(vae.config.latents_std) == vae.config.z_dim
    text = modules["text_encoder"]
    assert text.shared.weight is text.encoder.embed_tokens.weight  # one table, as in the official encoder
    for comp, module in modules.items():
        after = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert after == expected_shapes[comp], comp  # nothing added or reshaped by assign
        assert report.loaded[comp] == len(after), comp
        # every tensor of our module came from the checkpoint, so the totals match the official model
        official_total = sum(t.numel() for k, t in merged.items() if k.startswith(COMPONENT_PREFIXES[comp]))
        assert official_total == DOC_COUNTS[name][comp], comp
        dropped = sum(merged[k].numel() for k in report.dropped if k.startswith(COMPONENT_PREFIXES[comp]))
        assert _params(module) + dropped == official_total, comp


@pytest.fixture(scope="module")
def five_b() -> dict[str, torch.Tensor]:
    return _manifest("dreamzero-5b-wan22")


def _only(sd: dict[str, torch.Tensor], comp: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if k.startswith(COMPONENT_PREFIXES[comp])}


def test_manifest_missing_vae_tensor_is_named(five_b: dict[str, torch.Tensor]) -> None:
    sd = _only(five_b, "vae")
    del sd["action_head.vae.model.decoder.upsamples.2.upsamples.0.shortcut.weight"]
    with torch.device("meta"):
        vae = build_vae(get_preset("dreamzero-5b"))
    with pytest.raises(
        CheckpointError, match=r"\[vae\] missing tensor 'decoder\.up_blocks\.2\.resnets\.0\.conv_shortcut"
    ):
        load_official_state_dict(sd, vae=vae, assign=True)


def test_manifest_misshaped_text_encoder_tensor_is_named(five_b: dict[str, torch.Tensor]) -> None:
    sd = _only(five_b, "text_encoder")
    sd["action_head.text_encoder.blocks.3.ffn.fc1.weight"] = torch.empty(10240, 4000, device="meta")
    with torch.device("meta"):
        text = build_text_encoder(get_preset("dreamzero-5b"))
    with pytest.raises(CheckpointError, match=r"\[text_encoder\].*block\.3\.layer\.1\.DenseReluDense\.wi_1.*4000"):
        load_official_state_dict(sd, text_encoder=text, assign=True)


def test_manifest_unknown_tensor_is_named(five_b: dict[str, torch.Tensor]) -> None:
    sd = _only(five_b, "image_encoder")
    sd["action_head.image_encoder.model.visual.transformer.0.attn.bogus.weight"] = torch.empty(3, device="meta")
    with torch.device("meta"):
        clip = build_image_encoder(get_preset("dreamzero-5b"))
    with pytest.raises(CheckpointError, match=r"visual\.transformer\.0\.attn\.bogus\.weight"):
        load_official_state_dict(sd, image_encoder=clip, assign=True)
    with pytest.raises(CheckpointError, match=r"'action_head\.extra\.weight'.*not under any"):
        load_official_state_dict({"action_head.extra.weight": torch.empty(1, device="meta")})


def test_manifest_component_without_module_is_left_over(five_b: dict[str, torch.Tensor]) -> None:
    sd = {**_only(five_b, "vae"), **_only(five_b, "image_encoder")}
    with torch.device("meta"):
        vae = build_vae(get_preset("dreamzero-5b"))
    with pytest.raises(CheckpointError, match=r"action_head\.image_encoder\.model\..*left over"):
        load_official_state_dict(sd, vae=vae, assign=True)
    report = load_official_state_dict(sd, vae=vae, assign=True, skip=("image_encoder",))
    assert report.skipped == ("image_encoder",) and set(report.loaded) == {"vae"}
    with pytest.raises(CheckpointError, match="no dit tensors"):
        load_official_state_dict(sd, dit=DreamZeroDiT(get_preset("tiny")), skip=("vae", "image_encoder"))


def test_wan21_vae_layout_rejected_by_wan22_vae(five_b: dict[str, torch.Tensor]) -> None:
    """The Wan2.1 (14B) VAE names do not load into the Wan2.2 (5B) VAE: the first bad tensor is named."""
    sd = _only(_manifest("dreamzero-14b-droid"), "vae")
    with torch.device("meta"):
        vae = build_vae(get_preset("dreamzero-5b"))
    with pytest.raises(CheckpointError, match=r"\[vae\].*(encoder\.downsamples\.0\.residual|conv_in\.weight)"):
        load_official_state_dict(sd, vae=vae, assign=True)
