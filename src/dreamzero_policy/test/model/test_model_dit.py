"""Behaviour of the DreamZero DiT, loss and inference session on the random `tiny` preset (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch
from dreamzero_policy.model.configuration_dreamzero import get_preset
from dreamzero_policy.model.inference import SessionError, WorldActionModel
from dreamzero_policy.model.losses import FlowMatchingLoss, TrainBatch, share_block_indices
from dreamzero_policy.model.modeling_dreamzero import DreamZeroDiT, teacher_forcing_mask

CFG = get_preset("tiny")
C, H, W = CFG.out_dim, CFG.latent_height, CFG.latent_width


def _model(seed: int = 0) -> DreamZeroDiT:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    return DreamZeroDiT(CFG)


def _batch(b: int = 1, nb: int = 2, seed: int = 1, has_action: float = 1.0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    f = 1 + nb * CFG.num_frame_per_block
    t = nb * CFG.num_action_per_block
    y = torch.randn(b, CFG.y_channels, f, H, W, generator=g)
    mask = torch.zeros(b, t, CFG.action_dim)
    mask[..., :8] = 1.0
    return TrainBatch(
        latents=torch.randn(b, C, f, H, W, generator=g),
        context=torch.randn(b, CFG.text_len, CFG.text_dim, generator=g),
        state=torch.randn(b, nb, CFG.max_state_dim, generator=g),
        actions=torch.rand(b, t, CFG.action_dim, generator=g) * 2 - 1,
        action_mask=mask,
        has_action=torch.full((b,), has_action),
        y=y,
        clip_feature=torch.randn(1, CFG.clip_tokens, CFG.clip_dim, generator=g),
    )


def test_forward_backward_finite_grads() -> None:
    model = _model()
    out = FlowMatchingLoss(model)(_batch(b=2), generator=torch.Generator().manual_seed(0))
    assert out.video_pred.shape == (2, C, 5, H, W) and out.action_pred.shape == (2, 12, CFG.action_dim)
    out.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads), "every parameter takes part in the loss"
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_gradient_checkpointing_same_loss() -> None:
    model = _model()
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = FlowMatchingLoss(model)(_batch(), generator=gen()).loss
    model.gradient_checkpointing = True
    ckpt = FlowMatchingLoss(model)(_batch(), generator=gen()).loss
    ckpt.backward()
    assert torch.allclose(plain, ckpt)


def test_video_only_sample_gives_zero_action_gradient() -> None:
    model = _model()
    batch = _batch(has_action=0.0)
    out = FlowMatchingLoss(model)(batch, generator=torch.Generator().manual_seed(0))
    assert out.action_loss.item() == 0.0
    out.loss.backward()
    for p in model.action_decoder.parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0
    # the video loss still trains the backbone
    assert torch.count_nonzero(model.proj_out.weight.grad) > 0


def test_mixed_batch_action_gradient_only_from_real_sample() -> None:
    """Batch of (real, video-only): the action loss gradient equals the real sample's alone (scaled by 1/B)."""
    model = _model()
    real, video_only = _batch(seed=1), _batch(seed=2, has_action=0.0)
    both = TrainBatch(
        *(
            torch.cat([getattr(real, k), getattr(video_only, k)])
            for k in ("latents", "context", "state", "actions", "action_mask", "has_action")
        ),
        y=torch.cat([real.y, video_only.y]),
        clip_feature=real.clip_feature,
    )
    kw = dict(
        noise=torch.randn(2, C, 5, H, W),
        noise_action=torch.randn(2, 12, CFG.action_dim),
        timestep_id_raw=torch.randint(0, 1000, (2, 5)),
    )
    lf = FlowMatchingLoss(model)
    out2 = lf(both, **kw)
    out1 = lf(real, **{k: v[:1] for k, v in kw.items()})
    assert torch.allclose(out2.action_loss * 2, out1.action_loss, atol=1e-6)


def test_decoupled_action_noise_draws_independent_indices() -> None:
    model = _model()
    lf = FlowMatchingLoss(model, decouple_action_noise=True)
    seen = []
    orig = model.forward_train

    def spy(x, timestep, clean_x, context, action, timestep_action, *a, **k):
        seen.append((timestep, timestep_action))
        return orig(x, timestep, clean_x, context, action, timestep_action, *a, **k)

    model.forward_train = spy  # type: ignore[method-assign]
    with torch.no_grad():
        lf(_batch(), timestep_id_raw=torch.tensor([[5, 10, 11, 20, 21]]), action_timestep_id=torch.tensor([[900, 3]]))
    t_video, t_action = seen[0]
    assert not torch.equal(t_action[0, :6], t_video[0, 1].expand(6))
    assert torch.equal(t_action[0, :6], lf.timesteps[900].expand(6))


