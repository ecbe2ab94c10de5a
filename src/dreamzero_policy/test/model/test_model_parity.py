"""Our DiT, loss and closed-loop session against the official implementation (parity fixture, README §5/§6).

Weights come in through ``convert_official``; inputs are fed exactly as the fixture's README describes.
A missing fixture raises FileNotFoundError (the tests fail, never skip).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dreamzero_policy.model.configuration_dreamzero import DreamZeroConfig, get_preset
from dreamzero_policy.model.convert_official import load_official_dit
from dreamzero_policy.model.inference import WorldActionModel
from dreamzero_policy.model.losses import FlowMatchingLoss, TrainBatch
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT
from parity_fixture import load_case, load_json

DIT_ATOL = 1e-4  # single DiT call outputs, KV caches, dit_out.*
LOOP_ATOL = 2e-4  # CFG-combined velocities, full-loop predictions, sample traces
LOSS_ATOL = 2e-6  # loss scalars


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.double() - b.double()).abs().max().item()


@pytest.fixture(scope="module")
def model() -> DreamZeroDiT:
    torch.set_num_threads(1)
    m = DreamZeroDiT(get_preset("tiny")).eval()
    load_official_dit(m, load_case("weights"))
    return m


@pytest.fixture(scope="module")
def shared() -> dict[str, torch.Tensor]:
    return load_case("shared_inputs")


def test_tiny_preset_matches_fixture_config() -> None:
    kw = load_json("config")["constructor_kwargs"]
    cfg: DreamZeroConfig = get_preset("tiny")
    for ours, theirs in [
        ("dim", "dim"),
        ("ffn_dim", "ffn_dim"),
        ("num_layers", "num_layers"),
        ("num_heads", "num_heads"),
        ("in_dim", "in_dim"),
        ("out_dim", "out_dim"),
        ("text_dim", "text_dim"),
        ("text_len", "text_len"),
        ("freq_dim", "freq_dim"),
        ("num_frame_per_block", "num_frame_per_block"),
        ("hidden_size", "hidden_size"),
        ("num_action_per_block", "num_action_per_block"),
        ("action_dim", "action_dim"),
        ("max_state_dim", "max_state_dim"),
        ("max_chunk_size", "max_chunk_size"),
    ]:
        assert getattr(cfg, ours) == kw[theirs], ours
    assert cfg.tokens_per_frame == kw["frame_seqlen"]
    assert cfg.rope_split == (8, 4, 4)
    assert cfg.max_attention_tokens == 72


def _forward_train(
    model: DreamZeroDiT, tf: dict[str, torch.Tensor], shared: dict[str, torch.Tensor], **kwargs: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixture's train_forward case through ``model`` (its recorded inputs, in the official order)."""
    args = (tf[k] for k in ("x", "timestep", "clean_x", "context", "action", "timestep_action", "state"))
    with torch.no_grad():
        return model.forward_train(*args, y=tf["y"], clip_feature=shared["clip_feature"], **kwargs)


def test_train_forward(model: DreamZeroDiT, shared: dict[str, torch.Tensor]) -> None:
    tf = load_case("train_forward")
    v, a = _forward_train(model, tf, shared)
    assert _maxdiff(v, tf["out.video_velocity"]) <= DIT_ATOL
    assert _maxdiff(a, tf["out.action_velocity"]) <= DIT_ATOL


def test_train_forward_state_mask_matters(model: DreamZeroDiT, shared: dict[str, torch.Tensor]) -> None:
    """The inference-pattern option changes the output (so the official default is really what matched)."""
    tf = load_case("train_forward")
    v, _ = _forward_train(model, tf, shared, state_self_only=False)
    assert _maxdiff(v, tf["out.video_velocity"]) > 1e-3


def _kv_layers(cache, ref: torch.Tensor) -> float:
    """ref: [layers, 2, B, L, heads, head_dim]; ours: per layer [B, heads, L, head_dim]."""
    worst = 0.0
    for i in range(ref.shape[0]):
        worst = max(
            worst,
            _maxdiff(cache.keys[i].transpose(1, 2), ref[i, 0]),
            _maxdiff(cache.values[i].transpose(1, 2), ref[i, 1]),
        )
    return worst


