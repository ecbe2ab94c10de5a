"""Loss curves as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_losses"]


def plot_losses(records: list[dict[str, Any]], path: Path) -> Path:
    """Training losses (total, video, action) against step, and the held-out metrics when present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "train/loss" in r]
    evals = [r for r in records if "eval/video_loss" in r]
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
    ax = axes[0][0]
    for key, label in (("train/loss", "total"), ("train/video_loss", "video"), ("train/action_loss", "action")):
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=label)
    ax.set(xlabel="step", ylabel="flow-matching loss", title="training loss", yscale="log")
    ax.legend()
    if evals:
        ax = axes[0][1]
        for key, label in (
            ("eval/video_loss", "video loss"),
            ("eval/action_loss", "action loss"),
            ("eval/action_mae", "action MAE (robot units)"),
        ):
            pts = [(r["step"], r[key]) for r in evals if key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.set(xlabel="step", title="held-out evaluation")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
