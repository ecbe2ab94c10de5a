"""Recipes: registry, did-you-mean, typed overrides, validation, LR schedule."""

from __future__ import annotations

import itertools
import math

import pytest
from dreamzero_policy.training.configs import (
    LORA_TARGETS,
    TrainingError,
    get_recipe,
    parse_overrides,
    recipe_names,
)


def test_training_recipes_registered_with_official_settings() -> None:
    assert {"adapt", "cotrain-video", "flash", "full", "lora", "action-only"} <= set(recipe_names())
    full = get_recipe("full")
    assert (full.learning_rate, full.betas, full.eps, full.weight_decay) == (1e-5, (0.95, 0.999), 1e-8, 1e-5)
    assert (full.warmup_ratio, full.max_grad_norm, full.lr_schedule) == (0.05, 1.0, "cosine")
    lora = get_recipe("lora")
    assert (lora.finetune, lora.lora_rank, lora.lora_alpha, lora.learning_rate) == ("lora", 4, 4.0, 1e-4)
    flash = get_recipe("flash")
    assert flash.decouple_action_noise and flash.video_noise == "high" and flash.eval_inference_steps == 1
    assert get_recipe("action-only").video_loss_weight == 0.0
    assert get_recipe("cotrain-video").requires_video_only_data
    assert "add_k_proj" not in LORA_TARGETS  # official: k_img/v_img are not wrapped


def test_training_unknown_names_get_suggestions() -> None:
    with pytest.raises(TrainingError, match="Did you mean 'adapt'"):
        get_recipe("adpt")
    with pytest.raises(TrainingError, match="Did you mean 'learning_rate'"):
        get_recipe("full", learning_rat=1e-3)
    with pytest.raises(TrainingError, match="Did you mean 'num_chunks'"):
        parse_overrides(["num_chunk=2"])


def test_training_adapt_needs_checkpoint_and_values_are_validated() -> None:
    with pytest.raises(TrainingError, match="--init"):
        get_recipe("adapt")
    assert get_recipe("adapt", init_checkpoint="ckpt").finetune == "lora"
    with pytest.raises(TrainingError, match="finetune"):
        get_recipe("full", finetune="qlora")
    with pytest.raises(TrainingError, match="both 0"):
        get_recipe("action-only", action_loss_weight=0.0)
    with pytest.raises(TrainingError, match="batch_size"):
        get_recipe("full", batch_size=0)


def test_training_overrides_are_typed() -> None:
    got = parse_overrides(
        [
            "num_chunks=2",
            "gradient_checkpointing=true",
            "betas=0.9,0.99",
            "eval_inference_steps=none",
            "learning_rate=3e-4",
        ]
    )
    assert got == {
        "num_chunks": 2,
        "gradient_checkpointing": True,
        "betas": (0.9, 0.99),
        "eval_inference_steps": None,
        "learning_rate": 3e-4,
    }
    with pytest.raises(TrainingError, match="true/false"):
        parse_overrides(["augment=maybe"])
    with pytest.raises(TrainingError, match="KEY=VALUE"):
        parse_overrides(["augment"])


def test_training_lr_schedule_warmup_then_cosine() -> None:
    cfg = get_recipe("full", max_steps=100, learning_rate=1.0)
    lrs = [cfg.lr_at(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(1.0)  # 5 warm-up steps
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    assert lrs[52] == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert lrs[-1] < 0.01
