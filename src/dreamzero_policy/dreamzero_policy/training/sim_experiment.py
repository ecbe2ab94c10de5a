"""The simulated training experiment (``make train-demo``): demonstrations -> dataset -> two trainings ->
closed-loop success rates in the simulator.

1. Scripted experts (``sim_experts``) perform the tasks of ``sim_tasks`` (reach / push / pick, with language
   instructions) from random object placements; every episode is recorded as a rosbag (``sim_recording``).
2. The data pipeline converts the bags (``config/datasets/sim_tabletop.yaml``).
3. The same network (preset, seed, data order) is trained twice on CPU: recipe ``full`` (video + action
   flow-matching losses) and ``action-only`` (video loss weight 0).
4. Closed loop without ROS (``sim_rollout``): success over the same unseen placements for a random policy,
   the action-only model, the full world action model, and the scripted expert (a harness check).
5. ``<out>/results.json``, ``results.md`` (table + commands), ``loss_curves.png``; the table is printed.

Run: ``python -m dreamzero_policy.training.sim_experiment [--smoke] [-o DIR]`` (``scripts/train_demo.sh``).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dreamzero_policy.core.errors import DreamZeroError

from .sim_recording import convert_demos, record_demos, repo_config
from .sim_report import results_table, write_reports
from .sim_tasks import TASKS, get_task, sample_placement

__all__ = ["ExperimentConfig", "add_arguments", "main", "run", "run_experiment"]

RECIPES = ("action-only", "full")


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes of one experiment. ``image_size`` (h, w) per camera; steps are optimiser steps per training."""

    preset: str = "small"
    episodes_per_task: int = 16
    eval_episodes_per_task: int = 8
    train_steps: int = 300
    learning_rate: float = 2e-4
    batch_size: int = 1
    augment: bool = False
    eval_samples: int = 4
    image_size: tuple[int, int] = (64, 128)
    tasks: tuple[str, ...] = tuple(t.name for t in TASKS)
    seed: int = 0
    eval_seed: int = 1000
    fps: float = 15.0
    smoke: bool = False


# Smoke: the whole pipeline in about a minute (tiny preset, two tasks, one demonstration and one episode each).
SMOKE = dict(
    preset="tiny",
    episodes_per_task=1,
    eval_episodes_per_task=1,
    train_steps=2,
    eval_samples=1,
    tasks=("reach_ball", "pick_cube"),
    smoke=True,
)


def _log(msg: str) -> None:
    print(f"[train-demo {datetime.now():%H:%M:%S}] {msg}", flush=True)


