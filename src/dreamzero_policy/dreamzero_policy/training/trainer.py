"""The training loop on ``accelerate`` (single process, or multi-GPU DDP via ``accelerate launch``).

Output folder::

    <out>/run.json                         recipe, data sources, embodiment spec (resume reads it back)
    <out>/metrics.jsonl, <out>/loss.png    one JSON record per log/eval step; the curves
    <out>/checkpoints/step_000100/         a WorldActionPipeline folder (config.json + safetensors, LoRA merged)
        experiment_cfg/metadata.json       q01/q99 per dataset key (the in-process backend reads them)
        embodiment.yaml                    the I/O spec, statistics from the metadata above
        training_state/                    trainable.safetensors, optimizer.pt, trainer_state.json (resume)
    <out>/checkpoints/latest               name of the newest complete checkpoint

Resume (``Trainer.resume(out)``) rebuilds the same initial model, loads the trained tensors and the
optimiser state and continues at the saved step; data order and noise depend only on (seed, step, rank),
so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.model.pipeline import WorldActionPipeline

from .configs import TrainConfig, TrainingError
from .datasets import ChunkDataset, DataSource, MixtureSampler, collate
from .embodiment import DataLayout, build_layout, derive_spec_data, load_spec_data, write_embodiment_files
from .evaluation import evaluate
from .lora import apply_lora, merged_state_dict
from .model_io import Components, FrozenEncoders, LossModule, build_components, plain_dit
from .plots import plot_losses

__all__ = ["TrainResult", "Trainer", "latest_checkpoint"]

log = logging.getLogger("dreamzero.train")


@dataclass
class TrainResult:
    step: int
    checkpoint: Path | None
    records: list[dict[str, Any]] = field(default_factory=list)


def latest_checkpoint(output: Path) -> Path | None:
    pointer = Path(output) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "training_state" / "trainer_state.json").is_file() else None


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class Trainer:
    """``Trainer(config, sources, output, embodiment=None).run()``; ``embodiment`` = a spec name/YAML path, or
    None to derive the I/O spec from the first robot dataset (``adapt`` on a new robot)."""

    def __init__(
        self,
        config: TrainConfig,
        sources: list[DataSource],
        output: str | Path,
        embodiment: str | Path | dict[str, Any] | None = None,
        device: str | None = None,
        progress: bool = True,
        overwrite: bool = False,
        _resume: bool = False,
    ) -> None:
        from accelerate import Accelerator

        self.config, self.sources, self.output = config, list(sources), Path(output)
        self.progress = progress
        if (
            config.requires_video_only_data
            and not any(s.video_only for s in sources)
            and not any(_has_video_only(s) for s in sources)
        ):
            raise TrainingError(f"recipe {config.name!r} needs video-only data: pass --video-data PATH")
        if not _resume:
            if latest_checkpoint(self.output) is not None and not overwrite:
                raise TrainingError(
                    f"{self.output} already holds a run: pass --resume to continue it or --overwrite to start over"
                )
            if overwrite and self.output.exists():
                shutil.rmtree(self.output)
        cuda = torch.cuda.is_available() and device != "cpu"
        mp = config.mixed_precision
        self.acc = Accelerator(
            mixed_precision=("bf16" if cuda else "no") if mp == "auto" else mp,
            cpu=not cuda,
            gradient_accumulation_steps=config.grad_accum_steps,
        )
        self.comps: Components = build_components(config, self.acc.device)
        self.layout = self._layout(embodiment)
        mc = self.comps.config
        self.train_set = ChunkDataset(self.sources, self.layout, mc, config, "train")
        self.eval_set = ChunkDataset(self.sources, self.layout, mc, config, "eval")
        if config.finetune == "lora":
            apply_lora(self.comps.dit, config)
        self.module = LossModule(self.comps.dit, config)
        self.encoders = FrozenEncoders(self.comps, self.acc.device)
        decay = [p for p in self.comps.dit.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.comps.dit.parameters() if p.requires_grad and p.ndim < 2]  # biases, norms
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.learning_rate,
            betas=config.betas,
            eps=config.eps,
        )
        self.step = 0
        self.records: list[dict[str, Any]] = []
        self.spec_data = self.layout.spec_data

    # --- construction helpers ------------------------------------------------------------------------
    def _layout(self, embodiment: str | Path | dict[str, Any] | None) -> DataLayout:
        robot = [s for s in self.sources if not s.video_only]
        if not robot:
            raise TrainingError("no robot dataset: pass at least one --data PATH with actions")
        horizon = self.comps.config.num_action_per_block
        readers = [DatasetReader(s.path) for s in robot]
        if isinstance(embodiment, dict):
            spec_data = embodiment
        elif embodiment:
            spec_data = load_spec_data(embodiment)
        else:
            spec_data = derive_spec_data(readers[0], horizon)
        layout = build_layout(readers[0], spec_data, horizon)
        for r in readers[1:]:
            build_layout(r, spec_data, horizon)  # same columns / rate; statistics come from the first
        return layout

    @classmethod
    def resume(cls, output: str | Path, device: str | None = None, progress: bool = True, **overrides: Any) -> Trainer:
        """Continue the run in ``output`` from its latest checkpoint (``overrides``: e.g. a larger max_steps)."""
        output = Path(output)
        ckpt = latest_checkpoint(output)
        run_file = output / "run.json"
        if ckpt is None or not run_file.is_file():
            raise TrainingError(f"{output}: no complete checkpoint to resume from")
        run = json.loads(run_file.read_text())
        cfg = run["config"]
        cfg.update({k: tuple(v) for k, v in cfg.items() if isinstance(v, list)})
        config = TrainConfig(**{**cfg, **overrides})
        sources = [DataSource(Path(s["path"]), s["weight"], s["video_only"]) for s in run["sources"]]
        self = cls(config, sources, output, run["embodiment"], device=device, progress=progress, _resume=True)
        self._load_state(ckpt)
        return self

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, acc = self.config, self.acc
        module, optimizer = acc.prepare(self.module, self.optimizer)
        per_step = cfg.batch_size * cfg.grad_accum_steps
        sampler = MixtureSampler(
            self.train_set.sizes,
            [s.weight for s in self.sources],
            seed=cfg.seed,
            start=self.step * per_step,
            rank=acc.process_index,
            world=acc.num_processes,
        )
        loader = DataLoader(
            self.train_set, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers
        )
        if acc.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
            self._write_run()
        batches = iter(loader)
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc=f"train[{cfg.name}]",
            unit="step",
            disable=not (self.progress and acc.is_main_process),
        )
        last_ckpt = latest_checkpoint(self.output)
        t0 = time.monotonic()
        while self.step < cfg.max_steps:
            lr = cfg.lr_at(self.step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses = []
            for micro in range(cfg.grad_accum_steps):
                batch = self.encoders.encode(next(batches))
                gen = torch.Generator().manual_seed(_seed(cfg.seed, self.step, acc.process_index, micro))
                rng = np.random.default_rng([cfg.seed, self.step, acc.process_index, micro, 1])
                with acc.accumulate(module), acc.autocast():
                    loss, video_loss, action_loss = module(batch, gen, rng)
                    acc.backward(loss)
                    grad_norm = (
                        acc.clip_grad_norm_(module.parameters(), cfg.max_grad_norm) if acc.sync_gradients else None
                    )
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append((float(loss.detach()), float(video_loss), float(action_loss)))
            self.step += 1
            bar.update(1)
            mean = np.mean(losses, 0)
            bar.set_postfix(loss=f"{mean[0]:.4f}")
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self._record(
                    {
                        "step": self.step,
                        "train/loss": mean[0],
                        "train/video_loss": mean[1],
                        "train/action_loss": mean[2],
                        "lr": lr,
                        "elapsed_s": time.monotonic() - t0,
                        "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    }
                )
            if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                self._evaluate()
            if self.step % cfg.save_every == 0 or self.step == cfg.max_steps:
                last_ckpt = self.save_checkpoint()
        bar.close()
        if acc.is_main_process and self.records:
            plot_losses(self._all_records(), self.output / "loss.png")
        acc.wait_for_everyone()
        return TrainResult(self.step, last_ckpt, self.records)

    def _evaluate(self) -> None:
        if not self.acc.is_main_process:
            return
        if not self.eval_set.has_holdout:
            log.warning(
                "no held-out episodes (holdout_fraction is 0 or the first robot dataset has < 2 episodes): "
                "evaluation skipped"
            )
            return
        metrics = evaluate(
            self.module,
            self.comps,
            self.encoders,
            self.eval_set,
            self.config.eval_samples,
            self.config.eval_inference_steps,
            seed=self.config.seed,
        )
        if metrics:
            self._record({"step": self.step, **metrics})

    def _record(self, rec: dict[str, Any]) -> None:
        rec = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in rec.items()}
        self.records.append(rec)
        if self.acc.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
            with (self.output / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(rec) + "\n")

    def _all_records(self) -> list[dict[str, Any]]:
        path = self.output / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _write_run(self) -> None:
        run = {
            "config": self.config.to_dict(),
            "embodiment": self.spec_data,
            "sources": [
                {"path": str(s.path.resolve()), "weight": s.weight, "video_only": s.video_only} for s in self.sources
            ],
        }
        (self.output / "run.json").write_text(json.dumps(run, indent=1))

    # --- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_N`` atomically (staged, then renamed) and prune old ones."""
        root = self.output / "checkpoints"
        final = root / f"step_{self.step:06d}"
        if not self.acc.is_main_process:
            self.acc.wait_for_everyone()
            return final
        stage = root / f".{final.name}.partial"
        shutil.rmtree(stage, ignore_errors=True)
        c = self.comps
        dit = plain_dit(c.config, merged_state_dict(c.dit))
        WorldActionPipeline(c.config, dit, c.text_encoder, c.image_encoder, c.vae).save_pretrained(stage)
        write_embodiment_files(stage, self.layout)
        state = stage / "training_state"
        state.mkdir()
        trained = {n: p.detach().contiguous().cpu() for n, p in c.dit.named_parameters() if p.requires_grad}
        save_file(trained, str(state / "trainable.safetensors"))
        torch.save(self.optimizer.state_dict(), state / "optimizer.pt")
        (state / "trainer_state.json").write_text(json.dumps({"step": self.step, "config": self.config.name}))
        shutil.rmtree(final, ignore_errors=True)
        stage.rename(final)
        (root / "latest.tmp").write_text(final.name)
        (root / "latest.tmp").replace(root / "latest")
        old = sorted(p for p in root.glob("step_*") if p.is_dir())[: -self.config.keep_checkpoints]
        for p in old:
            shutil.rmtree(p)
        self.acc.wait_for_everyone()
        return final

    def _load_state(self, ckpt: Path) -> None:
        state = ckpt / "training_state"
        trained = load_file(str(state / "trainable.safetensors"))
        params = dict(self.comps.dit.named_parameters())
        expected = {n for n, p in params.items() if p.requires_grad}
        if set(trained) != expected:
            diff = sorted(set(trained) ^ expected)[:3]
            raise TrainingError(f"{ckpt}: trained tensors do not match this run's model (e.g. {diff})")
        with torch.no_grad():
            for n, t in trained.items():
                params[n].copy_(t)
        opt = torch.load(state / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(opt)
        self.step = int(json.loads((state / "trainer_state.json").read_text())["step"])


def _has_video_only(source: DataSource) -> bool:
    try:
        return any(bool(e.get("video_only")) for e in DatasetReader(source.path).episodes)
    except Exception:  # an unreadable dataset fails later with a precise message
        return False
