"""Held-out evaluation: flow-matching losses at fixed noise, and the action error of real inference.

* ``eval/video_loss``, ``eval/action_loss``: the training losses on held-out samples with a fixed noise seed
  per sample (comparable across steps);
* ``eval/action_mae``: mean |predicted - recorded| action over the first chunk, in robot units (rad for joints,
  0..1 for the gripper). The prediction is what the policy node would output: ``WorldActionPipeline.infer`` on
  the sample's first frame, normalised state and prompt, then ``runtime.postprocess.actions_from_model``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dreamzero_policy.model.pipeline import WorldActionPipeline
from dreamzero_policy.runtime.postprocess import actions_from_model

from .datasets import ChunkDataset, collate
from .model_io import Components, FrozenEncoders, LossModule

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    module: LossModule,
    comps: Components,
    encoders: FrozenEncoders,
    dataset: ChunkDataset,
    num_samples: int,
    inference_steps: int | None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics on up to ``num_samples`` items of ``dataset`` (evaluation split). Leaves the DiT in train mode."""
    keys = dataset.eval_keys(num_samples)
    if not keys:
        return {}
    dit = module.dit
    dit.eval()
    video, action, errors, per_dim = [], [], [], []
    layout = dataset.layout
    kwargs = {} if inference_steps is None else {"num_inference_steps": inference_steps}
    pipe = WorldActionPipeline(
        comps.config, dit, comps.text_encoder, comps.image_encoder, comps.vae, tokenizer=comps.tokenizer, **kwargs
    )
    try:
        for i, key in enumerate(keys):
            sample = dataset[key]
            tb = encoders.encode(collate([sample]))
            gen = torch.Generator().manual_seed(seed * 100_003 + i)
            _, v, a = module(tb, gen, np.random.default_rng([seed, i]))
            video.append(float(v))
            if float(sample["has_action"]) > 0:
                action.append(float(a))
                pipe.reset()
                frames = sample["video"][:1].numpy()
                state = sample["state"][0, : layout.state_dim].numpy()
                res = pipe.infer(frames, state, sample["prompt"], seed=seed + i)
                pred = actions_from_model(layout.spec, res.actions, sample["state_raw"].numpy())
                horizon = pred.shape[0]
                err = np.abs(pred - sample["actions_abs"][:horizon].numpy().astype(np.float64))
                errors.append(float(err.mean()))
                per_dim.append(err.mean(0))
    finally:
        dit.train()
    out: dict[str, Any] = {"eval/video_loss": float(np.mean(video)), "eval/samples": len(keys)}
    if errors:
        out["eval/action_loss"] = float(np.mean(action))
        out["eval/action_mae"] = float(np.mean(errors))
        out["eval/action_mae_per_dim"] = np.mean(per_dim, 0).round(6).tolist()
    return out
