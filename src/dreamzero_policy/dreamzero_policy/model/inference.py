"""``WorldActionModel``: the autoregressive, KV-cached inference session of the DreamZero DiT (latent space).

Session state machine (official ``lazy_joint_video_action``; latent frame indices):

    reset()                      -> empty caches, current_start_frame = 0
    set_conditioning(...)        -> cross-attention K/V of (prompt, negative prompt) + CLIP, and y, cached
    prefill(frame-0 latent)      -> cache write at 0, current_start_frame = 1
    denoise_next(state)          -> predict the block at current_start_frame, then current_start_frame += nfpb
    append_observed(block)       -> cache write of the observed block at current_start_frame - nfpb
    denoise_next(state) ...      (the observation replaces the prediction for the same slot)

The caches hold only observed clean frames. Conditional and negative branches run as one batch of 2 (their
caches are the two rows of one batched cache); CFG applies to the video velocity only, actions use the
conditional branch. Decoding latents to pixels is separate (``pipeline.WorldActionPipeline.decode_video``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..core.errors import DreamZeroError
from .layers_dreamzero import CrossKV
from .modeling_dreamzero import DreamZeroDiT, KVCache
from .scheduling import FlowUniPCScheduler, inference_grid

__all__ = ["DenoiseResult", "SessionError", "WorldActionModel"]


class SessionError(DreamZeroError, RuntimeError):
    """A session method was called out of order (e.g. denoise before prefill, or past the KV window)."""


@dataclass
class DenoiseResult:
    """actions: normalised [B, A, action_dim]; video_latents: [B, C, nfpb, H, W]; timings in seconds."""

    actions: torch.Tensor
    video_latents: torch.Tensor
    start_frame: int
    dit_evaluations: int
    timings: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class WorldActionModel:
    """KV-cached closed-loop inference over one ``DreamZeroDiT``.

    Args:
        dit: the model (its config gives the defaults below).
        num_inference_steps / dit_step_mask / cfg_scale / seed: override the config's inference defaults.
            ``num_inference_steps=1`` is the 1-step ("Flash") mode: sigma 1 -> 0 in a single DiT evaluation.
    """

    def __init__(
        self,
        dit: DreamZeroDiT,
        num_inference_steps: int | None = None,
        dit_step_mask: tuple[bool, ...] | list[bool] | torch.Tensor | None = None,
        cfg_scale: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.dit = dit
        cfg = self.config = dit.config
        steps = cfg.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
        if dit_step_mask is None:
            mask = list(cfg.dit_step_mask) if steps == cfg.num_inference_steps else [True] * steps
        else:
            values = dit_step_mask.tolist() if isinstance(dit_step_mask, torch.Tensor) else dit_step_mask
            mask = [bool(v) for v in values]
        if len(mask) != steps or not mask[0]:
            raise ValueError(f"dit_step_mask needs {steps} entries with entry 0 True, got {mask}")
        self.num_inference_steps = steps
        self.dit_step_mask = tuple(mask)
        self.cfg_scale = cfg.cfg_scale if cfg_scale is None else float(cfg_scale)
        self.seed = cfg.seed if seed is None else int(seed)
        # 1-step mode starts from pure noise (sigma 1); the multistep grid from float32(0.999) as officially
        self.timesteps, self.sigmas = inference_grid(steps, cfg.sigma_shift, 1.0 if steps == 1 else cfg.sigma_max)
        self._cross: list[CrossKV] | None = None
        self._y: torch.Tensor | None = None
        self.reset()

    # --- properties --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.dit.proj_out.weight.dtype

    @property
    def uses_cfg(self) -> bool:
        return self.cfg_scale != 1.0

    @property
    def needs_reset(self) -> bool:
        """True once the KV window is full (official: reset when current_start_frame >= local window)."""
        return self.current_start_frame + self.config.num_frame_per_block > self.config.local_attn_frames

    # --- session -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop the KV cache (the conditioning from ``set_conditioning`` is kept until replaced)."""
        self.cache: KVCache | None = None
        self.current_start_frame = 0
        self._pending_slot: int | None = None

    def set_conditioning(
        self,
        context: torch.Tensor,
        negative_context: torch.Tensor | None,
        clip_feature: torch.Tensor | None,
        y: torch.Tensor | None,
    ) -> None:
        """Session-constant conditioning: text contexts [1, text_len, text_dim] (prompt, negative prompt), CLIP
        tokens [1, clip_tokens, clip_dim], y [1, 4+C, F_session, H, W] (mask + first-frame latent; None for 5B).
        Computes the cross-attention K/V of every layer once. Resets the session."""
        cfg = self.config
        if self.uses_cfg and negative_context is None:
            raise ValueError("cfg_scale != 1 needs a negative context")
        ctx = torch.cat([context, negative_context]) if self.uses_cfg else context
        with torch.inference_mode():
            dev, dt = self.device, self.dtype
            clip = clip_feature.to(dev, dt) if clip_feature is not None else None
            self._cross = self.dit.encode_context(ctx.to(dev, dt), clip)
        if cfg.concat_first_frame_latent:
            if y is None or y.ndim != 5 or y.shape[1] != cfg.y_channels:
                got = None if y is None else tuple(y.shape)
                raise ValueError(f"y must be [1, {cfg.y_channels}, F, H, W], got {got}")
            self._y = y.to(self.device, self.dtype)
        else:
            self._y = None
        self.reset()

    @property
    def _batch(self) -> int:
        return 2 if self.uses_cfg else 1

    def _y_slice(self, start: int, n: int) -> torch.Tensor | None:
        if self._y is None:
            return None
        if start + n > self._y.shape[2]:
            raise SessionError(
                f"latent frames {start}..{start + n - 1} are past the session's y ({self._y.shape[2]} frames)"
            )
        return self._y[:, :, start : start + n].expand(self._batch, -1, -1, -1, -1)

    def _write(self, latents: torch.Tensor, start: int) -> None:
        assert self.cache is not None and self._cross is not None
        x = latents.to(self.device, self.dtype).expand(self._batch, -1, -1, -1, -1)
        t = torch.zeros(self._batch, x.shape[2], device=self.device)
        with torch.inference_mode():
            self.dit.forward_cached(
                x,
                t,
                self._cross,
                self.cache,
                start,
                y=self._y_slice(start, x.shape[2]),
                update_cache=True,
                need_output=False,
            )

    def prefill(self, first_latent: torch.Tensor) -> None:
        """Start a session: cache the observed frame-0 latent [1, C, 1, H, W] (t = 0, latent index 0)."""
        if self._cross is None:
            raise SessionError("call set_conditioning() before prefill()")
        if first_latent.ndim != 5 or first_latent.shape[0] != 1 or first_latent.shape[2] != 1:
            raise ValueError(f"first_latent must be [1, C, 1, H, W], got {tuple(first_latent.shape)}")
        self.reset()
        self.cache = self.dit.empty_cache(self._batch, self.device, self.dtype)
        self._write(first_latent, 0)
        self.current_start_frame = 1

    def append_observed(self, block_latents: torch.Tensor) -> None:
        """Write the observed latents [1, C, nfpb, H, W] of the last predicted slot to the cache."""
        nfpb = self.config.num_frame_per_block
        if block_latents.ndim != 5 or block_latents.shape[0] != 1 or block_latents.shape[2] != nfpb:
            raise ValueError(f"block_latents must be [1, C, {nfpb}, H, W], got {tuple(block_latents.shape)}")
        if self._pending_slot is None:
            raise SessionError("append_observed() needs a predicted block to replace: call denoise_next() first")
        self._write(block_latents, self._pending_slot)
        self._pending_slot = None

    def denoise_next(
        self,
        state: torch.Tensor,
        seed: int | None = None,
        noise_video: torch.Tensor | None = None,
        noise_action: torch.Tensor | None = None,
    ) -> DenoiseResult:
        """Denoise the next block of video + actions from seeded noise.

        Args:
            state: normalised state tokens [1, S, max_state_dim] (S = num_state_per_block).
            seed: noise seed (default: the session seed, identical every call as officially).
            noise_video [1, C, nfpb, H, W] / noise_action [1, A, action_dim]: explicit initial noise.
        """
        cfg = self.config
        if self.cache is None or self._cross is None:
            raise SessionError("call prefill() (after set_conditioning()) before denoise_next()")
        if self._pending_slot is not None:
            raise SessionError("the previous predicted block was never replaced: call append_observed() first")
        if self.needs_reset:
            raise SessionError(f"the KV window ({cfg.local_attn_frames} latent frames) is full: reset and prefill")
        if state.ndim != 3 or state.shape[0] != 1 or state.shape[1:] != (cfg.num_state_per_block, cfg.max_state_dim):
            raise ValueError(
                f"state must be [1, {cfg.num_state_per_block}, {cfg.max_state_dim}], got {tuple(state.shape)}"
            )
        dev, dt, nb = self.device, self.dtype, self._batch
        start, nfpb = self.current_start_frame, cfg.num_frame_per_block
        shape_v = (1, cfg.out_dim, nfpb, cfg.latent_height, cfg.latent_width)
        shape_a = (1, cfg.num_action_per_block, cfg.action_dim)
        gen = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        xv = (noise_video if noise_video is not None else torch.randn(shape_v, generator=gen)).to(dev, dt)
        xa = (noise_action if noise_action is not None else torch.randn(shape_a, generator=gen)).to(dev, dt)
        if xv.shape != shape_v or xa.shape != shape_a:
            raise ValueError(f"noise must be {shape_v} and {shape_a}, got {tuple(xv.shape)} and {tuple(xa.shape)}")
        y = self._y_slice(start, nfpb)
        st = state.to(dev, dt).expand(nb, -1, -1)
        sched_v, sched_a = FlowUniPCScheduler(self.sigmas), FlowUniPCScheduler(self.sigmas)
        vel_v = vel_a = None
        evals, t_dit, t_sched = 0, 0.0, 0.0
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(self.num_inference_steps):
                if self.dit_step_mask[i]:
                    _sync(dev)
                    ts = time.perf_counter()
                    t = torch.full((nb, nfpb), float(self.timesteps[i]), device=dev)
                    ta = torch.full((nb, cfg.num_action_per_block), float(self.timesteps[i]), device=dev)
                    v, a = self.dit.forward_cached(
                        xv.expand(nb, -1, -1, -1, -1),
                        t,
                        self._cross,
                        self.cache,
                        start,
                        y=y,
                        action=xa.expand(nb, -1, -1),
                        timestep_action=ta,
                        state=st,
                    )
                    assert a is not None
                    vel_v = v[1:2] + self.cfg_scale * (v[0:1] - v[1:2]) if self.uses_cfg else v
                    vel_a = a[0:1]
                    evals += 1
                    _sync(dev)
                    t_dit += time.perf_counter() - ts
                assert vel_v is not None and vel_a is not None
                ts = time.perf_counter()
                xv = sched_v.step(vel_v, i, xv)
                xa = sched_a.step(vel_a, i, xa)
                t_sched += time.perf_counter() - ts
        _sync(dev)
        self._pending_slot = start
        self.current_start_frame = start + nfpb
        timings = {"dit_s": t_dit, "scheduler_s": t_sched, "denoise_s": time.perf_counter() - t0}
        return DenoiseResult(xa, xv, start, evals, timings)