def test_share_block_indices() -> None:
    raw = torch.tensor([[7, 1, 2, 3, 4]])
    assert share_block_indices(raw, 2).tolist() == [[7, 1, 1, 3, 3]]


def test_tiny_overfits_fixed_batch() -> None:
    model = _model()
    batch = _batch(nb=1)
    batch.clip_feature = batch.clip_feature[:, :8]  # fewer CLIP tokens keep the test fast; shapes stay valid
    g = torch.Generator().manual_seed(5)
    kw = dict(
        noise=torch.randn(1, C, 3, H, W, generator=g),
        noise_action=torch.randn(1, 6, CFG.action_dim, generator=g),
        timestep_id_raw=torch.tensor([[300, 400, 400]]),
    )
    lf = FlowMatchingLoss(model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = last = None
    for _ in range(40):
        opt.zero_grad()
        out = lf(batch, **kw)
        out.loss.backward()
        opt.step()
        first = out.loss.item() if first is None else first
        last = out.loss.item()
    assert last is not None and first is not None and last <= first / 10, (first, last)


def test_training_forward_matches_kv_cache_with_inference_attention() -> None:
    """With the state token attending like at inference, teacher forcing == step-by-step KV-cached inference."""
    model = _model().eval()
    g = torch.Generator().manual_seed(7)
    nb, f = 2, 5
    clean = torch.randn(1, C, f, H, W, generator=g)
    noisy = torch.randn(1, C, f, H, W, generator=g)
    y = torch.randn(1, CFG.y_channels, f, H, W, generator=g)
    ctx = torch.randn(1, CFG.text_len, CFG.text_dim, generator=g)
    clip = torch.randn(1, CFG.clip_tokens, CFG.clip_dim, generator=g)
    act = torch.randn(1, nb * 6, CFG.action_dim, generator=g)
    state = torch.randn(1, nb, CFG.max_state_dim, generator=g)
    t_frames = torch.tensor([[37.0, 916.0, 916.0, 624.0, 624.0]])
    t_act = torch.tensor([[916.0] * 6 + [624.0] * 6])
    with torch.no_grad():
        v_tr, a_tr = model.forward_train(
            noisy, t_frames, clean, ctx, act, t_act, state, y=y, clip_feature=clip, state_self_only=False
        )
        v_off, _ = model.forward_train(noisy, t_frames, clean, ctx, act, t_act, state, y=y, clip_feature=clip)
        cross = model.encode_context(ctx, clip)
        cache = model.empty_cache(1, torch.device("cpu"), torch.float32)
        model.forward_cached(clean[:, :, :1], torch.zeros(1, 1), cross, cache, 0, y=y[:, :, :1], update_cache=True)
        for b in range(nb):
            s = 1 + 2 * b
            v, a = model.forward_cached(
                noisy[:, :, s : s + 2],
                t_frames[:, s : s + 2],
                cross,
                cache,
                s,
                y=y[:, :, s : s + 2],
                action=act[:, 6 * b : 6 * b + 6],
                timestep_action=t_act[:, 6 * b : 6 * b + 6],
                state=state[:, b : b + 1],
            )
            assert torch.allclose(v, v_tr[:, :, s : s + 2], atol=1e-5), (v - v_tr[:, :, s : s + 2]).abs().max()
            assert torch.allclose(a, a_tr[:, 6 * b : 6 * b + 6], atol=1e-5)
            model.forward_cached(
                clean[:, :, s : s + 2], torch.zeros(1, 2), cross, cache, s, y=y[:, :, s : s + 2], update_cache=True
            )
        # the official training pattern differs from inference exactly because of the state token
        assert not torch.allclose(v_off[:, :, 1:], v_tr[:, :, 1:], atol=1e-5)


def test_teacher_forcing_mask_structure() -> None:
    t = CFG.tokens_per_frame
    m = teacher_forcing_mask(CFG, 2, state_self_only=True)
    nv = 5 * t
    assert m.shape == (2 * nv + 14, 2 * nv + 14)
    assert m[:t, :t].all() and not m[:t, t:].any()  # clean frame 0: itself only
    assert not m[nv + t : nv + 3 * t, 3 * t : nv].any()  # noisy block 0 never sees clean block >= 0 of its own slot
    assert m[nv + 3 * t, : 3 * t].all()  # noisy block 1 sees clean frame 0 + clean block 0
    st = 2 * nv + 12
    assert m[st].sum() == 1 and m[st, st]
    m2 = teacher_forcing_mask(CFG, 2, state_self_only=False)
    assert torch.equal(m2[st], m2[2 * nv])  # state row == action row


def _session(model: DreamZeroDiT, **kw) -> WorldActionModel:
    g = torch.Generator().manual_seed(11)
    wam = WorldActionModel(model, **kw)
    neg = torch.randn(1, CFG.text_len, CFG.text_dim, generator=g)
    wam.set_conditioning(
        torch.randn(1, CFG.text_len, CFG.text_dim, generator=g),
        neg,
        torch.randn(1, CFG.clip_tokens, CFG.clip_dim, generator=g),
        torch.randn(1, CFG.y_channels, 9, H, W, generator=g),
    )
    wam.prefill(torch.randn(1, C, 1, H, W, generator=g))
    return wam


class _Counter:
    def __init__(self, model: DreamZeroDiT) -> None:
        self.calls = 0
        self._orig = model.forward_cached

    def __call__(self, *args, **kwargs):
        if kwargs.get("action") is not None:
            self.calls += 1
        return self._orig(*args, **kwargs)


@pytest.mark.parametrize("mask", [None, [True] * 16, [True] + [False] * 15, [i % 4 == 0 for i in range(16)]])
def test_step_skip_evaluates_dit_configured_times(mask: list[bool] | None) -> None:
    model = _model().eval()
    wam = _session(model, dit_step_mask=mask)
    counter = _Counter(model)
    model.forward_cached = counter  # type: ignore[method-assign]
    res = wam.denoise_next(torch.zeros(1, 1, CFG.max_state_dim))
    expected = sum(CFG.dit_step_mask) if mask is None else sum(mask)
    assert counter.calls == expected == res.dit_evaluations
    assert torch.isfinite(res.actions).all()


def test_one_step_mode() -> None:
    model = _model().eval()
    wam = _session(model, num_inference_steps=1)
    assert wam.sigmas.tolist() == [1.0, 0.0] and wam.timesteps.tolist() == [1000]
    res = wam.denoise_next(torch.zeros(1, 1, CFG.max_state_dim))
    assert res.dit_evaluations == 1 and res.actions.shape == (1, 6, CFG.action_dim)


def test_batched_cfg_equals_two_separate_passes() -> None:
    model = _model().eval()
    wam = _session(model)
    cache, cross = wam.cache, wam._cross
    assert cache is not None and cross is not None
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, C, 2, H, W, generator=g)
    act = torch.randn(1, 6, CFG.action_dim, generator=g)
    state = torch.randn(1, 1, CFG.max_state_dim, generator=g)
    y = wam._y[:, :, 1:3]
    t, ta = torch.full((2, 2), 833.0), torch.full((2, 6), 833.0)
    with torch.no_grad():
        v2, a2 = model.forward_cached(
            x.expand(2, -1, -1, -1, -1),
            t,
            cross,
            cache,
            1,
            y=y.expand(2, -1, -1, -1, -1),
            action=act.expand(2, -1, -1),
            timestep_action=ta,
            state=state.expand(2, -1, -1),
        )
        for row in (0, 1):
            sub = type(cache)([k[row : row + 1] for k in cache.keys], [v[row : row + 1] for v in cache.values])
            sub_cross = [
                tuple(None if z is None else z[row : row + 1] if z.shape[0] == 2 else z for z in c) for c in cross
            ]
            v1, a1 = model.forward_cached(
                x, t[:1], sub_cross, sub, 1, y=y, action=act, timestep_action=ta[:1], state=state
            )
            assert torch.allclose(v2[row : row + 1], v1, atol=1e-5)
            assert torch.allclose(a2[row : row + 1], a1, atol=1e-5)


