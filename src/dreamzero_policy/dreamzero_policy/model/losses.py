"""Joint flow-matching training loss (video + actions), as the official ``WANPolicyHead.forward`` computes it.

1. A uniform grid index per latent frame; frames of a block share the index of the block's first frame
   (frame 0 keeps its own). Action tokens of block b use block b's index (coupled), unless decoupled.
2. x_t = (1-σ)x0 + σε for video and actions; target ε - x0.
3. Video loss: per-frame MSE (mean over C, H, W) x weight(index), averaged over (B, F) (noisy frame 0 included).
4. Action loss: squared error x action_mask x has_action, mean over action dims (masked dims count), x weight,
   averaged over (B, T). Samples without actions therefore contribute exactly zero action gradient.
5. loss = video + action.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .modeling_dreamzero import DreamZeroDiT
from .scheduling import add_noise, flow_target, training_grid, training_weights

__all__ = ["FlowMatchingLoss", "LossOutput", "TrainBatch", "share_block_indices"]


@dataclass
class TrainBatch:
    """One training batch (normalised actions/state, VAE latents, encoded text/CLIP).

    latents: clean [B, C, F, H, W], F = 1 + nb*nfpb; y: [B, 4+C, F, H, W] or None (5B);
    context: [B, text_len, text_dim]; clip_feature: [B, 257, 1280] or None; state: [B, nb*S, max_state_dim];
    actions: [B, nb*A, action_dim] in [-1, 1]; action_mask: same shape (1 = real dim); has_action: [B] (0/1).
    """

    latents: torch.Tensor
    context: torch.Tensor
    state: torch.Tensor
    actions: torch.Tensor
    action_mask: torch.Tensor
    has_action: torch.Tensor
    y: torch.Tensor | None = None
    clip_feature: torch.Tensor | None = None


@dataclass
class LossOutput:
    loss: torch.Tensor
    dynamics_loss: torch.Tensor
    action_loss: torch.Tensor
    video_pred: torch.Tensor
    action_pred: torch.Tensor
    timestep_id: torch.Tensor  # [B, F] effective per-frame grid index


def share_block_indices(raw: torch.Tensor, num_frame_per_block: int) -> torch.Tensor:
    """[B, F] raw indices -> every frame of block b takes the index of frame 1 + b*nfpb; frame 0 keeps its own."""
    out = raw.clone()
    frames = raw.shape[1]
    for start in range(1, frames, num_frame_per_block):
        out[:, start : start + num_frame_per_block] = raw[:, start : start + 1]
    return out


class FlowMatchingLoss:
    """Callable loss: ``FlowMatchingLoss(model)(batch, generator=...) -> LossOutput``.

    Args:
        decouple_action_noise: draw the action tokens' grid index independently per block (the recipe behind
            the 1-step "Flash" model) instead of sharing the block's video index.
        state_self_only: None = the config's official training mask (state token attends to itself only);
            False = the inference attention pattern.
    """

    def __init__(
        self, model: DreamZeroDiT, decouple_action_noise: bool = False, state_self_only: bool | None = None
    ) -> None:
        self.model = model
        cfg = model.config
        self.sigmas, self.timesteps = training_grid(cfg.num_train_timesteps, cfg.train_shift)
        self.weights = training_weights(self.timesteps)
        self.decouple_action_noise = decouple_action_noise
        self.state_self_only = state_self_only

    def __call__(
        self,
        batch: TrainBatch,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        noise_action: torch.Tensor | None = None,
        timestep_id_raw: torch.Tensor | None = None,
        action_timestep_id: torch.Tensor | None = None,
    ) -> LossOutput:
        """Explicit ``noise``/``noise_action``/``timestep_id_raw`` [B, F] (int64) replace the random draws.
        ``action_timestep_id`` [B, nb] sets the per-block action index (decoupled mode)."""
        cfg = self.model.config
        x0, act = batch.latents, batch.actions
        _check_batch(batch, cfg.num_frame_per_block, cfg.num_action_per_block)
        b, _, frames = x0.shape[:3]
        nb = (frames - 1) // cfg.num_frame_per_block
        dev = x0.device
        n = cfg.num_train_timesteps
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(dev)
        if timestep_id_raw is None:
            timestep_id_raw = torch.randint(0, n, (b, frames), generator=generator).to(dev)
        if noise_action is None:
            noise_action = torch.randn(act.shape, generator=generator, dtype=act.dtype).to(dev)
        idx = share_block_indices(timestep_id_raw, cfg.num_frame_per_block)
        if action_timestep_id is None:
            if self.decouple_action_noise:
                action_timestep_id = torch.randint(0, n, (b, nb), generator=generator).to(dev)
            else:
                action_timestep_id = idx[:, 1 :: cfg.num_frame_per_block][:, :nb]
        idx_a = action_timestep_id.repeat_interleave(cfg.num_action_per_block, dim=1)  # [B, T]

        sigmas, timesteps, weights = (t.to(dev) for t in (self.sigmas, self.timesteps, self.weights))
        x_t = add_noise(x0, noise, sigmas[idx][:, None, :, None, None].to(x0.dtype))
        a_t = add_noise(act, noise_action, sigmas[idx_a][:, :, None].to(act.dtype))
        video_pred, action_pred = self.model.forward_train(
            x_t,
            timesteps[idx],
            x0,
            batch.context,
            a_t,
            timesteps[idx_a],
            batch.state,
            y=batch.y,
            clip_feature=batch.clip_feature,
            state_self_only=self.state_self_only,
        )
        per_frame = (video_pred.float() - flow_target(x0, noise).float()).pow(2).mean(dim=(1, 3, 4))  # [B, F]
        dynamics = (per_frame * weights[idx]).mean()
        gate = batch.action_mask.float() * batch.has_action.float()[:, None, None]
        sq = (action_pred.float() - flow_target(act, noise_action).float()).pow(2)
        # where() instead of a product: a masked-out entry contributes exactly 0 (and 0 gradient) even if inf
        per_token = torch.where(gate > 0, sq * gate, torch.zeros_like(sq)).mean(dim=-1)  # [B, T]
        action_loss = (per_token * weights[idx_a]).mean()
        return LossOutput(dynamics + action_loss, dynamics, action_loss, video_pred, action_pred, idx)


def _check_batch(batch: TrainBatch, nfpb: int, a: int) -> None:
    x0 = batch.latents
    if x0.ndim != 5:
        raise ValueError(f"latents must be [B, C, F, H, W], got {tuple(x0.shape)}")
    b, _, frames = x0.shape[:3]
    nb = (frames - 1) // nfpb
    if nb < 1 or frames != 1 + nb * nfpb:
        raise ValueError(f"latents need F = 1 + k*{nfpb} frames (k >= 1), got {frames}")
    if batch.actions.shape[:2] != (b, nb * a) or batch.action_mask.shape != batch.actions.shape:
        raise ValueError(
            f"actions and action_mask must be [B, {nb * a}, action_dim], got {tuple(batch.actions.shape)} and "
            f"{tuple(batch.action_mask.shape)}"
        )
    if batch.has_action.shape != (b,):
        raise ValueError(f"has_action must be [B] = ({b},), got {tuple(batch.has_action.shape)}")
    for name in ("latents", "actions", "state", "context"):
        t = getattr(batch, name)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"batch.{name} holds non-finite values")