def spec_data(action_horizon: int, fps: float) -> dict[str, Any]:
    """``config/embodiments/sim_tabletop.yaml`` with the chunk geometry of a model with ``action_horizon``
    actions per block: execute the whole chunk, 4 frames per call spanning it."""
    data = yaml.safe_load(repo_config("embodiments", "sim_tabletop.yaml").read_text())
    data["control"].update(action_horizon=action_horizon, execute_horizon=action_horizon)
    data["video"]["frame_interval_s"] = round(max(1, action_horizon // 4) / fps, 4)
    return data


def _train(cfg: ExperimentConfig, recipe: str, dataset: Path, spec: dict[str, Any], out: Path) -> dict[str, Any]:
    from .configs import get_recipe
    from .datasets import DataSource
    from .trainer import Trainer

    steps = cfg.train_steps
    tc = get_recipe(
        recipe,
        preset=cfg.preset,
        max_steps=steps,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        log_every=max(1, steps // 100),
        eval_every=steps,
        save_every=steps,
        keep_checkpoints=1,
        eval_samples=cfg.eval_samples,
        seed=cfg.seed,
    )
    t0 = time.monotonic()
    result = Trainer(tc, [DataSource(dataset)], out, spec, device="cpu", progress=False, overwrite=True).run()
    seconds = time.monotonic() - t0
    train = [r for r in result.records if "train/loss" in r]
    evals = [r for r in result.records if "eval/video_loss" in r]
    tail = train[-max(1, len(train) // 10) :]
    return {
        "recipe": recipe,
        "steps": result.step,
        "seconds": round(seconds, 1),
        "checkpoint": str(result.checkpoint),
        "records": result.records,
        "final_train_action_loss": float(np.mean([r["train/action_loss"] for r in tail])),
        "final_train_video_loss": float(np.mean([r["train/video_loss"] for r in tail])),
        "heldout": {k: v for k, v in (evals[-1] if evals else {}).items() if k != "step"},
        "config": {
            k: v
            for k, v in tc.to_dict().items()
            if k
            in (
                "preset",
                "max_steps",
                "learning_rate",
                "batch_size",
                "augment",
                "video_loss_weight",
                "action_loss_weight",
                "num_chunks",
                "warmup_ratio",
                "lr_schedule",
                "seed",
            )
        },
    }


def _evaluate(
    cfg: ExperimentConfig,
    checkpoints: dict[str, str],
    train_xy: list[tuple[float, float]],
) -> dict[str, Any]:
    from dreamzero_sim.sim_core import CAMERA_NAMES, CameraRenderer, SimRobot

    from dreamzero_policy.backends import create_backend
    from dreamzero_policy.runtime.io_spec import load_io_spec

    from .sim_rollout import ExpertPolicy, ModelPolicy, RandomPolicy, run_episode

    tasks = [get_task(n) for n in cfg.tasks]
    rng = np.random.default_rng([cfg.eval_seed, 11])
    placements = {t.name: [sample_placement(t, rng) for _ in range(cfg.eval_episodes_per_task)] for t in tasks}
    backends = {}
    for name, ckpt in checkpoints.items():
        backends[name] = create_backend("inprocess", load_io_spec(Path(ckpt) / "embodiment.yaml"), checkpoint=ckpt)
    spec = backends["full"].spec  # statistics of the dataset: the random policy's output scale
    policies = [ExpertPolicy(spec.action_horizon, spec.fps), RandomPolicy(spec, cfg.eval_seed)]
    policies += [ModelPolicy(f"{name} (trained)", backends[name].spec, backends[name]) for name in RECIPES]
    sim = SimRobot()
    renderer = CameraRenderer(sim.model, cfg.image_size[1], cfg.image_size[0], CAMERA_NAMES)
    out: dict[str, Any] = {"policies": {}, "placements": {k: [p.xy for p in v] for k, v in placements.items()}}
    nearest = (
        [
            min(np.hypot(p.xy[t.target][0] - x, p.xy[t.target][1] - y) for x, y in train_xy)
            for t in tasks
            for p in placements[t.name]
        ]
        if train_xy
        else []
    )
    out["nearest_training_target_cm"] = (
        {"min": round(100 * float(np.min(nearest)), 2), "mean": round(100 * float(np.mean(nearest)), 2)}
        if nearest
        else {}
    )
    try:
        for policy in policies:
            t0 = time.monotonic()
            episodes = []
            for task in tasks:
                for p in placements[task.name]:
                    res = run_episode(sim, renderer, task, p, policy, spec.fps, spec.execute_horizon)
                    episodes.append(res.as_dict())
            per_task = {}
            for task in tasks:
                ok = [e["success"] for e in episodes if e["task"] == task.name]
                per_task[task.name] = {"successes": int(sum(ok)), "episodes": len(ok), "rate": float(np.mean(ok))}
            overall = [e["success"] for e in episodes]
            errors = [e["error"] for e in episodes if e["error"]]
            out["policies"][policy.name] = {
                "per_task": per_task,
                "successes": int(sum(overall)),
                "episodes": len(overall),
                "rate": float(np.mean(overall)),
                "seconds": round(time.monotonic() - t0, 1),
                "model_seconds": round(getattr(policy, "model_seconds", 0.0), 1),
                "errors": len(errors),
                "episodes_detail": episodes,
            }
            failed = f"; {len(errors)} episodes stopped: {errors[0]}" if errors else ""
            _log(f"eval {policy.name}: {sum(overall)}/{len(overall)} successes ({time.monotonic() - t0:.0f} s){failed}")
    finally:
        renderer.close()
        for b in backends.values():
            b.close()
    return out


def run_experiment(cfg: ExperimentConfig, output: Path, command: str = "") -> dict[str, Any]:
    """The whole experiment into ``output``; returns the results dict (also written as results.json)."""
    from dreamzero_policy.model.configuration_dreamzero import get_preset

    t_start = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    horizon = get_preset(cfg.preset).num_action_per_block
    timings: dict[str, float] = {}
    tasks = [get_task(n) for n in cfg.tasks]

    # Re-running into the same folder replaces its earlier bags (dataset and runs are overwritten too).
    shutil.rmtree(output / "bags", ignore_errors=True)
    t0 = time.monotonic()
    _log(f"recording {cfg.episodes_per_task} expert episodes x {len(tasks)} tasks -> {output / 'bags'}")
    demos = record_demos(output / "bags", tasks, cfg.episodes_per_task, cfg.seed, cfg.image_size, cfg.fps)
    timings["record_s"] = time.monotonic() - t0

    t0 = time.monotonic()
    conv = convert_demos([d.bag for d in demos], output / "dataset", horizon)
    timings["convert_s"] = time.monotonic() - t0
    _log(f"converted {conv.episodes} episodes, {conv.frames} frames -> {conv.root}")

    spec = spec_data(horizon, cfg.fps)
    trainings = {}
    for recipe in RECIPES:
        t0 = time.monotonic()
        _log(f"training '{recipe}' ({cfg.preset}, {cfg.train_steps} steps)")
        trainings[recipe] = _train(cfg, recipe, conv.root, spec, output / f"train_{recipe.replace('-', '_')}")
        timings[f"train_{recipe}_s"] = time.monotonic() - t0
        _log(
            f"trained '{recipe}' in {timings[f'train_{recipe}_s']:.0f} s: final action loss "
            f"{trainings[recipe]['final_train_action_loss']:.4f}"
        )

    t0 = time.monotonic()
    train_xy = [d.placement[get_task(d.task).target] for d in demos]
    evaluation = _evaluate(cfg, {r: trainings[r]["checkpoint"] for r in RECIPES}, train_xy)
    timings["evaluate_s"] = time.monotonic() - t0
    timings["total_s"] = time.monotonic() - t_start

    results = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "config": dataclasses.asdict(cfg),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "dataset": {
            "root": str(conv.root),
            "episodes": conv.episodes,
            "frames": conv.frames,
            "demos_per_task": {t.name: sum(d.task == t.name for d in demos) for t in tasks},
        },
        "tasks": [dataclasses.asdict(t) for t in tasks],
        "training": trainings,
        "evaluation": evaluation,
    }
    write_reports(results, output)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ExperimentConfig()
    parser.add_argument(
        "--smoke", action="store_true", help="fast check: tiny preset, 2 tasks, 1 demo + 1 eval episode each, 2 steps"
    )
    parser.add_argument("--output", "-o", type=Path, help="output folder (default runs/train_demo/<timestamp>)")
    parser.add_argument("--preset", help=f"model preset (default {d.preset}; smoke: tiny)")
    parser.add_argument("--episodes", type=int, help=f"expert demonstrations per task (default {d.episodes_per_task})")
    parser.add_argument(
        "--eval-episodes",
        type=int,
        help=f"closed-loop episodes per task and policy (default {d.eval_episodes_per_task})",
    )
    parser.add_argument("--steps", type=int, help=f"optimiser steps per training (default {d.train_steps})")
    parser.add_argument("--lr", type=float, help=f"peak learning rate (default {d.learning_rate})")
    parser.add_argument("--tasks", nargs="+", choices=[t.name for t in TASKS], help="subset of the tasks")
    parser.add_argument("--seed", type=int, help="seed of demonstrations, model init and data order")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    cfg = ExperimentConfig(**(SMOKE if args.smoke else {}))
    changes = {
        k: v
        for k, v in (
            ("preset", args.preset),
            ("episodes_per_task", args.episodes),
            ("eval_episodes_per_task", args.eval_episodes),
            ("train_steps", args.steps),
            ("learning_rate", args.lr),
            ("seed", args.seed),
        )
        if v is not None
    }
    if args.tasks:
        changes["tasks"] = tuple(args.tasks)
    for key in ("episodes_per_task", "eval_episodes_per_task", "train_steps"):
        if key in changes and changes[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {changes[key]}")
    return dataclasses.replace(cfg, **changes)


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"train-demo: {exc}", file=sys.stderr)
        return 2
    output = args.output or Path("runs") / "train_demo" / datetime.now().strftime("%Y%m%d_%H%M%S")
    # scripts/train_demo.sh forwards its arguments here (after setting up the environment).
    command = " ".join(["scripts/train_demo.sh", *(argv if argv is not None else sys.argv[1:])])
    try:
        results = run_experiment(cfg, output, command)
    except (DreamZeroError, RuntimeError, OSError) as exc:
        print(f"train-demo: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(results_table(results), flush=True)
    _log(f"done in {results['timings_s']['total_s']:.0f} s; results in {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train-demo", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
