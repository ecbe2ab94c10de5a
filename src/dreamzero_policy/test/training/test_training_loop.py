"""The training loop: the loss goes down, video-only samples leave the action head alone, LoRA leaves the
frozen weights alone, resume reproduces the uninterrupted run, and a checkpoint drives the in-process backend."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from dreamzero_policy.backends import create_backend
from dreamzero_policy.runtime.io_spec import load_io_spec
from dreamzero_policy.training import cli
from dreamzero_policy.training.configs import get_recipe
from dreamzero_policy.training.datasets import DataSource, collate
from dreamzero_policy.training.trainer import Trainer, latest_checkpoint

FAST = dict(
    preset="tiny",
    warmup_ratio=0.0,
    holdout_fraction=0.0,
    log_every=1,
    eval_every=1000,
    save_every=1000,
    lr_schedule="constant",
)


def _fixed_loss(trainer: Trainer, keys: list[tuple[int, int, int]]) -> float:
    """Training loss on fixed samples with fixed noise (comparable before/after training)."""
    total = 0.0
    with torch.no_grad():
        for i, key in enumerate(keys):
            batch = trainer.encoders.encode(collate([trainer.train_set[key]]))
            loss, _, _ = trainer.module(batch, torch.Generator().manual_seed(i), np.random.default_rng(i))
            total += float(loss)
    return total / len(keys)


def test_training_tiny_run_reduces_the_loss(robot_dataset: Path, tmp_path: Path) -> None:
    cfg = get_recipe("full", **FAST, max_steps=15, learning_rate=3e-3, batch_size=2)
    trainer = Trainer(cfg, [DataSource(robot_dataset)], tmp_path / "run", progress=False)
    keys = [(0, i, -1) for i in range(0, trainer.train_set.sizes[0], 9)]
    before = _fixed_loss(trainer, keys)
    result = trainer.run()
    after = _fixed_loss(trainer, keys)
    print(f"fixed-noise loss {before:.4f} -> {after:.4f}")
    # fixed noise makes this deterministic; the flow-matching loss has an irreducible floor (noise variance)
    assert result.step == 15 and after < 0.8 * before, (before, after)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert len([r for r in result.records if "train/loss" in r]) == 15


def test_training_video_only_batches_leave_action_head_grads_zero(
    robot_dataset: Path, video_dataset: Path, tmp_path: Path
) -> None:
    cfg = get_recipe("cotrain-video", **FAST, max_steps=1)
    sources = [DataSource(robot_dataset), DataSource(video_dataset, video_only=True)]
    trainer = Trainer(cfg, sources, tmp_path / "run", progress=False)
    dit = trainer.comps.dit

    def grads(key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        dit.zero_grad(set_to_none=False)
        batch = trainer.encoders.encode(collate([trainer.train_set[key]]))
        loss, _, _ = trainer.module(batch, torch.Generator().manual_seed(0), np.random.default_rng(0))
        loss.backward()
        return {n: p.grad.clone() for n, p in dit.named_parameters() if p.grad is not None}

    video_only = grads((1, 0, 5))
    head = [n for n in video_only if n.startswith("action_decoder.")]
    assert head and all(float(video_only[n].abs().max()) == 0.0 for n in head)
    assert float(video_only["patch_embedding.weight"].abs().max()) > 0  # the video loss does train
    robot = grads((0, 0, 5))
    assert max(float(robot[n].abs().max()) for n in head) > 0  # the same head does learn from robot data


def test_training_lora_run_keeps_frozen_weights(robot_dataset: Path, tmp_path: Path) -> None:
    cfg = get_recipe("lora", **FAST, max_steps=3, learning_rate=1e-2)
    trainer = Trainer(cfg, [DataSource(robot_dataset)], tmp_path / "run", progress=False)
    before = {n: p.detach().clone() for n, p in trainer.comps.dit.named_parameters()}
    trainer.run()
    after = dict(trainer.comps.dit.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed == {n for n, p in after.items() if p.requires_grad}  # every trained tensor moved ...
    assert all(
        ".lora_" in n or n.startswith(("action_encoder.", "state_encoder.", "action_decoder.")) for n in changed
    )  # ... and nothing else did


def test_training_resume_continues_the_same_run(robot_dataset: Path, tmp_path: Path) -> None:
    cfg = get_recipe("full", **{**FAST, "save_every": 2}, max_steps=4, learning_rate=1e-3)
    straight = Trainer(cfg, [DataSource(robot_dataset)], tmp_path / "a", progress=False)
    straight.run()
    interrupted = Trainer(cfg, [DataSource(robot_dataset)], tmp_path / "b", progress=False)
    interrupted.run()
    ckpts = tmp_path / "b" / "checkpoints"
    shutil.rmtree(ckpts / "step_000004")  # as if the run had died after step 2
    (ckpts / "latest").write_text("step_000002")
    with pytest.raises(Exception, match="--resume"):
        Trainer(cfg, [DataSource(robot_dataset)], tmp_path / "b", progress=False)
    resumed = Trainer.resume(tmp_path / "b", progress=False)
    assert resumed.step == 2
    saved = torch.load(ckpts / "step_000002" / "training_state" / "optimizer.pt", weights_only=True)
    live = resumed.optimizer.state_dict()
    assert saved["state"].keys() == live["state"].keys() and all(
        torch.equal(saved["state"][k]["exp_avg"], live["state"][k]["exp_avg"]) for k in saved["state"]
    )
    resumed.run()
    assert latest_checkpoint(tmp_path / "b").name == "step_000004"
    for (n, p), q in zip(straight.comps.dit.named_parameters(), resumed.comps.dit.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=n)
    s_opt, r_opt = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(s_opt[k]["step"], r_opt[k]["step"]) for k in s_opt)


def test_training_checkpoint_drives_the_inprocess_backend(robot_dataset: Path, tmp_path: Path) -> None:
    cfg = get_recipe("lora", **{**FAST, "holdout_fraction": 0.34}, max_steps=2, eval_samples=1)
    result = Trainer(cfg, [DataSource(robot_dataset)], tmp_path / "run", progress=False).run()
    ckpt = result.checkpoint
    assert ckpt is not None and any("eval/action_mae" in r for r in result.records)
    spec = load_io_spec(ckpt / "embodiment.yaml")
    backend = create_backend("inprocess", spec, checkpoint=str(ckpt))
    meta = json.loads((ckpt / "experiment_cfg" / "metadata.json").read_text())
    assert backend.spec.action_stats is not None
    np.testing.assert_allclose(
        backend.spec.action_stats.q01[:3], meta["synthetic"]["statistics"]["action"]["joint_position"]["q01"]
    )
    h, w = spec.request_size
    obs = {
        "observation/view0": np.full((1, h, w, 3), 90, np.uint8),
        "observation/joint_position": np.array([0.1, 0.5, 0.2], np.float32),
        "observation/gripper_position": np.array([0.3], np.float32),
        "prompt": "reach the cube",
        "session_id": "s",
    }
    out = backend.infer(obs)
    actions = out["actions"]
    assert actions.shape == (6, 4) and np.isfinite(actions).all()
    assert np.all((actions[:, 3] >= 0) & (actions[:, 3] <= 1))


def test_training_cli_reports_bad_input(robot_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--recipe", "adpt", "--data", str(robot_dataset), "-o", str(tmp_path)])) == 2
    assert "Did you mean 'adapt'" in capsys.readouterr().err
    assert cli.run(parser.parse_args(["--data", str(tmp_path), "-o", str(tmp_path / "o")])) == 2
    assert "not a converted dataset" in capsys.readouterr().err
    assert (
        cli.run(
            parser.parse_args(
                [
                    "--recipe",
                    "cotrain-video",
                    "--preset",
                    "tiny",
                    "--data",
                    str(robot_dataset),
                    "-o",
                    str(tmp_path / "o"),
                ]
            )
        )
        == 2
    )
    assert "video-only data" in capsys.readouterr().err
    assert cli.run(parser.parse_args(["--resume", str(tmp_path / "none")])) == 2
    args = [
        "--preset",
        "tiny",
        "--data",
        f"{robot_dataset}:2",
        "-o",
        str(tmp_path / "ok"),
        "--max-steps",
        "1",
        "--no-progress",
        "--device",
        "cpu",
        "--set",
        "holdout_fraction=0",
    ]
    assert cli.run(parser.parse_args(args)) == 0
    assert latest_checkpoint(tmp_path / "ok") is not None


def test_training_adapt_and_flash_start_from_a_checkpoint(robot_dataset: Path, tmp_path: Path) -> None:
    from dreamzero_policy.training.model_io import video_index

    base = (
        Trainer(get_recipe("full", **FAST, max_steps=1), [DataSource(robot_dataset)], tmp_path / "base", progress=False)
        .run()
        .checkpoint
    )
    adapt = get_recipe("adapt", **FAST, max_steps=1, init_checkpoint=str(base))
    trainer = Trainer(adapt, [DataSource(robot_dataset)], tmp_path / "adapt", progress=False)
    from dreamzero_policy.model.pipeline import WorldActionPipeline

    start = WorldActionPipeline.from_pretrained(base).dit.state_dict()
    merged_before = {k: v for k, v in trainer.comps.dit.state_dict().items() if ".lora_" not in k}
    assert torch.equal(merged_before["blocks.0.ffn.net.2.base_layer.weight"], start["blocks.0.ffn.net.2.weight"])
    ckpt = trainer.run().checkpoint
    assert WorldActionPipeline.from_pretrained(ckpt).config == WorldActionPipeline.from_pretrained(base).config

    flash = get_recipe(
        "flash", **{**FAST, "holdout_fraction": 0.34}, max_steps=1, eval_samples=1, init_checkpoint=str(base)
    )
    result = Trainer(flash, [DataSource(robot_dataset)], tmp_path / "flash", progress=False).run()
    assert any("eval/action_mae" in r for r in result.records)  # evaluated with 1 denoising step
    idx = video_index(flash, (64, 64), 1000, np.random.default_rng(0))
    sigma = 1.0 - idx.float() / 1000  # Beta(3, 1): mean 0.75, i.e. mostly high video noise
    assert (
        abs(float(sigma.mean()) - 0.75) < 0.02
        and video_index(get_recipe("full"), (2, 3), 1000, np.random.default_rng(0)) is None
    )
