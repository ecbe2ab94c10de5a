"""Reports of the simulated training experiment: ``results.json``, ``results.md`` and ``loss_curves.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .sim_tasks import PICK_MIN_LIFT_M, PUSH_MIN_M, REACH_RADIUS_M

__all__ = ["results_table", "write_reports"]


def results_table(results: dict[str, Any]) -> str:
    """Markdown table: one row per policy, success count/rate per task and overall."""
    tasks = [t["name"] for t in results["tasks"]]
    head = "| policy | " + " | ".join(tasks) + " | overall |"
    lines = [head, "|" + "---|" * (len(tasks) + 2)]
    for name, pol in results["evaluation"]["policies"].items():
        cells = [f"{pol['per_task'][t]['successes']}/{pol['per_task'][t]['episodes']}" for t in tasks]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {pol['successes']}/{pol['episodes']} "
            f"({100 * pol['rate']:.0f} %) |"
        )
    return "\n".join(lines)


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for recipe, tr in results["training"].items():
        recs = [r for r in tr["records"] if "train/loss" in r]
        if not recs:
            continue
        steps = np.array([r["step"] for r in recs])
        for ax, key in zip(axes, ("train/action_loss", "train/video_loss"), strict=True):
            y = np.array([r[key] for r in recs], dtype=float)
            k = max(1, len(y) // 20)  # moving average: single-sample losses are noisy
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(
                steps[k - 1 :],
                smooth,
                label=f"{recipe}"
                + (
                    " (not trained on)" if key.endswith("video_loss") and tr["config"]["video_loss_weight"] == 0 else ""
                ),
            )
    axes[0].set(title="action flow-matching loss (train)", xlabel="step", yscale="log")
    axes[1].set(title="video flow-matching loss (train)", xlabel="step", yscale="log")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(results: dict[str, Any], output: Path) -> None:
    cfg, tm = results["config"], results["timings_s"]
    (output / "results.json").write_text(json.dumps(results, indent=1, default=str))
    _plot(results, output / "loss_curves.png")
    ev = results["evaluation"]
    near = ev.get("nearest_training_target_cm", {})
    train_rows = []
    for recipe, tr in results["training"].items():
        held = tr["heldout"]
        mae = f"{held['eval/action_mae']:.3f}" if "eval/action_mae" in held else "n/a"
        train_rows.append(
            f"| {recipe} | {tr['steps']} | {tr['seconds']:.0f} | {tr['final_train_action_loss']:.4f} | "
            f"{tr['final_train_video_loss']:.4f} | {mae} |"
        )
    md = f"""# Simulated training experiment ({results["created"]})

Preset `{cfg["preset"]}` trained on CPU from random initial weights; {results["dataset"]["episodes"]} scripted-expert
demonstrations ({cfg["episodes_per_task"]} per task, {results["dataset"]["frames"]} frames at {cfg["fps"]:g} Hz,
cameras {cfg["image_size"][1]}x{cfg["image_size"][0]}); {cfg["eval_episodes_per_task"]} closed-loop episodes per task
and policy on object placements not used for training (target object {near.get("min", "n/a")} cm from the nearest
training placement at least, {near.get("mean", "n/a")} cm on average).

## Closed-loop success (successes / episodes)

{results_table(results)}

Success: **reach** = TCP within {100 * REACH_RADIUS_M:.0f} cm of the object's centre at some control step;
**push** = object moved >= {100 * PUSH_MIN_M:.0f} cm along +x (away from the robot) by the end;
**pick** = object's centre >= {100 * PICK_MIN_LIFT_M:.0f} cm above its resting height at the end (held up).
The random policy draws actions uniformly in the model's normalised action space and post-processes them like
model output. The scripted expert (privileged object positions) is run through the same harness as a check
that the success tests can pass. Chunks are executed open loop for the whole chunk, then the policy re-plans.

## Training

| recipe | steps | seconds | final train action loss | final train video loss | held-out action MAE (rad) |
|---|---|---|---|---|---|
{chr(10).join(train_rows)}

Learning rate {cfg["learning_rate"]:g} (cosine, 5 % warm-up), batch {cfg["batch_size"]}, augmentation
{"on" if cfg["augment"] else "off"}, seed {cfg["seed"]}; both runs start from the same initial weights and see
the same samples. Loss curves: `loss_curves.png`.

## Runtime

{", ".join(f"{k[:-2]} {v:.0f} s" for k, v in tm.items())} (CPU).

## Reproduce

```
{results["command"] or "scripts/train_demo.sh"}
```
"""
    (output / "results.md").write_text(md)