@pytest.mark.parametrize("branch,context_key", [("cond", "context.cond0"), ("neg", "context.neg")])
def test_kv_inference_steps(
    model: DreamZeroDiT, shared: dict[str, torch.Tensor], branch: str, context_key: str
) -> None:
    kv = load_case("kv_inference")
    cross = model.encode_context(shared[context_key], shared["clip_feature"])
    cache = model.empty_cache(1, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        # a_prefill: frame-0 latent at start 0, cache updated
        assert int(kv["a_prefill.current_start_frame"]) == 0 and int(kv["a_prefill.cache_updated"]) == 1
        v, a = model.forward_cached(
            kv["a_prefill.x"], kv["a_prefill.timestep"], cross, cache, 0, y=kv["a_prefill.y"], update_cache=True
        )
        assert a is None
        assert _maxdiff(v, kv[f"a_prefill.out.video_velocity.{branch}"]) <= DIT_ATOL
        assert _kv_layers(cache, kv[f"a_prefill.kv_cache.{branch}"]) <= DIT_ATOL
        # b_denoise1: noisy block 1 at start 1, cache not updated
        before = cache.length
        v, a = model.forward_cached(
            kv["b_denoise1.x"],
            kv["b_denoise1.timestep"],
            cross,
            cache,
            1,
            y=kv["b_denoise1.y"],
            action=kv["b_denoise1.action"],
            timestep_action=kv["b_denoise1.timestep_action"],
            state=kv["b_denoise1.state"],
        )
        assert cache.length == before
        assert _maxdiff(v, kv[f"b_denoise1.out.video_velocity.{branch}"]) <= DIT_ATOL
        assert _maxdiff(a, kv[f"b_denoise1.out.action_velocity.{branch}"]) <= DIT_ATOL
        # c_write1: observed block 1 written at start 1
        v, _ = model.forward_cached(
            kv["c_write1.x"], kv["c_write1.timestep"], cross, cache, 1, y=kv["c_write1.y"], update_cache=True
        )
        assert _maxdiff(v, kv[f"c_write1.out.video_velocity.{branch}"]) <= DIT_ATOL
        assert _kv_layers(cache, kv[f"c_write1.kv_cache.{branch}"]) <= DIT_ATOL
        # d_denoise2: block 2 at start 3 (action/state RoPE block index 1)
        v, a = model.forward_cached(
            kv["d_denoise2.x"],
            kv["d_denoise2.timestep"],
            cross,
            cache,
            3,
            y=kv["d_denoise2.y"],
            action=kv["d_denoise2.action"],
            timestep_action=kv["d_denoise2.timestep_action"],
            state=kv["d_denoise2.state"],
        )
        assert _maxdiff(v, kv[f"d_denoise2.out.video_velocity.{branch}"]) <= DIT_ATOL
        assert _maxdiff(a, kv[f"d_denoise2.out.action_velocity.{branch}"]) <= DIT_ATOL


def test_kv_inference_batched_cfg(model: DreamZeroDiT, shared: dict[str, torch.Tensor]) -> None:
    """cond and neg in one batch of 2 reproduce the recorded CFG-combined velocity."""
    kv = load_case("kv_inference")
    cross = model.encode_context(torch.cat([shared["context.cond0"], shared["context.neg"]]), shared["clip_feature"])
    cache = model.empty_cache(2, torch.device("cpu"), torch.float32)

    def two(t: torch.Tensor) -> torch.Tensor:
        return t.expand(2, *t.shape[1:])

    with torch.no_grad():
        model.forward_cached(
            two(kv["a_prefill.x"]),
            two(kv["a_prefill.timestep"]),
            cross,
            cache,
            0,
            y=two(kv["a_prefill.y"]),
            update_cache=True,
        )
        v, _ = model.forward_cached(
            two(kv["b_denoise1.x"]),
            two(kv["b_denoise1.timestep"]),
            cross,
            cache,
            1,
            y=two(kv["b_denoise1.y"]),
            action=two(kv["b_denoise1.action"]),
            timestep_action=two(kv["b_denoise1.timestep_action"]),
            state=two(kv["b_denoise1.state"]),
        )
    cfg = v[1:2] + 5.0 * (v[0:1] - v[1:2])
    assert _maxdiff(cfg, kv["b_denoise1.out.video_velocity.cfg"]) <= LOOP_ATOL


def test_closed_loop_two_calls(model: DreamZeroDiT, shared: dict[str, torch.Tensor]) -> None:
    """Two official closed-loop calls (16 UniPC steps, 8-of-16 step mask, CFG 5 on video only)."""
    s = load_case("schedules")
    ys = shared["ys.sample0"]
    wam = WorldActionModel(model)
    assert wam.dit_step_mask == tuple(bool(b) for b in s["infer.dit_step_mask"].tolist())
    assert torch.equal(wam.timesteps, s["infer.timesteps"])
    wam.set_conditioning(shared["context.cond0"], shared["context.neg"], shared["clip_feature"], ys)
    # call 1: reset, prefill frame 0, denoise block 1 at start 1
    wam.prefill(ys[:, 4:20, 0:1])
    r1 = wam.denoise_next(s["loop.call1.state"], noise_video=s["loop.noise_video"], noise_action=s["loop.noise_action"])
    assert r1.start_frame == 1 and r1.dit_evaluations == 8
    assert _maxdiff(r1.actions, s["loop.call1.action_pred"]) <= LOOP_ATOL
    assert _maxdiff(torch.cat([ys[:, 4:20, 0:1], r1.video_latents], 2), s["loop.call1.video_pred"]) <= LOOP_ATOL
    # call 2: write the observed block at start 1, denoise block 2 at start 3
    wam.append_observed(s["loop.call2.vae_latents"][:, :, -2:])
    r2 = wam.denoise_next(s["loop.call2.state"], noise_video=s["loop.noise_video"], noise_action=s["loop.noise_action"])
    assert r2.start_frame == 3 and wam.current_start_frame == 5
    assert _maxdiff(r2.actions, s["loop.call2.action_pred"]) <= LOOP_ATOL
    assert _maxdiff(r2.video_latents, s["loop.call2.video_pred"]) <= LOOP_ATOL


def test_closed_loop_dit_trace(model: DreamZeroDiT, shared: dict[str, torch.Tensor]) -> None:
    """The cond/uncond DiT outputs at the 8 computed steps of call 1 match the recorded trace."""
    s = load_case("schedules")
    ys = shared["ys.sample0"]
    wam = WorldActionModel(model)
    wam.set_conditioning(shared["context.cond0"], shared["context.neg"], shared["clip_feature"], ys)
    wam.prefill(ys[:, 4:20, 0:1])
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = model.forward_cached

    def spy(*args, **kwargs):  # records denoising outputs, passes everything through unchanged
        out = original(*args, **kwargs)
        if kwargs.get("action") is not None:
            seen.append((out[0].clone(), out[1].clone()))
        return out

    model.forward_cached = spy  # type: ignore[method-assign]
    try:
        wam.denoise_next(s["loop.call1.state"], noise_video=s["loop.noise_video"], noise_action=s["loop.noise_action"])
    finally:
        del model.forward_cached
    assert len(seen) == 8
    for k, (v, a) in enumerate(seen):
        assert _maxdiff(v[0:1], s["loop.call1.dit.video_velocity.cond"][k]) <= LOOP_ATOL
        assert _maxdiff(v[1:2], s["loop.call1.dit.video_velocity.uncond"][k]) <= LOOP_ATOL
        assert _maxdiff(a[0:1], s["loop.call1.dit.action_velocity.cond"][k]) <= LOOP_ATOL


def _batch(loss: dict[str, torch.Tensor], shared: dict[str, torch.Tensor], names: list[str]) -> tuple:
    cat = lambda key: torch.cat([loss[f"{n}.{key}"] for n in names])  # noqa: E731
    b = TrainBatch(
        cat("clean_latents"),
        cat("text_context"),
        cat("state"),
        cat("action"),
        cat("action_mask"),
        cat("has_real_action"),
        y=cat("y"),
        clip_feature=shared["clip_feature"],
    )
    return b, cat("noise"), cat("noise_action"), cat("timestep_id_raw")


@pytest.mark.parametrize(
    "run,names", [("sample0", ["sample0"]), ("sample1", ["sample1"]), ("batch2", ["sample0", "sample1"])]
)
def test_loss(model: DreamZeroDiT, shared: dict[str, torch.Tensor], run: str, names: list[str]) -> None:
    ref = load_case("loss")
    batch, noise, noise_action, raw = _batch(ref, shared, names)
    with torch.no_grad():
        out = FlowMatchingLoss(model)(batch, noise=noise, noise_action=noise_action, timestep_id_raw=raw)
    assert abs(out.loss.item() - ref[f"{run}.loss"].item()) <= LOSS_ATOL
    assert abs(out.dynamics_loss.item() - ref[f"{run}.dynamics_loss"].item()) <= LOSS_ATOL
    assert abs(out.action_loss.item() - ref[f"{run}.action_loss"].item()) <= LOSS_ATOL
    assert _maxdiff(out.video_pred, ref[f"{run}.dit_out.video_velocity"]) <= DIT_ATOL
    assert _maxdiff(out.action_pred, ref[f"{run}.dit_out.action_velocity"]) <= DIT_ATOL
    if run != "batch2":
        assert torch.equal(out.timestep_id, ref[f"{run}.timestep_id"])
