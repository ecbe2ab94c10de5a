"""``WorldActionPipeline``: pixels + state + prompt in, normalised actions out (the runtime's model contract).

One ``infer`` call mirrors the official ``lazy_joint_video_action``:
- reset (new KV caches, CLIP and y recomputed) on the first call, a changed prompt, a 1-frame input, or a full
  KV window (after ``max_chunk_size`` chunks); the conditioning frame is frame 0, or the last frame of a 4/9-frame
  input; its latent is cached at latent index 0;
- otherwise the frames are VAE-encoded (4 frames: each repeated twice + the first prepended = 9; 8: first
  prepended; 9: as is) and the last ``nfpb`` latents are written to the cache for the last predicted slot;
- then the next block is denoised (16 UniPC steps, 8-of-16 step mask, CFG on video only by default).

Session-constant work is cached: prompt and negative-prompt embeddings (per prompt), CLIP tokens, y, the
cross-attention K/V of every layer (in ``WorldActionModel``), RoPE tables and masks (in the DiT).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_component, load_state_dict_checked, save_component
from .configuration_dreamzero import DreamZeroConfig, get_preset
from .encoders import (
    ByteTokenizer,
    Tokenizer,
    build_image_encoder,
    build_text_encoder,
    build_vae,
    encode_clip,
    encode_text,
    frames_to_video_tensor,
    vae_decode,
    vae_encode,
)
from .inference import WorldActionModel
from .modeling_dreamzero import DreamZeroDiT

__all__ = ["FORMAT_VERSION", "InferenceResult", "WorldActionPipeline"]

FORMAT_VERSION = 1
_COMPONENTS = ("dit", "text_encoder", "image_encoder", "vae")


@dataclass
class InferenceResult:
    """actions: float32 (action_horizon, action_dim), normalised; video_latents: [1, C, F, h, w] predicted
    latents (call 1 also holds the observed frame-0 latent first); timings: seconds per stage."""

    actions: np.ndarray
    video_latents: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)


class WorldActionPipeline:
    """DreamZero inference from pixels. Components are injectable (tokenizer, encoders, VAE)."""

    def __init__(
        self,
        config: DreamZeroConfig,
        dit: DreamZeroDiT,
        text_encoder: torch.nn.Module,
        image_encoder: torch.nn.Module | None,
        vae: torch.nn.Module,
        tokenizer: Tokenizer | None = None,
        **session_kwargs: object,
    ) -> None:
        if config.use_clip and image_encoder is None:
            raise ValueError("this config uses CLIP tokens: an image_encoder is required")
        self.config = config
        self.dit, self.text_encoder, self.image_encoder, self.vae = dit, text_encoder, image_encoder, vae
        self.tokenizer: Tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()
        self.session = WorldActionModel(dit, **session_kwargs)  # type: ignore[arg-type]
        self._prompt_cache: dict[str, torch.Tensor] = {}
        self._prompt: str | None = None
        self.reset()

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: DreamZeroConfig, seed: int = 0, device: str = "cpu") -> WorldActionPipeline:
        """Random weights (seeded) for every component; only for presets with the local byte tokenizer."""
        if config.encoders.tokenizer != "bytes":
            raise ValueError(
                f"preset {config.name!r} needs the real {config.encoders.tokenizer} tokenizer and encoders: build the "
                "DiT alone (DreamZeroDiT) or inject them via WorldActionPipeline(...)"
            )
        torch.manual_seed(seed)
        parts = (
            DreamZeroDiT(config),
            build_text_encoder(config),
            build_image_encoder(config) if config.use_clip else None,
            build_vae(config),
        )
        dit, text, image, vae = (p.to(device).eval() if p is not None else None for p in parts)
        return cls(config, dit, text, image, vae)  # type: ignore[arg-type]

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, device: str = "cpu") -> WorldActionPipeline:
        return cls.from_config(get_preset(name), seed=seed, device=device)

    def save_pretrained(self, path: str | Path) -> None:
        """Write our format: ``config.json`` + one safetensors file (or shards + index) per component."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": "dreamzero-ros", "format_version": FORMAT_VERSION, "config": self.config.to_dict()}
        (folder / "config.json").write_text(json.dumps(meta, indent=1))
        for name in _COMPONENTS:
            module = getattr(self, name)
            if module is not None:
                save_component(module.state_dict(), folder, name)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str = "cpu",
        tokenizer: Tokenizer | None = None,
    ) -> WorldActionPipeline:
        """Load our format strictly (every tensor present, same shape, finite; nothing extra)."""
        folder = Path(path)
        try:
            meta = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{folder / 'config.json'}: unreadable ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != "dreamzero-ros" or "config" not in meta:
            raise CheckpointError(f"{folder}: not a dreamzero-ros checkpoint (config.json lacks format/config)")
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{folder}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
        config = DreamZeroConfig.from_dict(meta["config"])
        # The DiT (no buffers) is built on the meta device and its tensors assigned from the file; the encoders
        # carry non-persistent buffers (e.g. CLIP position ids), so they are built for real.
        with torch.device("meta"):
            dit = DreamZeroDiT(config)
        parts = {
            "dit": dit,
            "text_encoder": build_text_encoder(config),
            "image_encoder": build_image_encoder(config) if config.use_clip else None,
            "vae": build_vae(config),
        }
        for name, module in parts.items():
            if module is None:
                continue
            try:
                load_state_dict_checked(module, load_component(folder, name), assign=name == "dit")
            except CheckpointError as exc:
                raise CheckpointError(f"{folder} [{name}]: {exc}") from None
            module.to(device).eval()
        return cls(
            config,
            parts["dit"],
            parts["text_encoder"],
            parts["image_encoder"],
            parts["vae"],  # type: ignore[arg-type]
            tokenizer=tokenizer,
        )

    # --- the runtime contract ------------------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.image_size

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def action_horizon(self) -> int:
        return self.config.action_horizon

    @property
    def state_dim(self) -> int:
        return self.config.max_state_dim

    @property
    def frames_first_call(self) -> int:
        return 1

    @property
    def frames_per_call(self) -> int:
        return self.config.encoders.vae_temporal_factor

    def reset(self) -> None:
        """Forget the session: the next ``infer`` starts over (1 frame expected)."""
        self.session.reset()
        self._prompt = None
        self._started = False

    def _context(self, prompt: str) -> torch.Tensor:
        ctx = self._prompt_cache.get(prompt)
        if ctx is None:
            if len(self._prompt_cache) > 64:  # bounded: a long-running node may see many instructions
                self._prompt_cache.clear()
            ctx = encode_text(self.tokenizer, self.text_encoder, prompt, self.config.text_len)
            self._prompt_cache[prompt] = ctx
        return ctx

    def _check_inputs(self, frames: np.ndarray, state: np.ndarray) -> torch.Tensor:
        h, w = self.image_size
        if (
            not isinstance(frames, np.ndarray)
            or frames.dtype != np.uint8
            or frames.ndim != 4
            or frames.shape[1:] != (h, w, 3)
        ):
            desc = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
            raise ValueError(f"frames must be uint8 (T, {h}, {w}, 3), got {desc}")
        if frames.shape[0] not in (1, 4, 8, 9):
            raise ValueError(f"frames must hold 1 (session start) or 4 (8, 9) frames, got {frames.shape[0]}")
        s = np.asarray(state, dtype=np.float32)
        if s.ndim != 1 or not 0 < s.shape[0] <= self.state_dim or not np.isfinite(s).all():
            raise ValueError(f"state must be finite float32 (k,), k <= {self.state_dim}, got shape {s.shape}")
        padded = np.zeros((self.state_dim,), np.float32)
        padded[: s.shape[0]] = s  # official: zero-pad to max_state_dim
        return torch.from_numpy(padded).view(1, 1, -1).expand(1, self.config.num_state_per_block, -1)

    def _start_session(self, frames: np.ndarray, prompt: str) -> torch.Tensor:
        cfg = self.config
        frame = frames[-1] if frames.shape[0] in (4, 9) else frames[0]
        clip = encode_clip(self.image_encoder, frame, cfg.encoders.clip_use_penultimate) if cfg.use_clip else None
        if cfg.concat_first_frame_latent:
            # y: VAE latent of [first frame, black-ish zeros] over the session's pixel frames + the 4-channel mask
            video = torch.zeros(1, 3, cfg.num_pixel_frames, *self.image_size)
            video[:, :, :1] = frames_to_video_tensor(frame[None])
            lat = vae_encode(self.vae, video).to(torch.float32)
            mask = torch.zeros(1, cfg.mask_channels, *lat.shape[2:])
            mask[:, :, 0] = 1.0
            y = torch.cat([mask, lat], dim=1)
            first = lat[:, :, :1]
        else:
            y = None
            first = vae_encode(self.vae, frames_to_video_tensor(frame[None])).to(torch.float32)
        neg = self._context(cfg.negative_prompt) if self.session.uses_cfg else None
        self.session.set_conditioning(self._context(prompt), neg, clip, y)
        self.session.prefill(first)
        return first

    def infer(self, frames: np.ndarray, state: np.ndarray, prompt: str, seed: int | None = None) -> InferenceResult:
        """frames: uint8 (T, H, W, 3), T = 1 at session start else 4; state: normalised float32 (state_dim,);
        prompt: the instruction. Returns normalised actions (action_horizon, action_dim)."""
        t0 = time.perf_counter()
        st = self._check_inputs(frames, state)
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        reset = not self._started or prompt != self._prompt or frames.shape[0] == 1 or self.session.needs_reset
        first = None
        if reset:
            first = self._start_session(frames, prompt)
            self._prompt, self._started = prompt, True
        else:
            n = frames.shape[0]
            if n == 4:
                clip = np.concatenate([frames[:1], np.repeat(frames, 2, axis=0)])
            elif n == 8:
                clip = np.concatenate([frames[:1], frames])
            else:
                clip = frames
            lat = vae_encode(self.vae, frames_to_video_tensor(clip)).to(torch.float32)
            self.session.append_observed(lat[:, :, -self.config.num_frame_per_block :])
        t_enc = time.perf_counter() - t0
        res = self.session.denoise_next(st, seed=seed)
        video = res.video_latents.float().cpu()
        if first is not None:
            video = torch.cat([first, video], dim=2)
        timings = {"encode_s": t_enc, **res.timings, "total_s": time.perf_counter() - t0}
        return InferenceResult(res.actions[0].float().cpu().numpy(), video, timings)

    def decode_video(self, latents: torch.Tensor) -> np.ndarray:
        """Predicted latents [1, C, F, h, w] -> uint8 (T, H, W, 3) pixels (T = 1 + 4(F-1))."""
        if latents.ndim != 5 or latents.shape[1] != self.config.out_dim:
            raise ValueError(f"latents must be [1, {self.config.out_dim}, F, h, w], got {tuple(latents.shape)}")
        return vae_decode(self.vae, latents)
