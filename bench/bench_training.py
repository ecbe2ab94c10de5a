"""Training throughput on this machine: seconds per optimiser step for the tiny/small presets (CPU unless a
GPU is present), on a synthetic dataset made by the data pipeline (synthetic bags -> convert).

    python bench/bench_training.py [--presets tiny small] [--steps 5] [--batch-size 1] [--num-chunks 1]

Prints one line per configuration; timing excludes the first (warm-up) step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def make_dataset(root: Path) -> Path:
    from dreamzero_policy.data.convert import ConvertOptions, convert
    from dreamzero_policy.data.mapping import mapping_from_dict
    from dreamzero_policy.data.synth import SynthSpec, cameras, mapping_dict, write_bag

    spec = SynthSpec(duration_s=8.0, cameras=cameras(1, width=64, height=48), seed=1)
    write_bag(root / "bag", spec)
    mapping = mapping_from_dict(mapping_dict(spec, instruction={"text": "reach"}))
    convert([root / "bag"], mapping, root / "ds", ConvertOptions(progress=False))
    return root / "ds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--recipes", nargs="+", default=["full", "lora"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-chunks", type=int, default=1)
    args = parser.parse_args()

    import torch
    from dreamzero_policy.training.configs import get_recipe
    from dreamzero_policy.training.datasets import DataSource
    from dreamzero_policy.training.trainer import Trainer

    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_dataset(Path(tmp))
        for preset in args.presets:
            for recipe in args.recipes:
                cfg = get_recipe(
                    recipe,
                    preset=preset,
                    max_steps=args.steps + 1,
                    batch_size=args.batch_size,
                    num_chunks=args.num_chunks,
                    holdout_fraction=0.0,
                    log_every=1,
                    save_every=10**6,
                    eval_every=10**6,
                )
                out = Path(tmp) / f"{preset}-{recipe}"
                trainer = Trainer(cfg, [DataSource(ds)], out, progress=False)
                trainable = sum(p.numel() for p in trainer.comps.dit.parameters() if p.requires_grad)
                t0 = time.perf_counter()
                result = trainer.run()
                total = time.perf_counter() - t0
                recs = [r for r in result.records if "elapsed_s" in r]
                per_step = (recs[-1]["elapsed_s"] - recs[0]["elapsed_s"]) / max(1, len(recs) - 1)
                print(
                    json.dumps(
                        {
                            "preset": preset,
                            "recipe": recipe,
                            "device": device,
                            "batch_size": args.batch_size,
                            "num_chunks": args.num_chunks,
                            "trainable_params": trainable,
                            "s_per_step": round(per_step, 3),
                            "samples_per_s": round(args.batch_size / per_step, 3),
                            "wall_s_incl_final_checkpoint": round(total, 1),
                        }
                    )
                )


if __name__ == "__main__":
    main()