def test_seeded_noise_is_deterministic_and_seed_dependent() -> None:
    model = _model().eval()
    st = torch.zeros(1, 1, CFG.max_state_dim)
    a = _session(model).denoise_next(st).actions
    b = _session(model).denoise_next(st).actions
    c = _session(model).denoise_next(st, seed=7).actions
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_session_order_and_window_rules() -> None:
    model = _model().eval()
    wam = WorldActionModel(model)
    with pytest.raises(SessionError):
        wam.prefill(torch.zeros(1, C, 1, H, W))
    wam = _session(model)
    st = torch.zeros(1, 1, CFG.max_state_dim)
    with pytest.raises(SessionError):
        wam.append_observed(torch.zeros(1, C, 2, H, W))  # nothing predicted yet
    for chunk in range(CFG.max_chunk_size):
        wam.denoise_next(st)
        with pytest.raises(SessionError):
            wam.denoise_next(st)  # the prediction must first be replaced by the observation
        if chunk < CFG.max_chunk_size - 1:
            wam.append_observed(torch.zeros(1, C, 2, H, W))
    wam.append_observed(torch.zeros(1, C, 2, H, W))
    assert wam.needs_reset and wam.current_start_frame == CFG.local_attn_frames
    with pytest.raises(SessionError, match="window"):
        wam.denoise_next(st)
    with pytest.raises(ValueError):
        wam.prefill(torch.zeros(1, C, 2, H, W))
