"""LoRA: only the official targets + the action register train, and merging is exact."""

from __future__ import annotations

import re

import torch
from dreamzero_policy.model.checkpoint import load_state_dict_checked
from dreamzero_policy.model.configuration_dreamzero import get_preset
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT
from dreamzero_policy.training.configs import get_recipe
from dreamzero_policy.training.lora import apply_lora, merged_state_dict, trainable_names

CFG = get_preset("tiny")


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    nb, f = 1, 1 + CFG.num_frame_per_block
    lat = (1, CFG.out_dim, f, CFG.latent_height, CFG.latent_width)
    return dict(
        x=torch.randn(lat, generator=g),
        timestep=torch.full((1, f), 500.0),
        clean_x=torch.randn(lat, generator=g),
        context=torch.randn(1, CFG.text_len, CFG.text_dim, generator=g),
        action=torch.randn(1, nb * CFG.num_action_per_block, CFG.action_dim, generator=g),
        timestep_action=torch.full((1, nb * CFG.num_action_per_block), 500.0),
        state=torch.randn(1, nb, CFG.max_state_dim, generator=g),
        y=torch.randn(1, CFG.y_channels, f, CFG.latent_height, CFG.latent_width, generator=g),
        clip_feature=torch.randn(1, CFG.clip_tokens, CFG.clip_dim, generator=g),
    )


def test_training_lora_trains_only_the_official_targets() -> None:
    torch.manual_seed(0)
    dit = apply_lora(DreamZeroDiT(CFG), get_recipe("lora"))
    names = trainable_names(dit)
    lora = [n for n in names if ".lora_" in n]
    wrapped = {re.sub(r"\.lora_[AB]\.default\.weight$", "", n) for n in lora}
    per_block = {n.split(".", 2)[2] for n in wrapped}
    assert per_block == {
        "attn1.to_q",
        "attn1.to_k",
        "attn1.to_v",
        "attn1.to_out.0",
        "attn2.to_q",
        "attn2.to_k",
        "attn2.to_v",
        "attn2.to_out.0",
        "ffn.net.0.proj",
        "ffn.net.2",
    }
    assert len(wrapped) == 10 * CFG.num_layers
    register = {n for n in names if ".lora_" not in n}
    assert register == {
        n for n, _ in dit.named_parameters() if n.startswith(("action_encoder.", "state_encoder.", "action_decoder."))
    }
    a = next(p for n, p in dit.named_parameters() if n.endswith("lora_A.default.weight"))
    assert a.shape[0] == 4  # rank 4


def test_training_lora_merges_back_exactly() -> None:
    torch.manual_seed(0)
    base = DreamZeroDiT(CFG)
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    dit = apply_lora(base, get_recipe("lora"))
    with torch.no_grad():  # a trained adapter: B is zero at init, so give every B a value
        for n, p in dit.named_parameters():
            if n.endswith("lora_B.default.weight"):
                p.normal_(0, 0.05)
    inputs = _inputs()
    with torch.no_grad():
        video_lora, act_lora = dit.forward_train(**inputs)
    merged = merged_state_dict(dit)
    plain = DreamZeroDiT(CFG)
    load_state_dict_checked(plain, merged)  # strict: exactly the plain DiT's keys and shapes
    with torch.no_grad():
        video, act = plain.forward_train(**inputs)
    torch.testing.assert_close(video, video_lora, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(act, act_lora, atol=1e-5, rtol=1e-5)
    changed = [k for k in reference if not torch.equal(reference[k], merged[k])]
    assert changed and all(
        re.search(r"(to_q|to_k|to_v|to_out\.0|ffn\.net\.0\.proj|ffn\.net\.2)\.weight$", k) for k in changed
    )
    # the live LoRA model is untouched by merging
    assert torch.equal(
        dict(dit.named_parameters())["blocks.0.attn1.to_q.base_layer.weight"], reference["blocks.0.attn1.to_q.weight"]
    )
