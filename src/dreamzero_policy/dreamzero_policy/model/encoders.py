"""The frozen encoders around the DiT: tokenizer + UMT5 text encoder, CLIP vision tower, Wan video VAE.

For ``tiny``/``small`` presets they are tiny random models built locally from the preset's ``EncoderConfig``
(no download exists or is attempted). Real encoders are injected into ``WorldActionPipeline`` after importing
their weights. Each function documents the official preprocessing it reproduces.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

from .configuration_dreamzero import DreamZeroConfig

__all__ = [
    "ByteTokenizer",
    "Tokenizer",
    "build_image_encoder",
    "build_text_encoder",
    "build_vae",
    "encode_clip",
    "encode_text",
    "frames_to_video_tensor",
    "vae_decode",
    "vae_encode",
]

# Wan2.2 (48-channel) VAE latent normalisation constants (plain attributes of the official VAE, not in any
# state dict; the Wan2.1 16-channel ones are diffusers' AutoencoderKLWan defaults).
WAN22_LATENTS_MEAN = (
    -0.2289,
    -0.0052,
    -0.1323,
    -0.2339,
    -0.2799,
    0.0174,
    0.1838,
    0.1557,
    -0.1382,
    0.0542,
    0.2813,
    0.0891,
    0.1570,
    -0.0098,
    0.0375,
    -0.1825,
    -0.2246,
    -0.1207,
    -0.0698,
    0.5109,
    0.2665,
    -0.2108,
    -0.2158,
    0.2502,
    -0.2055,
    -0.0322,
    0.1109,
    0.1567,
    -0.0729,
    0.0899,
    -0.2799,
    -0.1230,
    -0.0313,
    -0.1649,
    0.0117,
    0.0723,
    -0.2839,
    -0.2083,
    -0.0520,
    0.3748,
    0.0152,
    0.1957,
    0.1433,
    -0.2944,
    0.3573,
    -0.0548,
    -0.1681,
    -0.0667,
)
WAN22_LATENTS_STD = (
    0.4765,
    1.0364,
    0.4514,
    1.1677,
    0.5313,
    0.4990,
    0.4818,
    0.5013,
    0.8158,
    1.0344,
    0.5894,
    1.0901,
    0.6885,
    0.6165,
    0.8454,
    0.4978,
    0.5759,
    0.3523,
    0.7135,
    0.6804,
    0.5833,
    1.4146,
    0.8986,
    0.5659,
    0.7069,
    0.5338,
    0.4889,
    0.4917,
    0.4069,
    0.4999,
    0.6866,
    0.4093,
    0.5709,
    0.6065,
    0.6415,
    0.4944,
    0.5726,
    1.2042,
    0.5458,
    1.6887,
    0.3971,
    1.0600,
    0.3943,
    0.5537,
    0.5444,
    0.4089,
    0.7468,
    0.7744,
)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Tokenizer(Protocol):
    def __call__(self, text: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (input_ids [1, max_length] int64, attention_mask [1, max_length] int64)."""
        ...


