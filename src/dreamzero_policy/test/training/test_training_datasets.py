"""Chunk sampling, normalisation, video-only flags, augmentation and mixture sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.data.reader import DatasetReader
from dreamzero_policy.model.configuration_dreamzero import get_preset
from dreamzero_policy.runtime.postprocess import denormalize
from dreamzero_policy.training.configs import TrainingError, get_recipe
from dreamzero_policy.training.datasets import ChunkDataset, ChunkGeometry, DataSource, MixtureSampler
from dreamzero_policy.training.embodiment import build_layout, derive_spec_data

TINY = get_preset("tiny")


def _dataset(sources: list[DataSource], split: str = "train", **cfg: object) -> ChunkDataset:
    reader = DatasetReader(sources[0].path)
    layout = build_layout(reader, derive_spec_data(reader, TINY.num_action_per_block), TINY.num_action_per_block)
    return ChunkDataset(sources, layout, TINY, get_recipe("full", **cfg), split)


def test_training_frame_offsets_follow_the_official_stride() -> None:
    official = ChunkGeometry(actions_per_chunk=24, num_chunks=4, frames_per_chunk=8)
    offsets = official.frame_offsets()
    assert len(offsets) == 33 and np.all(np.diff(offsets) == 3) and offsets[-1] == 96  # 8k+1 frames, stride 3
    tiny = ChunkGeometry(actions_per_chunk=6, num_chunks=2, frames_per_chunk=8)
    off = tiny.frame_offsets()
    assert len(off) == 17 and off[0] == 0 and off[8] == 6 and off[-1] == 12 and np.all(np.diff(off) >= 0)


def test_training_sample_normalises_like_the_runtime(robot_dataset: Path) -> None:
    ds = _dataset([DataSource(robot_dataset)], num_chunks=2, holdout_fraction=0.0, augment=False)
    episode, anchor = (int(v) for v in ds.items[0][5])
    s = ds[(0, 5, -1)]
    A = TINY.num_action_per_block
    assert s["video"].shape == (17, *TINY.image_size, 3) and s["actions"].shape == (2 * A, TINY.action_dim)
    assert float(s["has_action"]) == 1.0 and s["prompt"] == "reach the cube"
    ep = DatasetReader(robot_dataset).episode(episode)
    state = np.concatenate([ep.state["joint_position"], ep.state["gripper_position"]], 1).astype(np.float64)
    action = np.concatenate([ep.action["joint_position"], ep.action["gripper_position"]], 1).astype(np.float64)
    layout = ds.layout
    # the inverse transform (what the in-process backend applies) recovers the recorded actions
    pred = denormalize(s["actions"][:, :4].numpy(), layout.action_stats)
    for b in range(2):
        rows = slice(b * A, (b + 1) * A)
        a = anchor + b * A
        expect = action[anchor + b * A : anchor + (b + 1) * A].copy()
        expect[:, :3] -= state[a, :3]  # joints relative to the chunk's anchor state, gripper absolute
        inside = (expect >= layout.action_stats.q01) & (expect <= layout.action_stats.q99)
        np.testing.assert_allclose(pred[rows][inside], expect[inside], atol=1e-5)
    np.testing.assert_allclose(s["actions_abs"].numpy()[:, :3], action[anchor : anchor + 2 * A, :3], atol=1e-5)
    assert np.all(s["action_mask"].numpy()[:, :4] == 1) and np.all(s["action_mask"].numpy()[:, 4:] == 0)
    assert np.abs(s["state"].numpy()).max() <= 1.0 and np.all(s["state"].numpy()[:, 4:] == 0)


def test_training_video_only_source_has_no_actions(robot_dataset: Path, video_dataset: Path) -> None:
    ds = _dataset([DataSource(robot_dataset), DataSource(video_dataset, video_only=True)], holdout_fraction=0.0)
    s = ds[(1, 0, 7)]
    assert float(s["has_action"]) == 0.0 and s["prompt"] == "push the cube"
    assert not s["actions"].any() and not s["action_mask"].any()
    with pytest.raises(TrainingError, match="video-only"):
        _dataset([DataSource(video_dataset, video_only=True)])


def test_training_augmentation_is_seeded_and_eval_is_clean(robot_dataset: Path) -> None:
    ds = _dataset([DataSource(robot_dataset)], holdout_fraction=0.0)
    a, b, c = ds[(0, 3, 11)]["video"], ds[(0, 3, 11)]["video"], ds[(0, 3, 12)]["video"]
    clean = ds[(0, 3, -1)]["video"]
    assert (a == b).all() and not (a == c).all() and not (a == clean).all()


def test_training_holdout_split_is_disjoint(robot_dataset: Path) -> None:
    train = _dataset([DataSource(robot_dataset)], holdout_fraction=0.34)
    held = _dataset([DataSource(robot_dataset)], "eval", holdout_fraction=0.34)
    assert set(train.items[0][:, 0].tolist()) == {0, 1} and set(held.items[0][:, 0].tolist()) == {2}
    assert held.has_holdout and len(held.eval_keys(4)) == 4


def test_training_mixture_sampling_follows_weights() -> None:
    sampler = MixtureSampler([50, 7, 300], [0.6, 0.3, 0.1], seed=3)
    draws = [sampler.draw(p) for p in range(6000)]
    freq = np.bincount([d[0] for d in draws], minlength=3) / len(draws)
    np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.025)
    assert max(d[1] for d in draws if d[0] == 1) == 6  # items uniform within the source's range
    resumed = MixtureSampler([50, 7, 300], [0.6, 0.3, 0.1], seed=3, start=4000)
    it = iter(resumed)
    assert [next(it) for _ in range(5)] == draws[4000:4005]  # resume continues the same stream
    ranks = [MixtureSampler([50, 7, 300], [6, 3, 1], seed=3, rank=r, world=2).draw(0) for r in (0, 1)]
    assert ranks == draws[:2]  # processes interleave the global stream
    with pytest.raises(TrainingError):
        MixtureSampler([10, 0], [1, 1])
