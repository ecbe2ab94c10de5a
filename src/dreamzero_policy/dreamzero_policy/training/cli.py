"""``dreamzero train``: fine-tune, adapt or distil a world action model on converted datasets.

Imports stay light at parser-build time (``dreamzero --help`` must be fast); torch and accelerate load in
``run``. Exit codes: 0 done, 1 training failed, 2 usage / configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dreamzero_policy.core.errors import DreamZeroError

from .configs import RECIPES, TrainingError, get_recipe, parse_overrides, recipe_names

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """recipes:
{recipes}

examples:
  # new robot from ~30 min of play data, LoRA on a pretrained checkpoint; I/O spec derived from the data
  dreamzero train --recipe adapt --init ckpt/dreamzero_base --data datasets/my_robot -o runs/my_robot
  # robot data + video-only demonstrations (human or other robots), mixture 3:1
  dreamzero train --recipe cotrain-video --preset small --data ds/robot:3 --video-data ds/human:1 -o runs/co
  # the 1-step Flash model, starting from a trained checkpoint
  dreamzero train --recipe flash --init runs/co/checkpoints/step_001000 --data ds/robot -o runs/flash
  # continue an interrupted run (same step, optimiser state and data order)
  dreamzero train --resume runs/co
  # multi-GPU: accelerate launch --num_processes 4 -m dreamzero_policy.cli train ...

A checkpoint folder (runs/X/checkpoints/step_N) loads in the policy node: backend 'inprocess',
checkpoint=<folder>, embodiment spec <folder>/embodiment.yaml (statistics in experiment_cfg/metadata.json).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG.format(recipes="\n".join(f"  {n:14s} {RECIPES[n]['description']}" for n in recipe_names()))
    parser.add_argument("--recipe", "-r", default="full", help=f"named recipe: {', '.join(recipe_names())}")
    parser.add_argument(
        "--data",
        "-d",
        action="append",
        default=[],
        metavar="PATH[:WEIGHT]",
        help="converted robot dataset, optional mixture weight (repeatable)",
    )
    parser.add_argument(
        "--video-data",
        action="append",
        default=[],
        metavar="PATH[:WEIGHT]",
        help="dataset used for the video loss only (every episode treated as video-only)",
    )
    parser.add_argument("--output", "-o", type=Path, help="run folder (checkpoints, metrics, loss.png)")
    parser.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in RUN from its last checkpoint")
    parser.add_argument("--preset", help="model preset when not starting from a checkpoint (tiny, small, ...)")
    parser.add_argument("--init", help="initial checkpoint (our pipeline format, e.g. an imported official one)")
    parser.add_argument(
        "--embodiment", "-e", help="I/O spec name in config/embodiments or a YAML path (default: derived from the data)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lora", action="store_const", const="lora", dest="finetune", help="train LoRA adapters")
    mode.add_argument("--full", action="store_const", const="full", dest="finetune", help="full fine-tuning")
    parser.add_argument("--max-steps", type=int, help="optimiser steps (overrides the recipe)")
    parser.add_argument("--batch-size", type=int, help="samples per step per process")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe field, e.g. --set num_chunks=2 --set gradient_checkpointing=true",
    )
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto", help="cpu forces CPU training")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run in --output first")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    out = parse_overrides(args.set)
    for key, value in (
        ("preset", args.preset),
        ("init_checkpoint", args.init),
        ("finetune", args.finetune),
        ("max_steps", args.max_steps),
        ("batch_size", args.batch_size),
        ("learning_rate", args.lr),
    ):
        if value is not None:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = "cpu" if args.device == "cpu" else None
    try:
        from .datasets import parse_source
        from .trainer import Trainer

        if args.resume:
            overrides = {k: v for k, v in _overrides(args).items() if k == "max_steps"}
            trainer = Trainer.resume(args.resume, device=device, progress=not args.no_progress, **overrides)
        else:
            if not args.output:
                print("dreamzero train: --output is required (or --resume RUN)", file=sys.stderr)
                return EXIT_USAGE
            if not args.data:
                print("dreamzero train: at least one --data PATH is required", file=sys.stderr)
                return EXIT_USAGE
            config = get_recipe(args.recipe, **_overrides(args))
            sources = [parse_source(d) for d in args.data] + [parse_source(d, True) for d in args.video_data]
            for s in sources:
                if not (s.path / "meta" / "info.json").is_file():
                    print(f"dreamzero train: {s.path} is not a converted dataset (no meta/info.json)", file=sys.stderr)
                    return EXIT_USAGE
            trainer = Trainer(
                config,
                sources,
                args.output,
                args.embodiment,
                device=device,
                progress=not args.no_progress,
                overwrite=args.overwrite,
            )
        result = trainer.run()
    except TrainingError as exc:
        print(f"dreamzero train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DreamZeroError as exc:
        print(f"dreamzero train: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"trained {result.step} steps; checkpoint: {result.checkpoint}")
    return EXIT_OK
