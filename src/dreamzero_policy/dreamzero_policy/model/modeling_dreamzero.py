"""The DreamZero causal DiT: Wan2.x video transformer + action register, block-causal, with a per-layer KV cache.

Token layout of one call: ``[video | actions | states]`` (all action tokens of all blocks, then all state tokens).

- Training (teacher forcing): ``[clean video F*T | noisy video F*T | actions nb*A | states nb*S]`` with
  F = 1 + nb*nfpb latent frames and one boolean block-causal mask (``teacher_forcing_mask``).
- Inference: per-layer KV cache of post-RoPE keys/values of *observed* clean frames; a denoising pass feeds
  ``[new noisy block | A actions | S states]`` attending to cache ++ new tokens; a cache-write pass feeds the new
  clean frames only and appends their keys/values.

Shapes: video latents [B, C, F, H, W]; actions [B, T, action_dim]; state [B, nb, max_state_dim]; timesteps are
1000*sigma per latent frame ([B, F]) and per action token ([B, T]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanTimeTextImageEmbedding
from torch import nn
from torch.utils.checkpoint import checkpoint

from .configuration_dreamzero import DreamZeroConfig
from .kv_cache import KVCache
from .layers_dreamzero import (
    ActionEncoder,
    CausalWanBlock,
    CrossKV,
    Groups,
    RegisterMLP,
    _lin,
    rope_table,
    timestep_sinusoid,
)

__all__ = ["DreamZeroDiT", "KVCache", "teacher_forcing_mask"]


def teacher_forcing_mask(cfg: DreamZeroConfig, num_blocks: int, state_self_only: bool) -> torch.Tensor:
    """bool [L, L] (True = may attend) for ``[clean F*T | noisy F*T | actions | states]``, F = 1 + nb*nfpb.

    Official pattern (``CausalWanSelfAttention`` with ``is_tf``): clean frame 0 and noisy frame 0 see only
    themselves; clean block b sees clean frame 0 + clean frames [max(1, end-W), end) (W = local window);
    noisy block b, action chunk b (and state b unless ``state_self_only``) see clean frame 0 + clean blocks < b +
    noisy block b + action chunk b + state b.
    """
    t, nf, a, s = cfg.tokens_per_frame, cfg.num_frame_per_block, cfg.num_action_per_block, cfg.num_state_per_block
    frames = 1 + num_blocks * nf
    nv = frames * t
    total = 2 * nv + num_blocks * (a + s)
    m = torch.zeros(total, total, dtype=torch.bool)
    m[:t, :t] = True  # clean frame 0
    m[nv : nv + t, nv : nv + t] = True  # noisy frame 0
    act0, st0 = 2 * nv, 2 * nv + num_blocks * a
    window = cfg.local_attn_frames
    for b in range(num_blocks):
        start_f, end_f = 1 + b * nf, 1 + (b + 1) * nf
        cq = slice(start_f * t, end_f * t)
        m[cq, :t] = True
        m[cq, max(1, end_f - window) * t : end_f * t] = True
        noisy = slice(nv + start_f * t, nv + end_f * t)
        acts = slice(act0 + b * a, act0 + (b + 1) * a)
        sts = slice(st0 + b * s, st0 + (b + 1) * s)
        keys = torch.zeros(total, dtype=torch.bool)
        keys[: start_f * t] = True
        keys[noisy] = keys[acts] = keys[sts] = True
        m[noisy] = keys
        m[acts] = keys
        if state_self_only:
            m[sts, sts] = True
        else:
            m[sts] = keys
    return m


class DreamZeroDiT(nn.Module):
    """The causal world-action DiT. Parameter names follow diffusers' ``WanTransformer3DModel`` where a Wan
    module is used; ``action_encoder``/``state_encoder``/``action_decoder`` are DreamZero's own."""

    def __init__(self, config: DreamZeroConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.gradient_checkpointing = False
        self.patch_embedding = nn.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=cfg.dim,
            time_freq_dim=cfg.freq_dim,
            time_proj_dim=6 * cfg.dim,
            text_embed_dim=cfg.text_dim,
            image_embed_dim=cfg.clip_dim if cfg.use_clip else None,
        )
        self.blocks = nn.ModuleList(
            CausalWanBlock(cfg.dim, cfg.ffn_dim, cfg.num_heads, cfg.eps, cfg.use_clip) for _ in range(cfg.num_layers)
        )
        self.norm_out = FP32LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(cfg.dim, cfg.out_dim * cfg.patch_size[1] * cfg.patch_size[2])
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)
        self.action_encoder = ActionEncoder(cfg.action_dim, cfg.dim)
        self.state_encoder = RegisterMLP(cfg.max_state_dim, cfg.hidden_size, cfg.dim)
        self.action_decoder = RegisterMLP(cfg.dim, cfg.hidden_size, cfg.action_dim)
        self._rope_cache: dict[tuple, torch.Tensor] = {}
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    # --- embeddings --------------------------------------------------------------------------------

    def embed_video(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """[B, C, F, H, W] (+ y [B, 4+C, F, H, W]) -> tokens [B, F*T, dim], frame-major then row then column."""
        if self.config.concat_first_frame_latent:
            if y is None:
                raise ValueError("this model concatenates y (mask + first-frame latent) to the video; y is required")
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        return self.patch_embedding(x).flatten(2).transpose(1, 2)

    def time_embed(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps [B, N] -> (e [B, N, dim], e0 [B, N, 6, dim])."""
        ce = self.condition_embedder
        dtype = ce.time_proj.weight.dtype
        te = ce.time_embedder  # diffusers TimestepEmbedding: linear_1 -> SiLU -> linear_2
        h = F.silu(_lin(te.linear_1, timestep_sinusoid(self.config.freq_dim, t).to(dtype)))
        e = _lin(te.linear_2, h)
        e0 = _lin(ce.time_proj, ce.act_fn(e)).unflatten(-1, (6, self.config.dim))
        return e, e0

    def encode_context(self, text: torch.Tensor, clip: torch.Tensor | None) -> list[CrossKV]:
        """Per-layer cross-attention K/V from the text context [B, text_len, text_dim] and CLIP tokens
        [B, clip_tokens, clip_dim]. Session-constant: compute once per prompt and reuse for every DiT call."""
        cfg = self.config
        if text.ndim != 3 or text.shape[-1] != cfg.text_dim:
            raise ValueError(f"text context must be [B, L, {cfg.text_dim}], got {tuple(text.shape)}")
        ce = self.condition_embedder
        txt = ce.text_embedder(text)
        img = None
        if cfg.use_clip:
            if clip is None or clip.ndim != 3 or clip.shape[-1] != cfg.clip_dim:
                got = None if clip is None else tuple(clip.shape)
                raise ValueError(f"CLIP tokens must be [B, N, {cfg.clip_dim}], got {got}")
            img = ce.image_embedder(clip)
        return [blk.cross_kv(txt, img) for blk in self.blocks]

    def encode_register(
        self, action: torch.Tensor, t_action: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Action + state tokens [B, T+nb, dim] and their timesteps [B, T+nb] (state b takes the t of the
        first action of block b)."""
        cfg = self.config
        if action.shape[-1] != cfg.action_dim or state.shape[-1] != cfg.max_state_dim:
            raise ValueError(
                f"action must be [..., {cfg.action_dim}] and state [..., {cfg.max_state_dim}]; got "
                f"{tuple(action.shape)} and {tuple(state.shape)}"
            )
        stride = cfg.num_action_per_block // cfg.num_state_per_block
        if t_action.shape != action.shape[:2] or state.shape[1] * stride != action.shape[1]:
            raise ValueError(
                f"inconsistent register: action {tuple(action.shape)}, timestep_action {tuple(t_action.shape)}, "
                f"state {tuple(state.shape)} ({cfg.num_action_per_block} actions per state token block)"
            )
        tokens = torch.cat([self.action_encoder(action, t_action), self.state_encoder(state)], dim=1)
        return tokens, torch.cat([t_action, t_action[:, ::stride]], dim=1)

    # --- rotary tables -----------------------------------------------------------------------------

    def rope(
        self, start_frame: int, num_frames: int, first_block: int, num_blocks: int, device: torch.device
    ) -> torch.Tensor:
        """Complex RoPE phasors [L, head_dim/2] for ``num_frames`` video frames from ``start_frame`` followed by
        the action and state tokens of blocks ``first_block .. first_block + num_blocks - 1``. Cached per layout."""
        key = (start_frame, num_frames, first_block, num_blocks, str(device))
        hit = self._rope_cache.get(key)
        if hit is not None:
            return hit
        with torch.inference_mode(False):  # a normal tensor: the table is reused by training (autograd) too
            out = self._rope_table(start_frame, num_frames, first_block, num_blocks, device)
        self._rope_cache[key] = out
        return out

    def _rope_table(
        self, start_frame: int, num_frames: int, first_block: int, num_blocks: int, device: torch.device
    ) -> torch.Tensor:
        cfg = self.config
        dt, dh, dw = cfg.rope_split
        hp, wp = cfg.latent_height // cfg.patch_size[1], cfg.latent_width // cfg.patch_size[2]
        f = torch.arange(start_frame, start_frame + num_frames).repeat_interleave(hp * wp)
        r = torch.arange(hp).repeat_interleave(wp).repeat(num_frames)
        c = torch.arange(wp).repeat(num_frames * hp)
        theta = cfg.rope_theta
        parts = [rope_table(dt, f, theta), rope_table(dh, r, theta), rope_table(dw, c, theta)]
        cos = [torch.cat([p[0] for p in parts], dim=1)]
        sin = [torch.cat([p[1] for p in parts], dim=1)]
        if num_blocks:
            a, s = cfg.num_action_per_block, cfg.num_state_per_block
            act_pos = torch.arange(first_block * a, (first_block + num_blocks) * a)
            st_pos = torch.arange(first_block * s, (first_block + num_blocks) * s)
            for pos in (act_pos, st_pos):
                pc, ps = rope_table(cfg.head_dim, pos, cfg.rope_theta)
                cos.append(pc)
                sin.append(ps)
        # cos/sin are repeat-interleaved over each channel pair: keep one entry per pair as a complex phasor
        return torch.complex(torch.cat(cos)[:, ::2], torch.cat(sin)[:, ::2]).to(torch.complex64).to(device)

    # --- outputs -----------------------------------------------------------------------------------

    def video_head(self, x: torch.Tensor, e: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Video tokens [B, F*T, dim] + per-frame time embedding e [B, F, dim] -> velocity [B, C, F, H, W]."""
        cfg = self.config
        shift, scale = (self.scale_shift_table.unsqueeze(0) + e.unsqueeze(2)).unbind(2)
        hs = self.norm_out(x).unflatten(1, (num_frames, -1))
        out = _lin(self.proj_out, (hs * (1 + scale[:, :, None]) + shift[:, :, None]).flatten(1, 2))
        _, ph, pw = cfg.patch_size
        hp, wp = cfg.latent_height // ph, cfg.latent_width // pw
        out = out.view(x.shape[0], num_frames, hp, wp, ph, pw, cfg.out_dim)
        return out.permute(0, 6, 1, 2, 4, 3, 5).reshape(x.shape[0], cfg.out_dim, num_frames, hp * ph, wp * pw)

    def _check_video(self, x: torch.Tensor, name: str) -> None:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.out_dim or x.shape[3:] != (cfg.latent_height, cfg.latent_width):
            raise ValueError(
                f"{name} must be [B, {cfg.out_dim}, F, {cfg.latent_height}, {cfg.latent_width}], got {tuple(x.shape)}"
            )

    # --- training forward (teacher forcing) ------------------------------------------------------

    def forward_train(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        clean_x: torch.Tensor,
        context: torch.Tensor,
        action: torch.Tensor,
        timestep_action: torch.Tensor,
        state: torch.Tensor,
        y: torch.Tensor | None = None,
        clip_feature: torch.Tensor | None = None,
        state_self_only: bool | None = None,
        cross: list[CrossKV] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced forward over a clip of F = 1 + nb*nfpb latent frames.

        Args:
            x: noisy latents [B, C, F, H, W]; clean_x: clean latents (context stream, t = 0), same shape.
            timestep: [B, F] float (1000*sigma per frame); action: noisy actions [B, nb*A, action_dim];
            timestep_action: [B, nb*A]; state: [B, nb*S, max_state_dim]; context: text [B, text_len, text_dim];
            y: [B, 4+C, F, H, W] when the model concatenates it; clip_feature: [B, 257, 1280] (i2v).
            state_self_only: official default (config) = the state token attends only to itself; False matches
                the inference attention pattern.
            cross: precomputed ``encode_context`` output (else computed from context/clip_feature).

        Returns:
            (video velocity [B, C, F, H, W] of the noisy stream, action velocity [B, nb*A, action_dim]).
        """
        cfg = self.config
        self._check_video(x, "x")
        self._check_video(clean_x, "clean_x")
        b, _, frames = x.shape[:3]
        nb = (frames - 1) // cfg.num_frame_per_block
        if nb < 1 or frames != 1 + nb * cfg.num_frame_per_block or clean_x.shape != x.shape:
            raise ValueError(
                f"training needs F = 1 + k*{cfg.num_frame_per_block} latent frames (k >= 1) in x and clean_x, "
                f"got x {tuple(x.shape)}, clean_x {tuple(clean_x.shape)}"
            )
        if timestep.shape != (b, frames):
            raise ValueError(f"timestep must be [B, F] = {(b, frames)}, got {tuple(timestep.shape)}")
        if action.shape[1] != nb * cfg.num_action_per_block or state.shape[1] != nb * cfg.num_state_per_block:
            raise ValueError(
                f"{nb} blocks need {nb * cfg.num_action_per_block} action tokens and {nb * cfg.num_state_per_block} "
                f"state tokens, got action {tuple(action.shape)}, state {tuple(state.shape)}"
            )
        self_only = cfg.state_token_self_only if state_self_only is None else state_self_only
        if cross is None:
            cross = self.encode_context(context, clip_feature)
        nv = frames * cfg.tokens_per_frame
        clean_tok = self.embed_video(clean_x, y)
        noisy_tok = self.embed_video(x, y)
        reg_tok, reg_t = self.encode_register(action, timestep_action, state)
        tokens = torch.cat([clean_tok, noisy_tok, reg_tok], dim=1)
        # modulation per frame (clean frames, then noisy frames) and per register token
        _, e0_clean = self.time_embed(torch.zeros_like(timestep))
        e_noisy, e0_noisy = self.time_embed(timestep)
        _, e0_reg = self.time_embed(reg_t)
        e0 = torch.cat([e0_clean, e0_noisy, e0_reg], dim=1)
        groups: Groups = ((2 * frames, cfg.tokens_per_frame), (reg_tok.shape[1], 1))
        rope_v = self.rope(0, frames, 0, nb, x.device)
        rope = torch.cat([rope_v[:nv], rope_v])  # clean and noisy streams share frame positions 0..F-1
        mkey = (nb, self_only, str(x.device))
        mask = self._mask_cache.get(mkey)
        if mask is None:
            with torch.inference_mode(False):
                mask = self._mask_cache[mkey] = teacher_forcing_mask(cfg, nb, self_only).to(x.device)
        for blk, ckv in zip(self.blocks, cross, strict=True):
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(
                    lambda t, m=blk, c=ckv: m(t, e0, groups, rope, c, attn_mask=mask), tokens, use_reentrant=False
                )
            else:
                tokens = blk(tokens, e0, groups, rope, ckv, attn_mask=mask)
        video = self.video_head(tokens[:, nv : 2 * nv], e_noisy, frames)
        act = self.action_decoder(tokens[:, 2 * nv : 2 * nv + action.shape[1]])
        return video, act

    # --- inference forward (KV cache) ------------------------------------------------------------

    def empty_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        """An empty cache with room for a full window plus one denoising pass (no reallocation in a session)."""
        cfg = self.config
        z = torch.zeros(batch, cfg.num_heads, 0, cfg.head_dim, device=device, dtype=dtype)
        room = (
            cfg.max_attention_tokens
            + cfg.num_frame_per_block * cfg.tokens_per_frame
            + cfg.num_action_per_block
            + cfg.num_state_per_block
        )
        return KVCache([z] * cfg.num_layers, [z] * cfg.num_layers, capacity=room)

    def forward_cached(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        cross: list[CrossKV],
        cache: KVCache,
        start_frame: int,
        y: torch.Tensor | None = None,
        action: torch.Tensor | None = None,
        timestep_action: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        update_cache: bool = False,
        need_output: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One KV-cached DiT pass over new frames at latent index ``start_frame``.

        Without ``action``: a cache-write pass (clean frames, timestep 0). With ``action`` [B, A, action_dim],
        ``timestep_action`` [B, A] and ``state`` [B, S, max_state_dim]: a denoising pass of one block; its
        action/state RoPE block index is (start_frame - 1) // nfpb.

        Args:
            x: [B, C, F_new, H, W]; timestep: [B, F_new]; cross: ``encode_context`` output (batch B or 1).
            update_cache: append the new frames' keys/values to ``cache`` (in place, window-truncated).
            need_output: False for a cache write whose velocity nobody reads: the last layer then only
                computes its keys/values, and (None, None) is returned.

        Returns:
            (video velocity [B, C, F_new, H, W], action velocity [B, A, action_dim] or None).
        """
        cfg = self.config
        self._check_video(x, "x")
        b, _, frames = x.shape[:3]
        if timestep.shape != (b, frames):
            raise ValueError(f"timestep must be [B, F_new] = {(b, frames)}, got {tuple(timestep.shape)}")
        nv = frames * cfg.tokens_per_frame
        if cache.batch != b:
            raise ValueError(f"the cache holds batch {cache.batch}, the input batch {b}")
        tokens = self.embed_video(x, y)
        nb = 0
        t_all = timestep
        block = max(0, (start_frame - 1) // cfg.num_frame_per_block)
        if action is not None:
            if timestep_action is None or state is None:
                raise ValueError("a denoising pass needs timestep_action and state with the actions")
            if action.shape[1] != cfg.num_action_per_block or state.shape[1] != cfg.num_state_per_block:
                raise ValueError(
                    f"a denoising pass takes one block: {cfg.num_action_per_block} actions and "
                    f"{cfg.num_state_per_block} state tokens, got {tuple(action.shape)} and {tuple(state.shape)}"
                )
            reg_tok, reg_t = self.encode_register(action, timestep_action, state)
            tokens = torch.cat([tokens, reg_tok], dim=1)
            t_all = torch.cat([timestep.to(reg_t.dtype), reg_t], dim=1)
            nb = 1
        else:
            tokens = tokens.contiguous()  # the blocks update the residual stream in place
        e, e0 = self.time_embed(t_all)  # per frame and per register token, in one pass
        e_vid = e[:, :frames]
        groups: Groups = ((frames, cfg.tokens_per_frame), (tokens.shape[1] - nv, 1))
        rope = self.rope(start_frame, frames, block, nb, x.device)
        # keys = the last `window` of (cache ++ new video), then the new action/state tokens; the new tokens are
        # written right after the cache in its buffer, so that is one contiguous slice starting at `first`
        cache.reserve(tokens.shape[1])
        window = cfg.max_attention_tokens
        first = max(cache.start, cache.end + nv - window) if window > 0 else cache.start
        skip_last = update_cache and not need_output
        # cond and negative rows fed the same frames (CFG): until the first cross-attention they are identical,
        # so layer 0's self-attention (and its cached keys/values) is computed for one row only
        same_rows = b > 1 and _rows_identical(x, y, timestep, action, timestep_action, state)
        for i, (blk, ckv) in enumerate(zip(self.blocks, cross, strict=True)):
            kbuf, vbuf = cache.layer(i)
            tokens = blk(
                tokens,
                e0,
                groups,
                rope,
                ckv,
                cache=(kbuf, vbuf, first, cache.end),
                kv_only=skip_last and i == len(self.blocks) - 1,
                rows_identical=i == 0 and same_rows and cache.first_layer_rows_identical,
            )
        if update_cache:
            cache.start, cache.end = first, cache.end + nv
            cache.first_layer_rows_identical &= b == 1 or same_rows
        if not need_output:
            return None, None
        video = self.video_head(tokens[:, :nv], e_vid, frames)
        act = self.action_decoder(tokens[:, nv : nv + cfg.num_action_per_block]) if nb else None
        return video, act


def _rows_identical(*tensors: torch.Tensor | None) -> bool:
    """True when every given tensor's rows equal its first row (an ``expand``ed batch is checked for free)."""
    for t in tensors:
        if t is None or t.shape[0] == 1 or t.stride(0) == 0:
            continue
        if not torch.equal(t, t[:1].expand_as(t)):
            return False
    return True
