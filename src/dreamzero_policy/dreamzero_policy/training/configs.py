"""Training recipes: frozen, validated dataclasses registered by name (``get_recipe``).

Optimiser settings live here, not in the model config. Official values (architecture reference §7):
AdamW (β 0.95/0.999, eps 1e-8), weight decay 1e-5 (none on biases / norm weights), cosine schedule with 5 %
warm-up, max grad norm 1.0, bf16 autocast, gradient checkpointing; LoRA rank 4, alpha 4 on the attention
projections and the FFN of every DiT block (state/action encoders and the action decoder fully trainable);
LR 1e-5 for full fine-tuning and embodiment adaptation, 1e-4 for the DROID LoRA smoke recipe.

Chunk sampling (§5.1): one chunk = ``num_action_per_block`` actions with ``4 * num_frame_per_block`` video
frames spread evenly over it (24 actions -> frames every 3rd step); up to ``max_chunk_size`` chunks plus a final
frame per sample. ``num_chunks`` scales that down for the ``tiny``/``small`` presets on a CPU.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass
from typing import Any

from dreamzero_policy.core.errors import DreamZeroError

__all__ = [
    "LORA_TARGETS",
    "RECIPES",
    "TrainConfig",
    "TrainingError",
    "get_recipe",
    "parse_overrides",
    "recipe_names",
]

# Official LoRA targets `q,k,v,o,ffn.0,ffn.2` (suffix match: self- and cross-attention; not k_img/v_img) in
# diffusers' Wan parameter names, as regular expressions over module names (peft ``target_modules``).
LORA_TARGETS = r".*blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|.*blocks\.\d+\.ffn\.net\.(0\.proj|2)"
# Fully trained alongside LoRA (official: the action register is never frozen).
LORA_FULLY_TRAINED = ("action_encoder.", "state_encoder.", "action_decoder.")

FINETUNE_MODES = ("full", "lora")
MIXED_PRECISION = ("auto", "no", "bf16")
VIDEO_NOISE = ("uniform", "high")


class TrainingError(DreamZeroError, ValueError):
    """Bad training input (recipe, data, checkpoint); the message says what to change."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Units: steps are optimiser steps; LR per step; sizes in samples."""

    name: str = "full"
    description: str = ""
    # --- model ---
    preset: str = "tiny"
    init_checkpoint: str | None = None  # our pipeline format (an imported official checkpoint included)
    finetune: str = "full"  # "full" | "lora"
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_targets: str = LORA_TARGETS
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    # --- objective ---
    video_loss_weight: float = 1.0  # official 1:1; 0 gives the action-only baseline
    action_loss_weight: float = 1.0
    decouple_action_noise: bool = False  # Flash: action noise level independent of the video's
    video_noise: str = "uniform"  # "high": video grid index drawn so sigma ~ Beta(3, 1) (Flash)
    # --- data ---
    num_chunks: int = 1  # chunks per sample (official max_chunk_size = 4); model latent frames = 1 + n*nfpb
    augment: bool = True
    crop_fraction: float = 0.95  # random crop (train) / centre crop (eval) before resizing into the mosaic
    color_jitter: tuple[float, float, float, float] = (0.3, 0.4, 0.5, 0.08)  # brightness, contrast, sat., hue
    batch_size: int = 1  # per process
    num_workers: int = 0
    holdout_fraction: float = 0.1  # episodes of the first robot dataset held out for evaluation
    requires_video_only_data: bool = False
    requires_init_checkpoint: bool = False
    # --- optimiser ---
    learning_rate: float = 1e-5
    betas: tuple[float, float] = (0.95, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-5
    warmup_ratio: float = 0.05
    lr_schedule: str = "cosine"  # "cosine" | "constant" (after warm-up)
    max_grad_norm: float = 1.0
    grad_accum_steps: int = 1
    max_steps: int = 1000
    # --- bookkeeping ---
    save_every: int = 500
    eval_every: int = 500
    log_every: int = 10
    keep_checkpoints: int = 2
    eval_samples: int = 8
    eval_inference_steps: int | None = None  # None: the model's default (16); Flash evaluates 1 step
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "lora_rank",
            "num_chunks",
            "batch_size",
            "grad_accum_steps",
            "max_steps",
            "save_every",
            "eval_every",
            "log_every",
            "keep_checkpoints",
            "eval_samples",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise TrainingError(f"{name} must be a positive int, got {v!r}")
        if self.num_workers < 0:
            raise TrainingError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.eval_inference_steps is not None and self.eval_inference_steps <= 0:
            raise TrainingError(f"eval_inference_steps must be positive or None, got {self.eval_inference_steps}")
        for name, allowed in (
            ("finetune", FINETUNE_MODES),
            ("mixed_precision", MIXED_PRECISION),
            ("video_noise", VIDEO_NOISE),
            ("lr_schedule", ("cosine", "constant")),
        ):
            if getattr(self, name) not in allowed:
                raise TrainingError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("learning_rate", "lora_alpha", "eps", "max_grad_norm"):
            v = getattr(self, name)
            if not math.isfinite(v) or v <= 0:
                raise TrainingError(f"{name} must be finite and > 0, got {v!r}")
        for name in ("weight_decay", "video_loss_weight", "action_loss_weight"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise TrainingError(f"{name} must be finite and >= 0, got {v!r}")
        if self.video_loss_weight == 0 and self.action_loss_weight == 0:
            raise TrainingError("video_loss_weight and action_loss_weight are both 0: nothing to train")
        if not 0.0 <= self.warmup_ratio < 1.0 or not 0.0 <= self.holdout_fraction < 1.0:
            raise TrainingError("warmup_ratio and holdout_fraction must be in [0, 1)")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise TrainingError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if len(self.color_jitter) != 4 or any(v < 0 for v in self.color_jitter) or self.color_jitter[3] > 0.5:
            raise TrainingError(f"color_jitter must be 4 values >= 0 (hue <= 0.5), got {self.color_jitter}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise TrainingError(f"betas must be two values in [0, 1), got {self.betas}")
        if self.requires_init_checkpoint and not self.init_checkpoint:
            raise TrainingError(f"recipe {self.name!r} starts from a pretrained checkpoint: pass --init PATH")

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine to 0 (or constant)."""
        warm = int(self.warmup_ratio * self.max_steps)
        if step < warm:
            return self.learning_rate * (step + 1) / warm
        if self.lr_schedule == "constant":
            return self.learning_rate
        progress = (step - warm) / max(1, self.max_steps - warm)
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TrainingError(_unknown_message("training config field", unknown[0], _field_names()))
        return dataclasses.replace(self, **changes)


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _unknown_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(known)}"


RECIPES: dict[str, dict[str, Any]] = {
    "full": dict(
        description="Full fine-tuning of the DiT (official droid_training_full_finetune: LR 1e-5).",
    ),
    "lora": dict(
        description="LoRA rank 4 / alpha 4 on attention + FFN, action register fully trained "
        "(official droid_training_lora: LR 1e-4).",
        finetune="lora",
        learning_rate=1e-4,
    ),
    "adapt": dict(
        description="New embodiment from a pretrained checkpoint (official agibot/yam recipe: LoRA, LR 1e-5, "
        "5000 steps); the I/O profile, prompt template and statistics come from the new data.",
        finetune="lora",
        learning_rate=1e-5,
        max_steps=5000,
        requires_init_checkpoint=True,
    ),
    "cotrain-video": dict(
        description="Robot data + video-only data (human or other robots): video-only samples train the video "
        "loss only (has_action = 0).",
        requires_video_only_data=True,
    ),
    "flash": dict(
        description="DreamZero-Flash: decoupled video/action noise (video biased to high noise, actions uniform "
        "and independent) so one denoising step yields clean actions; evaluated with 1 step.",
        decouple_action_noise=True,
        video_noise="high",
        eval_inference_steps=1,
    ),
    "action-only": dict(
        description="Baseline: the same network with the video loss switched off (action loss only).",
        video_loss_weight=0.0,
    ),
}


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def get_recipe(name: str, **overrides: Any) -> TrainConfig:
    """The named recipe with ``overrides`` applied (validated).

    Raises:
        TrainingError: unknown recipe (with a did-you-mean), unknown field or invalid value.
    """
    if name not in RECIPES:
        raise TrainingError(_unknown_message("training recipe", str(name), recipe_names()))
    unknown = sorted(set(overrides) - set(_field_names()))
    if unknown:
        raise TrainingError(_unknown_message("training config field", unknown[0], _field_names()))
    return TrainConfig(name=name, **{**RECIPES[name], **overrides})


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> typed overrides (types from the dataclass fields; tuples comma-separated)."""
    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise TrainingError(f"--set {item!r}: expected KEY=VALUE")
        if key not in hints:
            raise TrainingError(_unknown_message("training config field", key, _field_names()))
        out[key] = _coerce(key, hints[key], raw.strip())
    return out


def _coerce(key: str, hint: Any, raw: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if hint is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true/false")
            return raw.lower() in ("true", "1", "yes")
        if origin is tuple:
            return tuple(args[0](v) for v in raw.split(","))
        if type(None) in args:  # Optional[X]
            if raw.lower() in ("none", "null", ""):
                return None
            return next(a for a in args if a is not type(None))(raw)
        return hint(raw)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"--set {key}={raw!r}: {exc}") from None
