"""LoRA on the DiT with peft (injected in place, so ``DreamZeroDiT.forward_train`` is unchanged).

Official (architecture reference §7): rank 4, alpha 4, kaiming-uniform A / zero B, targets the q/k/v/o
projections of self- and cross-attention and both FFN linears of every block (not the image-token K/V);
the state encoder, action encoder and action decoder are fully trainable; everything else is frozen.

``merged_state_dict`` folds W + (alpha/r)·B·A into plain DiT keys without touching the live model, which is
what ``WorldActionPipeline.from_pretrained`` (and so the policy node) loads.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from .configs import LORA_FULLY_TRAINED, TrainConfig

__all__ = ["apply_lora", "is_lora", "lora_state_dict", "merged_state_dict", "trainable_names"]

ADAPTER = "default"


def apply_lora(dit: nn.Module, config: TrainConfig) -> nn.Module:
    """Inject LoRA layers into ``dit`` in place and set ``requires_grad`` (LoRA + action register only)."""
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=config.lora_targets,
        lora_dropout=0.0,
        bias="none",
        init_lora_weights=True,
    )
    inject_adapter_in_model(lora, dit, adapter_name=ADAPTER)
    for name, p in dit.named_parameters():
        p.requires_grad_("lora_" in name or name.startswith(LORA_FULLY_TRAINED))
    return dit


def is_lora(dit: nn.Module) -> bool:
    return any(isinstance(m, LoraLayer) for m in dit.modules())


def trainable_names(dit: nn.Module) -> list[str]:
    return [n for n, p in dit.named_parameters() if p.requires_grad]


def lora_state_dict(dit: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors only (LoRA A/B + action register), for resuming a LoRA run."""
    return {n: p.detach() for n, p in dit.named_parameters() if p.requires_grad}


@torch.no_grad()
def merged_state_dict(dit: nn.Module) -> dict[str, torch.Tensor]:
    """Plain ``DreamZeroDiT`` keys with every LoRA delta folded into its base weight (fp32 sum, cast back)."""
    if not is_lora(dit):
        return {k: v.detach() for k, v in dit.state_dict().items()}
    deltas: dict[str, torch.Tensor] = {}
    for name, module in dit.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            deltas[f"{name}.weight"] = module.get_delta_weight(ADAPTER)
    out: dict[str, torch.Tensor] = {}
    for key, value in dit.state_dict().items():
        if ".lora_" in key:
            continue
        plain = key.replace(".base_layer.", ".")
        if plain in deltas:
            value = (value.float() + deltas[plain].float()).to(value.dtype)
        out[plain] = value.detach()
    return out
