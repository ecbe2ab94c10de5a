"""DreamZero model configuration (a frozen, validated dataclass) and the preset registry.

A preset is data: every size of the DiT, of the action register and of the (local, random) encoders, plus the
official inference defaults. Nothing here builds a module; ``modeling_dreamzero`` and ``encoders`` read it.

Sizes follow the official ``CausalWanModel`` constructor (see ``shared/reference/dreamzero-architecture.md`` §1.5).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OFFICIAL_DIT_STEP_MASK",
    "DreamZeroConfig",
    "EncoderConfig",
    "get_preset",
    "preset_names",
]

# Steps of the 16-step grid at which the official head evaluates the DiT (NUM_DIT_STEPS unset -> 8).
OFFICIAL_DIT_STEP_MASK: tuple[bool, ...] = tuple(i in (0, 1, 2, 6, 10, 13, 14, 15) for i in range(16))

WAN_NEGATIVE_PROMPT = (
    "Vibrant colors, overexposed, static, blurry details, text, subtitles, style, artwork, painting, image, still, "
    "grayscale, dull, worst quality, low quality, JPEG artifacts, ugly, mutilated, extra fingers, bad hands, bad "
    "face, deformed, disfigured, mutated limbs, fused fingers, stagnant image, cluttered background, three legs, "
    "many people in the background, walking backwards."
)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the text encoder (UMT5), image encoder (CLIP vision tower) and video VAE (Wan).

    For ``tiny``/``small`` these are small random models built locally; for the 14B/5B presets they describe
    the official encoders (whose weights must be imported, never downloaded at run time).
    """

    tokenizer: str = "bytes"  # "bytes": the local byte-level tokenizer; anything else must be injected
    text_vocab_size: int = 384
    text_layers: int = 1
    text_heads: int = 2
    text_d_kv: int = 16
    text_d_ff: int = 64
    text_rel_buckets: int = 8
    clip_layers: int = 1
    clip_heads: int = 8
    clip_intermediate: int = 1280
    clip_image_size: int = 32
    clip_patch_size: int = 2
    clip_use_penultimate: bool = True  # official: output of block 31 of 32, no post-norm
    vae_base_dim: int = 8
    vae_decoder_base_dim: int | None = None
    vae_num_res_blocks: int = 1
    vae_is_residual: bool = False  # Wan2.2 VAE
    vae_patch_size: int | None = None  # Wan2.2 VAE pixel-unshuffle factor
    vae_spatial_factor: int = 8
    vae_temporal_factor: int = 4

    def __post_init__(self) -> None:
        for name in (
            "text_vocab_size",
            "text_layers",
            "text_heads",
            "text_d_kv",
            "text_d_ff",
            "text_rel_buckets",
            "clip_layers",
            "clip_heads",
            "clip_intermediate",
            "clip_image_size",
            "clip_patch_size",
            "vae_base_dim",
            "vae_num_res_blocks",
            "vae_spatial_factor",
            "vae_temporal_factor",
        ):
            _positive(f"encoders.{name}", getattr(self, name))
        if self.clip_image_size % self.clip_patch_size:
            raise ValueError("encoders.clip_image_size must be a multiple of encoders.clip_patch_size")


