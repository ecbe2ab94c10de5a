"""The model side of training: building the components, encoding a collated batch with the frozen encoders,
and the loss module that ``accelerate`` wraps (DDP needs the loss computed inside ``forward``).

Encoders (UMT5, CLIP, Wan VAE) are always frozen and run without autograd, exactly as the inference pipeline
runs them (``model.encoders``): text -> context, the clip's first frame -> CLIP tokens, the clip -> latents,
and y = mask + VAE latent of [first frame, zeros...] over the clip's frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dreamzero_policy.model.configuration_dreamzero import DreamZeroConfig, get_preset
from dreamzero_policy.model.encoders import encode_clip, encode_text, frames_to_video_tensor, vae_encode
from dreamzero_policy.model.losses import FlowMatchingLoss, TrainBatch
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT
from dreamzero_policy.model.pipeline import WorldActionPipeline

from .configs import TrainConfig, TrainingError

__all__ = ["Components", "FrozenEncoders", "LossModule", "build_components", "plain_dit"]


@dataclass
class Components:
    config: DreamZeroConfig
    dit: DreamZeroDiT
    text_encoder: nn.Module
    image_encoder: nn.Module | None
    vae: nn.Module
    tokenizer: Any


def build_components(config: TrainConfig, device: torch.device | str = "cpu") -> Components:
    """The initial model: ``init_checkpoint`` (our format) or the preset with seeded random weights."""
    try:
        if config.init_checkpoint:
            pipe = WorldActionPipeline.from_pretrained(config.init_checkpoint, device=str(device))
        else:
            pipe = WorldActionPipeline.from_config(get_preset(config.preset), seed=config.seed, device=str(device))
    except (KeyError, ValueError, OSError) as exc:
        raise TrainingError(f"cannot build the initial model: {exc}") from None
    for module in (pipe.text_encoder, pipe.image_encoder, pipe.vae):
        if module is not None:
            module.eval().requires_grad_(False)
    pipe.dit.train()
    pipe.dit.gradient_checkpointing = config.gradient_checkpointing
    return Components(pipe.config, pipe.dit, pipe.text_encoder, pipe.image_encoder, pipe.vae, pipe.tokenizer)


def plain_dit(config: DreamZeroConfig, state_dict: dict[str, torch.Tensor]) -> DreamZeroDiT:
    """A plain (no LoRA) DiT whose tensors are ``state_dict``'s (assigned, not copied)."""
    with torch.device("meta"):
        dit = DreamZeroDiT(config)
    dit.load_state_dict(state_dict, strict=True, assign=True)
    return dit.eval()


class FrozenEncoders:
    """Collated samples (``datasets.collate``) -> ``TrainBatch`` on ``device``; prompt embeddings are cached."""

    def __init__(self, comps: Components, device: torch.device) -> None:
        self.c, self.device = comps, device
        self._text: dict[str, torch.Tensor] = {}

    def context(self, prompt: str) -> torch.Tensor:
        hit = self._text.get(prompt)
        if hit is None:
            if len(self._text) > 256:
                self._text.clear()
            hit = self._text[prompt] = encode_text(
                self.c.tokenizer, self.c.text_encoder, prompt, self.c.config.text_len
            ).clone()
        return hit

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> TrainBatch:
        cfg, dev = self.c.config, self.device
        video = batch["video"]  # uint8 [B, T, H, W, 3]
        if video.shape[2:4] != torch.Size(cfg.image_size):
            raise TrainingError(f"video frames are {tuple(video.shape[2:4])}, the model takes {cfg.image_size}")
        latents, ys, clips = [], [], []
        for sample in video.numpy():
            clip = frames_to_video_tensor(sample)
            latents.append(vae_encode(self.c.vae, clip).float().clone())
            if cfg.concat_first_frame_latent:
                first = torch.zeros_like(clip)
                first[:, :, :1] = clip[:, :, :1]
                lat = vae_encode(self.c.vae, first).float().clone()
                mask = torch.zeros(1, cfg.mask_channels, *lat.shape[2:], device=lat.device)
                mask[:, :, 0] = 1.0
                ys.append(torch.cat([mask, lat], dim=1))
            if cfg.use_clip:
                clips.append(encode_clip(self.c.image_encoder, sample[0], cfg.encoders.clip_use_penultimate).clone())
        context = torch.cat([self.context(p) for p in batch["prompt"]])

        def to(x: torch.Tensor) -> torch.Tensor:
            return x.to(dev, torch.float32)

        return TrainBatch(
            latents=to(torch.cat(latents)),
            context=to(context),
            state=to(batch["state"]),
            actions=to(batch["actions"]),
            action_mask=to(batch["action_mask"]),
            has_action=to(batch["has_action"]),
            y=to(torch.cat(ys)) if ys else None,
            clip_feature=to(torch.cat(clips)) if clips else None,
        )


def video_index(
    config: TrainConfig,
    shape: tuple[int, int],
    num_steps: int,
    rng: np.random.Generator,
) -> torch.Tensor | None:
    """Per-frame grid indices [B, F] for ``video_noise='high'``: sigma_raw = 1 - index/N ~ Beta(3, 1), i.e.
    mostly high noise (the Flash recipe); None keeps the loss's uniform draw."""
    if config.video_noise != "high":
        return None
    u = rng.beta(3.0, 1.0, size=shape)
    return torch.from_numpy(np.clip(((1.0 - u) * num_steps).astype(np.int64), 0, num_steps - 1))


class LossModule(nn.Module):
    """``forward(batch, generator, np_rng) -> (loss, video_loss, action_loss)``; owns the DiT as ``dit``."""

    def __init__(self, dit: DreamZeroDiT, config: TrainConfig) -> None:
        super().__init__()
        self.dit, self.config = dit, config
        self.loss = FlowMatchingLoss(dit, decouple_action_noise=config.decouple_action_noise)

    def forward(
        self,
        batch: TrainBatch,
        generator: torch.Generator,
        np_rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, f = batch.latents.shape[:3]
        idx = video_index(self.config, (b, f), self.dit.config.num_train_timesteps, np_rng)
        out = self.loss(
            batch, generator=generator, timestep_id_raw=None if idx is None else idx.to(batch.latents.device)
        )
        total = self.config.video_loss_weight * out.dynamics_loss + self.config.action_loss_weight * out.action_loss
        return total, out.dynamics_loss.detach(), out.action_loss.detach()