class ByteTokenizer:
    """Deterministic local tokenizer: UTF-8 bytes + 3 (0 = pad, 1 = eos, 2 = unk), eos appended, padded/truncated.

    Stands in for ``google/umt5-xxl`` (not downloadable here) for the small random text encoders.
    """

    pad_id, eos_id, offset = 0, 1, 3
    vocab_size = 256 + 3

    def __call__(self, text: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(text, str):
            raise ValueError(f"prompt must be a str, got {type(text).__name__}")
        ids = [*[b + self.offset for b in " ".join(text.split()).encode("utf-8")][: max_length - 1], self.eos_id]
        mask = [1] * len(ids) + [0] * (max_length - len(ids))
        ids = ids + [self.pad_id] * (max_length - len(ids))
        return torch.tensor([ids], dtype=torch.int64), torch.tensor([mask], dtype=torch.int64)


def build_text_encoder(cfg: DreamZeroConfig) -> UMT5EncoderModel:
    e = cfg.encoders
    conf = UMT5Config(
        vocab_size=e.text_vocab_size,
        d_model=cfg.text_dim,
        d_kv=e.text_d_kv,
        d_ff=e.text_d_ff,
        num_layers=e.text_layers,
        num_heads=e.text_heads,
        relative_attention_num_buckets=e.text_rel_buckets,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
    )
    return UMT5EncoderModel(conf).eval()


def build_image_encoder(cfg: DreamZeroConfig) -> CLIPVisionModel:
    e = cfg.encoders
    conf = CLIPVisionConfig(
        hidden_size=cfg.clip_dim,
        intermediate_size=e.clip_intermediate,
        num_hidden_layers=e.clip_layers,
        num_attention_heads=e.clip_heads,
        image_size=e.clip_image_size,
        patch_size=e.clip_patch_size,
        hidden_act="gelu",
    )
    tokens = (e.clip_image_size // e.clip_patch_size) ** 2 + 1
    if tokens != cfg.clip_tokens:
        raise ValueError(
            f"CLIP {e.clip_image_size}px / patch {e.clip_patch_size} gives {tokens} tokens, "
            f"the DiT expects {cfg.clip_tokens}"
        )
    return CLIPVisionModel(conf).eval()


def build_vae(cfg: DreamZeroConfig) -> AutoencoderKLWan:
    e = cfg.encoders
    kwargs = dict(
        base_dim=e.vae_base_dim,
        decoder_base_dim=e.vae_decoder_base_dim,
        z_dim=cfg.out_dim,
        num_res_blocks=e.vae_num_res_blocks,
        is_residual=e.vae_is_residual,
        patch_size=e.vae_patch_size,
        scale_factor_spatial=e.vae_spatial_factor,
        scale_factor_temporal=e.vae_temporal_factor,
    )
    if e.vae_patch_size:  # Wan2.2: pixel-unshuffle by p before the encoder, so RGB enters as 3*p*p channels
        kwargs.update(in_channels=3 * e.vae_patch_size**2, out_channels=3 * e.vae_patch_size**2)
    if cfg.out_dim == 48 and e.vae_is_residual:  # the real Wan2.2 VAE (dreamzero-5b)
        kwargs.update(latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD))
    elif cfg.out_dim != 16:  # the default normalisation constants are Wan2.1's 16 channels
        kwargs.update(latents_mean=[0.0] * cfg.out_dim, latents_std=[1.0] * cfg.out_dim)
    return AutoencoderKLWan(**kwargs).eval()


@torch.inference_mode()
def encode_text(tokenizer: Tokenizer, encoder: torch.nn.Module, prompt: str, max_length: int) -> torch.Tensor:
    """Prompt -> context [1, max_length, d_model]; positions past the prompt's length are zeroed (official)."""
    ids, mask = tokenizer(prompt, max_length)
    dev = next(encoder.parameters()).device
    out = encoder(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
    return out * mask.to(dev, out.dtype)[..., None]


@torch.inference_mode()
def encode_clip(encoder: CLIPVisionModel, frame: np.ndarray, penultimate: bool = True) -> torch.Tensor:
    """One uint8 (H, W, 3) frame -> CLIP tokens [1, N, hidden]: bicubic resize (aspect not kept) to the tower's
    size, CLIP mean/std, output of the second-to-last block without post-norm (official ``use_31_block``)."""
    conf = encoder.config
    dev = next(encoder.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float().div(255.0)
    x = F.interpolate(x, size=(conf.image_size, conf.image_size), mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    out = encoder(pixel_values=x.to(dev, encoder.dtype), output_hidden_states=True)
    idx = -2 if penultimate and conf.num_hidden_layers > 1 else -1
    return out.hidden_states[idx]


def frames_to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float [1, 3, T, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)


def _stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
    return mean, std


@torch.inference_mode()
def vae_encode(vae: AutoencoderKLWan, video: torch.Tensor) -> torch.Tensor:
    """[1, 3, 1+4k, H, W] in [-1, 1] -> normalised latents (mu - mean) / std [1, C, 1+k, H/s, W/s]."""
    dev = next(vae.parameters()).device
    mu = vae.encode(video.to(dev, vae.dtype)).latent_dist.mode()
    mean, std = _stats(vae, mu)
    return (mu - mean) / std


@torch.inference_mode()
def vae_decode(vae: AutoencoderKLWan, latents: torch.Tensor) -> np.ndarray:
    """Normalised latents [1, C, F, h, w] -> uint8 (T, H, W, 3) video (T = 1 + 4(F-1))."""
    dev = next(vae.parameters()).device
    z = latents.to(dev, vae.dtype)
    mean, std = _stats(vae, z)
    video = vae.decode(z * std + mean).sample  # [1, 3, T, H, W] in [-1, 1]
    out = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return out.permute(1, 2, 3, 0).cpu().numpy()
