"""DreamZero model benchmark (prints numbers; not a test).

1. Per-call latency under the official CPU timing definition (performance-anchors.md, last section): encoders and
   VAE outside the timed region; inside: bookkeeping, the KV-cache write of the newest observed frames (cond + neg
   batched), 16 UniPC steps with CFG 5 on video and the 8-of-16 step mask, solver updates. A session = 1 start
   call (prefill frame 0 + denoise block 1) + 3 calls with an observed block each. Median per call position over
   N sessions after one warm-up session; the session mean is compared with the official number.
2. KV cache vs recomputing the whole context at the 4th chunk (per denoising DiT evaluation).
3. DiT evaluations and time per chunk for 16-step, step-skipped (default) and 1-step modes.
4. Achieved GFLOP/s of one denoising DiT forward (FLOPs from torch's FlopCounterMode, counted with the plain ATen
   matmuls because it does not see oneDNN's linear).

The machine is shared: every line carries the 1-minute load average (os.getloadavg) at the time it was printed;
numbers taken at a load above the core count are unreliable. With other processes on the cores, OpenMP's default
spin-waiting makes 2-thread runs 5-10x slower (threads spin at every barrier while their partner is descheduled);
on a shared machine run with OMP_WAIT_POLICY=PASSIVE (printed in the header).

Usage: python bench/bench_model.py [--configs tiny small droid-tokens] [--sessions 5] [--threads 2]
GPU (when available): python bench/bench_model.py --device cuda --dtype bfloat16 --configs dreamzero-14b dreamzero-5b
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "dreamzero_policy"))

from dreamzero_policy.model.configuration_dreamzero import DreamZeroConfig, get_preset
from dreamzero_policy.model.inference import WorldActionModel
from dreamzero_policy.model.kernels import use_onednn
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT

# Official implementation, CPU float32, 2 threads: mean per call over a session (ms).
OFFICIAL_MS = {"tiny": 119.0, "small": 1363.0, "droid-tokens": 6488.0}


def bench_config(name: str) -> DreamZeroConfig:
    if name == "droid-tokens":
        return get_preset("dreamzero-14b").replace(name=name, dim=256, num_layers=4, num_heads=4, ffn_dim=1024)
    return get_preset(name)


def new_session(dit: DreamZeroDiT, cfg: DreamZeroConfig, device: str, dtype: torch.dtype, **kw) -> WorldActionModel:
    g = torch.Generator().manual_seed(0)
    wam = WorldActionModel(dit, **kw)
    ctx = torch.randn(2, cfg.text_len, cfg.text_dim, generator=g).to(device, dtype)
    clip = torch.randn(1, cfg.clip_tokens, cfg.clip_dim, generator=g).to(device, dtype)
    y = (
        torch.randn(1, cfg.y_channels, 9, cfg.latent_height, cfg.latent_width, generator=g)
        if cfg.concat_first_frame_latent
        else None
    )
    wam.set_conditioning(ctx[:1], ctx[1:], clip, y)
    return wam


def run_session(wam: WorldActionModel, cfg: DreamZeroConfig) -> list[float]:
    """Per-call latency (s) of 1 start call + 3 observed-block calls; conditioning is precomputed (outside)."""
    lat = torch.randn(1, cfg.out_dim, 2, cfg.latent_height, cfg.latent_width)
    state = torch.zeros(1, cfg.num_state_per_block, cfg.max_state_dim)
    times = []
    for call in range(4):
        _sync(wam.device)
        t0 = time.perf_counter()
        if call == 0:
            wam.prefill(lat[:, :, :1])
        else:
            wam.append_observed(lat)
        wam.denoise_next(state)
        _sync(wam.device)
        times.append(time.perf_counter() - t0)
    return times


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load() -> str:
    return f"(load {os.getloadavg()[0]:.2f})"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def per_call(dit: DreamZeroDiT, cfg: DreamZeroConfig, sessions: int, device: str, dtype: torch.dtype) -> None:
    wam = new_session(dit, cfg, device, dtype)
    run_session(wam, cfg)  # warm-up session
    runs = [run_session(wam, cfg) for _ in range(sessions)]
    medians = [statistics.median(r[i] for r in runs) * 1e3 for i in range(4)]
    mean = sum(medians) / 4
    off = OFFICIAL_MS.get(cfg.name)
    ratio = f"  official {off:7.0f} ms  speed-up {off / mean:5.2f}x" if off and device == "cpu" else ""
    print(
        f"[{cfg.name}] per call (median of {sessions} sessions), ms: "
        + " ".join(f"{m:8.1f}" for m in medians)
        + f"  | session mean {mean:8.1f}{ratio}  {_load()}"
    )


def kv_vs_recompute(dit: DreamZeroDiT, cfg: DreamZeroConfig, device: str, dtype: torch.dtype, reps: int) -> None:
    """One denoising evaluation at the 4th chunk: with the cache vs rebuilding the cache from all 7 frames."""
    wam = new_session(dit, cfg, device, dtype)
    run_session(wam, cfg)
    wam.reset()
    lat = torch.randn(1, cfg.out_dim, 7, cfg.latent_height, cfg.latent_width, device=device, dtype=dtype)
    x = torch.randn(2, cfg.out_dim, 2, cfg.latent_height, cfg.latent_width, device=device, dtype=dtype)
    y = wam._y_slice(7, 2)
    act = torch.randn(2, cfg.num_action_per_block, cfg.action_dim, device=device, dtype=dtype)
    st = torch.zeros(2, cfg.num_state_per_block, cfg.max_state_dim, device=device, dtype=dtype)
    t, ta = torch.full((2, 2), 833.0, device=device), torch.full((2, cfg.num_action_per_block), 833.0, device=device)

    def build() -> object:
        cache = dit.empty_cache(2, torch.device(device), dtype)
        for s, n in ((0, 1), (1, 2), (3, 2), (5, 2)):
            z = lat[:, :, s : s + n].expand(2, -1, -1, -1, -1)
            dit.forward_cached(
                z,
                torch.zeros(2, n, device=device),
                wam._cross,
                cache,
                s,
                y=wam._y_slice(s, n),
                update_cache=True,
                need_output=False,
            )
        return cache

    def denoise(cache) -> None:
        dit.forward_cached(x, t, wam._cross, cache, 7, y=y, action=act, timestep_action=ta, state=st)

    with torch.inference_mode():
        cache = build()
        cached = _timeit(lambda: denoise(cache), device, reps)
        recompute = _timeit(lambda: denoise(build()), device, reps)
        # FlopCounterMode sees neither oneDNN's linear nor the CPU flash-attention kernel: count with the plain
        # ATen matmul and the math SDPA backend (the same FLOPs)
        with use_onednn(False), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as fc:
            denoise(cache)
    flops = fc.get_total_flops()
    print(
        f"[{cfg.name}] 4th-chunk DiT eval: cached {cached * 1e3:8.1f} ms, recompute context "
        f"{recompute * 1e3:8.1f} ms -> KV cache speed-up {recompute / cached:5.2f}x; "
        f"{flops / 1e9:8.2f} GFLOP/eval (cond+neg) -> {flops / cached / 1e9:8.1f} GFLOP/s  {_load()}"
    )


def _timeit(fn, device: str, reps: int) -> float:
    fn()
    _sync(torch.device(device))
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(torch.device(device))
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def modes(dit: DreamZeroDiT, cfg: DreamZeroConfig, device: str, dtype: torch.dtype, reps: int) -> None:
    state = torch.zeros(1, cfg.num_state_per_block, cfg.max_state_dim)
    lat = torch.randn(1, cfg.out_dim, 1, cfg.latent_height, cfg.latent_width)
    for label, kw in (
        ("16-step", dict(dit_step_mask=[True] * 16)),
        ("step-skipped", {}),
        ("1-step", dict(num_inference_steps=1)),
    ):
        wam = new_session(dit, cfg, device, dtype, **kw)
        times, evals = [], 0
        for _ in range(reps + 1):
            wam.prefill(lat)
            t0 = time.perf_counter()
            res = wam.denoise_next(state)
            times.append(time.perf_counter() - t0)
            evals = res.dit_evaluations
        print(
            f"[{cfg.name}] {label:13s}: {evals:2d} DiT evaluations (x2 CFG rows), "
            f"{statistics.median(times[1:]) * 1e3:8.1f} ms per chunk (denoising only)  {_load()}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["tiny", "small", "droid-tokens"])
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(
        f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}, threads {args.threads}, "
        f"CPU {_cpu_name()} x{os.cpu_count()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')} "
        f"{_load()}"
    )
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(0)}")
        torch.backends.cuda.matmul.allow_tf32 = True
    for name in args.configs:
        cfg = bench_config(name)
        # build directly in the target dtype: a 14B model initialised in float32 first would not fit a GPU
        torch.set_default_dtype(dtype)
        with torch.device(args.device):
            torch.manual_seed(0)
            dit = DreamZeroDiT(cfg).eval()
        torch.set_default_dtype(torch.float32)
        sessions = args.sessions if cfg.tokens_per_frame < 500 or args.device != "cpu" else min(args.sessions, 2)
        per_call(dit, cfg, sessions, args.device, dtype)
        reps = 5 if cfg.tokens_per_frame < 500 or args.device != "cpu" else 1
        kv_vs_recompute(dit, cfg, args.device, dtype, reps)
        modes(dit, cfg, args.device, dtype, reps)
        del dit
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