@dataclass(frozen=True)
class DreamZeroConfig:
    """Every size of the DreamZero world action model. Units: latent frames, tokens, channels.

    Derived (properties): ``head_dim``, ``rope_split`` (temporal, height, width dims of a head),
    ``tokens_per_frame``, ``local_attn_frames``, ``max_attention_tokens``, ``image_size`` (pixels).
    """

    name: str = "custom"
    # --- DiT backbone (Wan2.x names) ---
    dim: int = 64
    ffn_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    in_dim: int = 36
    out_dim: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    freq_dim: int = 256
    text_dim: int = 24
    text_len: int = 8
    use_clip: bool = True  # i2v / ti2v: CLIP tokens prepended to the cross-attention context
    clip_dim: int = 1280
    clip_tokens: int = 257
    concat_first_frame_latent: bool = True  # 14B: DiT input = [noisy latent | mask(4) | first-frame latent]
    mask_channels: int = 4
    eps: float = 1e-6
    rope_theta: float = 10000.0
    # --- latent geometry of one model frame (cameras already tiled) ---
    latent_height: int = 4
    latent_width: int = 8
    # --- action register ---
    num_frame_per_block: int = 2
    num_action_per_block: int = 6
    num_state_per_block: int = 1
    action_dim: int = 32
    max_state_dim: int = 64
    hidden_size: int = 48  # MLP width of the state encoder and the action decoder
    max_chunk_size: int = 4  # blocks per KV-cache lifetime; local attention window = max_chunk_size*nfpb + 1
    # --- training ---
    num_train_timesteps: int = 1000
    train_shift: float = 5.0
    # official: the state token attends only to itself in training (to everything at inference)
    state_token_self_only: bool = True
    # --- inference defaults (official values hard-coded in WANPolicyHead.__init__) ---
    num_inference_steps: int = 16
    dit_step_mask: tuple[bool, ...] = OFFICIAL_DIT_STEP_MASK
    cfg_scale: float = 5.0
    sigma_shift: float = 5.0
    sigma_max: float = 0.999
    seed: int = 1140
    num_pixel_frames: int = 33  # pixel frames behind the session's y (first frame + zeros)
    negative_prompt: str = WAN_NEGATIVE_PROMPT
    encoders: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        for name in (
            "dim",
            "ffn_dim",
            "num_layers",
            "num_heads",
            "in_dim",
            "out_dim",
            "freq_dim",
            "text_dim",
            "text_len",
            "clip_dim",
            "clip_tokens",
            "mask_channels",
            "latent_height",
            "latent_width",
            "num_frame_per_block",
            "num_action_per_block",
            "num_state_per_block",
            "action_dim",
            "max_state_dim",
            "hidden_size",
            "max_chunk_size",
            "num_train_timesteps",
            "num_inference_steps",
            "num_pixel_frames",
        ):
            _positive(name, getattr(self, name))
        if len(self.patch_size) != 3 or any(not isinstance(p, int) or p <= 0 for p in self.patch_size):
            raise ValueError(f"patch_size must be 3 positive ints, got {self.patch_size!r}")
        if self.patch_size[0] != 1:
            raise ValueError("patch_size[0] (temporal) must be 1: the block-causal layout is per latent frame")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim {self.head_dim} must be even and >= 6 (3-axis complex RoPE)")
        if self.freq_dim % 2 or self.dim % 2:
            raise ValueError("freq_dim and dim must be even (sinusoidal embeddings)")
        if self.latent_height % self.patch_size[1] or self.latent_width % self.patch_size[2]:
            raise ValueError(
                f"latent frame {self.latent_height}x{self.latent_width} is not divisible by patch {self.patch_size}"
            )
        expected_in = self.out_dim + (self.mask_channels + self.out_dim if self.concat_first_frame_latent else 0)
        if self.in_dim != expected_in:
            raise ValueError(
                f"in_dim {self.in_dim} does not match out_dim {self.out_dim} with "
                f"concat_first_frame_latent={self.concat_first_frame_latent} (expected {expected_in})"
            )
        if self.num_action_per_block % self.num_state_per_block:
            raise ValueError("num_action_per_block must be a multiple of num_state_per_block")
        if len(self.dit_step_mask) != self.num_inference_steps:
            raise ValueError(
                f"dit_step_mask has {len(self.dit_step_mask)} entries, expected num_inference_steps="
                f"{self.num_inference_steps}"
            )
        if not self.dit_step_mask or not self.dit_step_mask[0]:
            raise ValueError("dit_step_mask[0] must be True: step 0 has no earlier velocity to reuse")
        for name in ("cfg_scale", "sigma_shift", "train_shift", "eps", "rope_theta"):
            v = getattr(self, name)
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be finite and > 0, got {v!r}")
        if not 0.0 < self.sigma_max <= 1.0:
            raise ValueError(f"sigma_max must be in (0, 1], got {self.sigma_max}")
        if (self.num_pixel_frames - 1) % self.encoders.vae_temporal_factor:
            raise ValueError("num_pixel_frames must be 1 + k * encoders.vae_temporal_factor")
        if self.num_latent_frames_per_session < self.local_attn_frames:
            raise ValueError("num_pixel_frames is too small to cover one KV-cache lifetime")

    # --- derived sizes ---
    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_split(self) -> tuple[int, int, int]:
        """Channels of a head rotated by frame, row and column (official: d - 4*(d//6), 2*(d//6), 2*(d//6))."""
        d = self.head_dim
        return d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)

    @property
    def tokens_per_frame(self) -> int:
        return (self.latent_height // self.patch_size[1]) * (self.latent_width // self.patch_size[2])

    @property
    def local_attn_frames(self) -> int:
        return self.max_chunk_size * self.num_frame_per_block + 1

    @property
    def max_attention_tokens(self) -> int:
        return self.local_attn_frames * self.tokens_per_frame

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels of one model frame."""
        s = self.encoders.vae_spatial_factor
        return self.latent_height * s, self.latent_width * s

    @property
    def num_latent_frames_per_session(self) -> int:
        return 1 + (self.num_pixel_frames - 1) // self.encoders.vae_temporal_factor

    @property
    def action_horizon(self) -> int:
        return self.num_action_per_block

    @property
    def y_channels(self) -> int:
        return self.mask_channels + self.out_dim if self.concat_first_frame_latent else 0

    # --- (de)serialisation: JSON-friendly dict, strict on unknown keys ---
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DreamZeroConfig:
        if not isinstance(data, dict):
            raise ValueError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {unknown}")
        kwargs = dict(data)
        enc = kwargs.pop("encoders", {})
        if not isinstance(enc, dict):
            raise ValueError("config key 'encoders' must be an object")
        enc_known = {f.name for f in dataclasses.fields(EncoderConfig)}
        if set(enc) - enc_known:
            raise ValueError(f"unknown encoders key(s): {sorted(set(enc) - enc_known)}")
        for key in ("patch_size", "dit_step_mask"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs, encoders=EncoderConfig(**enc))

    def replace(self, **changes: Any) -> DreamZeroConfig:
        return dataclasses.replace(self, **changes)


# --- presets --------------------------------------------------------------------------------------

# Tens of M DiT params; the `small` configuration of the official CPU timings (performance-anchors.md).
_SMALL: dict[str, Any] = dict(
    dim=512,
    ffn_dim=2048,
    num_layers=8,
    num_heads=8,
    text_dim=512,
    text_len=32,
    latent_height=8,
    latent_width=16,
    num_action_per_block=24,
    hidden_size=1024,
    encoders=dict(
        text_vocab_size=384,
        text_layers=2,
        text_heads=8,
        text_d_kv=64,
        text_d_ff=1024,
        text_rel_buckets=16,
        vae_base_dim=16,
    ),
)

# The text and image encoders both official backbones use: UMT5-XXL and open-clip ViT-H/14.
_UMT5_XXL_CLIP_H: dict[str, Any] = dict(
    tokenizer="umt5-xxl",
    text_vocab_size=256384,
    text_layers=24,
    text_heads=64,
    text_d_kv=64,
    text_d_ff=10240,
    text_rel_buckets=32,
    clip_layers=32,
    clip_heads=16,
    clip_intermediate=5120,
    clip_image_size=224,
    clip_patch_size=14,
)

_PRESETS: dict[str, dict[str, Any]] = {
    # The parity fixture's official tiny CausalWanModel (shared/reference/parity/config.json).
    "tiny": {},
    "small": _SMALL,
    # `small` in the 1-step ("Flash") mode without CFG: one DiT evaluation per chunk instead of 16 steps x 2
    # (cond + uncond) with 8 skipped. For the CPU demo, where `small`'s ~3-9 s per chunk cannot keep up.
    "small-flash": {**_SMALL, "num_inference_steps": 1, "dit_step_mask": (True,), "cfg_scale": 1.0},
    # Wan2.1-I2V-14B backbone, DROID I/O: 3-view mosaic 352x640 -> 44x80 latent (880 tokens/frame).
    "dreamzero-14b": dict(
        dim=5120,
        ffn_dim=13824,
        num_layers=40,
        num_heads=40,
        text_dim=4096,
        text_len=512,
        latent_height=44,
        latent_width=80,
        num_action_per_block=24,
        hidden_size=1024,
        encoders=dict(
            **_UMT5_XXL_CLIP_H,
            vae_base_dim=96,
            vae_num_res_blocks=2,
        ),
    ),
    # Wan2.2-TI2V-5B backbone: 48-channel latent, VAE x16 spatial, no y concat; mosaic 160x320 -> 10x20.
    "dreamzero-5b": dict(
        dim=3072,
        ffn_dim=14336,
        num_layers=30,
        num_heads=24,
        in_dim=48,
        out_dim=48,
        concat_first_frame_latent=False,
        text_dim=4096,
        text_len=512,
        latent_height=10,
        latent_width=20,
        num_action_per_block=24,
        hidden_size=1024,
        encoders=dict(
            **_UMT5_XXL_CLIP_H,
            vae_base_dim=160,
            vae_decoder_base_dim=256,
            vae_num_res_blocks=2,
            vae_is_residual=True,
            vae_patch_size=2,
            vae_spatial_factor=16,
        ),
    ),
}


def preset_names() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str, **overrides: Any) -> DreamZeroConfig:
    """The named preset as a validated config; ``overrides`` replace top-level fields.

    Raises:
        KeyError: unknown name (the message suggests the closest names).
    """
    if name not in _PRESETS:
        close = difflib.get_close_matches(str(name), list(_PRESETS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown DreamZero preset {name!r}.{hint} Known presets: {', '.join(preset_names())}")
    data = {k: v for k, v in _PRESETS[name].items() if k != "encoders"}
    enc = EncoderConfig(**_PRESETS[name].get("encoders", {}))
    return DreamZeroConfig(name=name, encoders=enc, **{**data, **overrides})
