"""The CPU inference fast path (fused/packed weights, oneDNN linears, in-place KV cache, per-group modulation)
gives the results of the plain autograd path, and its caches never go stale (tiny preset, seconds)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dreamzero_policy.model.configuration_dreamzero import get_preset
from dreamzero_policy.model.kernels import linear
from dreamzero_policy.model.kv_cache import KVCache
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT

CFG = get_preset("tiny")
C, H, W = CFG.out_dim, CFG.latent_height, CFG.latent_width
T = CFG.tokens_per_frame


def _model() -> DreamZeroDiT:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return DreamZeroDiT(CFG).eval()


def _inputs(seed: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "ctx": torch.randn(2, CFG.text_len, CFG.text_dim, generator=g),
        "clip": torch.randn(1, CFG.clip_tokens, CFG.clip_dim, generator=g),
        "y": torch.randn(2, CFG.y_channels, 9, H, W, generator=g),
        "clean": torch.randn(2, C, 9, H, W, generator=g),
        "noisy": torch.randn(2, C, 2, H, W, generator=g),
        "act": torch.randn(2, CFG.num_action_per_block, CFG.action_dim, generator=g),
        "state": torch.randn(2, 1, CFG.max_state_dim, generator=g),
    }


def _session(
    model: DreamZeroDiT, inp: dict[str, torch.Tensor], frames: int, need_output: bool = True
) -> tuple[list, KVCache]:
    cross = model.encode_context(inp["ctx"], inp["clip"])
    cache = model.empty_cache(2, torch.device("cpu"), torch.float32)
    model.forward_cached(
        inp["clean"][:, :, :1],
        torch.zeros(2, 1),
        cross,
        cache,
        0,
        y=inp["y"][:, :, :1],
        update_cache=True,
        need_output=need_output,
    )
    for s in range(1, frames, 2):
        model.forward_cached(
            inp["clean"][:, :, s : s + 2],
            torch.zeros(2, 2),
            cross,
            cache,
            s,
            y=inp["y"][:, :, s : s + 2],
            update_cache=True,
            need_output=need_output,
        )
    return cross, cache


def _denoise(model: DreamZeroDiT, inp: dict[str, torch.Tensor], cross: list, cache: KVCache, start: int):
    t = torch.tensor([[700.0, 650.0], [700.0, 650.0]])  # per-frame timesteps differ: groups matter
    ta = torch.linspace(100.0, 900.0, CFG.num_action_per_block).expand(2, -1)
    ys = min(start, 7)  # y holds 9 frames; its content only has to be the same across compared passes
    return model.forward_cached(
        inp["noisy"],
        t,
        cross,
        cache,
        start,
        y=inp["y"][:, :, ys : ys + 2],
        action=inp["act"],
        timestep_action=ta,
        state=inp["state"],
    )


def test_fast_path_matches_autograd_path() -> None:
    """no_grad (fused QKV, oneDNN, in-place modulation) == grad mode (separate nn.Linear, out-of-place)."""
    model, inp = _model(), _inputs()
    with torch.no_grad():
        cross, cache = _session(model, inp, 5)
        v_fast, a_fast = _denoise(model, inp, cross, cache, 5)
    with torch.enable_grad():
        cross, cache = _session(model, inp, 5)
        v_ref, a_ref = _denoise(model, inp, cross, cache, 5)
    assert v_ref.requires_grad  # really the autograd path
    assert torch.allclose(v_fast, v_ref.detach(), atol=2e-5), (v_fast - v_ref).abs().max()
    assert torch.allclose(a_fast, a_ref.detach(), atol=2e-5)


def test_write_without_output_caches_the_same_keys() -> None:
    model, inp = _model(), _inputs()
    with torch.no_grad():
        _, full = _session(model, inp, 5, need_output=True)
        _, lean = _session(model, inp, 5, need_output=False)
    assert full.length == lean.length == 5 * T
    for a, b in zip(full.keys + full.values, lean.keys + lean.values, strict=True):
        assert torch.equal(a, b)


def test_window_keeps_the_last_tokens_like_a_trimmed_cache() -> None:
    """Past the window, a pass attends to the last `window` keys of (cache ++ new video): the same as a cache
    that only ever held those keys; an update leaves exactly `window` cached tokens."""
    model, inp = _model(), _inputs()
    window = CFG.max_attention_tokens
    with torch.no_grad():
        cross, cache = _session(model, inp, 9)  # 9 frames = the whole window
        assert cache.length == window
        keep = window - 2 * T
        trimmed = KVCache([k[:, :, -keep:] for k in cache.keys], [v[:, :, -keep:] for v in cache.values])
        v1, a1 = _denoise(model, inp, cross, cache, 9)
        v2, a2 = _denoise(model, inp, cross, trimmed, 9)
        assert torch.allclose(v1, v2, atol=1e-6) and torch.allclose(a1, a2, atol=1e-6)
        assert cache.length == window  # a denoising pass never changes the cache
        model.forward_cached(
            inp["clean"][:, :, 1:3], torch.zeros(2, 2), cross, cache, 9, y=inp["y"][:, :, 1:3], update_cache=True
        )
        assert cache.length == window


def test_weight_change_invalidates_fused_and_packed_weights() -> None:
    model, inp = _model(), _inputs()
    with torch.inference_mode():
        cross, cache = _session(model, inp, 3)
        before, _ = _denoise(model, inp, cross, cache, 3)
    with torch.no_grad():  # an in-place update, as load_state_dict or an optimiser step does
        model.blocks[0].attn1.to_k.weight.mul_(1.5)
        model.blocks[1].ffn.net[2].weight.mul_(1.5)
    with torch.inference_mode():
        cross, cache = _session(model, inp, 3)
        after, _ = _denoise(model, inp, cross, cache, 3)
    with torch.enable_grad():
        cross, cache = _session(model, inp, 3)
        ref, _ = _denoise(model, inp, cross, cache, 3)
    assert (after - before).abs().max() > 1e-3
    assert torch.allclose(after, ref.detach(), atol=2e-5)


def test_kv_cache_grows_and_keeps_contents() -> None:
    g = torch.Generator().manual_seed(0)
    k = torch.randn(2, 4, 5, 16, generator=g)
    v = torch.randn(2, 4, 5, 16, generator=g)
    cache = KVCache([k], [v])
    cache.start = 2  # as after a window slide
    cache.reserve(7)
    assert cache.length == 3 and cache.layer(0)[0].shape[2] >= 10
    assert torch.equal(cache.keys[0], k[:, :, 2:]) and torch.equal(cache.values[0], v[:, :, 2:])


def test_linear_kernel_matches_f_linear() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 128, generator=g)  # large enough for the oneDNN path
    w, b = torch.randn(256, 128, generator=g), torch.randn(256, generator=g)
    with torch.inference_mode():
        assert torch.allclose(linear(x, w, b), F.linear(x, w, b), atol=1e-4)
        assert torch.allclose(linear(x, w, b, gelu_tanh=True), F.gelu(F.linear(x, w, b), approximate="tanh"), atol=1e-4)
        w.mul_(2.0)  # a changed weight is repacked
        assert torch.allclose(linear(x, w, b), F.linear(x, w, b), atol=2e-4)


def test_identical_cfg_rows_share_the_first_layer_exactly() -> None:
    """Rows fed the same frames (cond/neg CFG): layer 0's self-attention computed once == computed per row."""
    model, inp = _model(), _inputs()
    same = {k: (v if k in ("ctx", "clip") else v[:1].expand_as(v)) for k, v in inp.items()}
    with torch.no_grad():
        cross, shared = _session(model, same, 3)
        _, separate = _session(model, same, 3)
        assert shared.first_layer_rows_identical
        separate.first_layer_rows_identical = False  # forces the per-row path
        v1, a1 = _denoise(model, same, cross, shared, 3)
        v2, a2 = _denoise(model, same, cross, separate, 3)
    assert torch.allclose(v1, v2, atol=1e-6) and torch.allclose(a1, a2, atol=1e-6)
    assert (v1[0] - v1[1]).abs().max() > 1e-3  # the rows still differ through their text contexts
    different = KVCache([k.clone() for k in shared.keys], [v.clone() for v in shared.values])
    assert different.first_layer_rows_identical
    rows = KVCache([torch.randn(2, 4, 3, 16)], [torch.randn(2, 4, 3, 16)])
    assert not rows.first_layer_rows_identical
