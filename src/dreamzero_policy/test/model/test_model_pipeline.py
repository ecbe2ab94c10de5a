"""``WorldActionPipeline`` contract for the runtime: shapes, reset rules, caching and input errors (tiny preset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dreamzero_policy.model.encoders import ByteTokenizer
from dreamzero_policy.model.pipeline import InferenceResult, WorldActionPipeline


@pytest.fixture(scope="module")
def pipe() -> WorldActionPipeline:
    torch.set_num_threads(1)
    return WorldActionPipeline.from_preset("tiny", seed=0)


def _frames(p: WorldActionPipeline, t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (t, *p.image_size, 3), dtype=np.uint8)


def test_contract_properties(pipe: WorldActionPipeline) -> None:
    assert pipe.image_size == (32, 64)
    assert (pipe.action_dim, pipe.action_horizon, pipe.state_dim) == (32, 6, 64)
    assert (pipe.frames_first_call, pipe.frames_per_call) == (1, 4)


def test_infer_shapes_and_session_progress(pipe: WorldActionPipeline) -> None:
    pipe.reset()
    r = pipe.infer(_frames(pipe, 1), np.zeros(8, np.float32), "pick the cup")
    assert isinstance(r, InferenceResult)
    assert r.actions.dtype == np.float32 and r.actions.shape == (6, 32) and np.isfinite(r.actions).all()
    assert r.video_latents.shape == (1, 16, 3, 4, 8)  # observed frame-0 latent + 2 predicted
    assert {"encode_s", "dit_s", "total_s"} <= set(r.timings)
    assert pipe.session.current_start_frame == 3
    r = pipe.infer(_frames(pipe, 4, 1), np.zeros(8, np.float32), "pick the cup")
    assert r.video_latents.shape == (1, 16, 2, 4, 8)
    assert pipe.session.current_start_frame == 5
    video = pipe.decode_video(r.video_latents)
    assert video.dtype == np.uint8 and video.shape == (5, 32, 64, 3)


def test_reset_rules(pipe: WorldActionPipeline) -> None:
    pipe.reset()
    state = np.zeros(8, np.float32)
    pipe.infer(_frames(pipe, 1), state, "a")
    for _ in range(3):
        pipe.infer(_frames(pipe, 4), state, "a")
    assert pipe.session.current_start_frame == 9  # 4 chunks: the KV window is full
    pipe.infer(_frames(pipe, 4), state, "a")  # 5th call re-anchors
    assert pipe.session.current_start_frame == 3
    pipe.infer(_frames(pipe, 4), state, "a")
    assert pipe.session.current_start_frame == 5
    pipe.infer(_frames(pipe, 4), state, "b")  # prompt change
    assert pipe.session.current_start_frame == 3
    pipe.infer(_frames(pipe, 4), state, "b")
    pipe.infer(_frames(pipe, 1), state, "b")  # a 1-frame input
    assert pipe.session.current_start_frame == 3


def test_same_inputs_same_actions_and_seed_changes_them(pipe: WorldActionPipeline) -> None:
    state = np.linspace(-1, 1, 8).astype(np.float32)
    runs = []
    for seed in (None, None, 5):
        pipe.reset()
        runs.append(pipe.infer(_frames(pipe, 1), state, "x", seed=seed).actions)
    assert np.array_equal(runs[0], runs[1]) and not np.allclose(runs[0], runs[2])


def test_prompt_embeddings_are_cached(pipe: WorldActionPipeline) -> None:
    pipe.reset()
    pipe.infer(_frames(pipe, 1), np.zeros(8, np.float32), "cached prompt")
    ctx = pipe._prompt_cache["cached prompt"]
    pipe.reset()
    pipe.infer(_frames(pipe, 1), np.zeros(8, np.float32), "cached prompt")
    assert pipe._prompt_cache["cached prompt"] is ctx
    assert pipe.config.negative_prompt in pipe._prompt_cache


@pytest.mark.parametrize(
    "frames,state,prompt,match",
    [
        (np.zeros((1, 32, 64, 3), np.float32), np.zeros(8, np.float32), "p", "uint8"),
        (np.zeros((1, 30, 64, 3), np.uint8), np.zeros(8, np.float32), "p", r"\(T, 32, 64, 3\)"),
        (np.zeros((3, 32, 64, 3), np.uint8), np.zeros(8, np.float32), "p", "1 \\(session start\\) or 4"),
        (np.zeros((1, 32, 64, 3), np.uint8), np.full(8, np.nan, np.float32), "p", "finite"),
        (np.zeros((1, 32, 64, 3), np.uint8), np.zeros(65, np.float32), "p", "k <= 64"),
        (np.zeros((1, 32, 64, 3), np.uint8), np.zeros(8, np.float32), None, "str"),
    ],
)
def test_bad_inputs_raise_clear_errors(pipe: WorldActionPipeline, frames, state, prompt, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pipe.infer(frames, state, prompt)


def test_byte_tokenizer_is_deterministic() -> None:
    tok = ByteTokenizer()
    ids, mask = tok("Pick  up\tthe cup", 8)
    assert ids.shape == mask.shape == (1, 8)
    assert ids[0, -1].item() == tok.eos_id and mask.sum().item() == 8
    ids2, mask2 = tok("hi", 8)
    assert ids2[0].tolist() == [ord("h") + 3, ord("i") + 3, 1, 0, 0, 0, 0, 0] and mask2.sum().item() == 3
