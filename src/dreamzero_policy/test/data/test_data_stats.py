"""Statistics spilled to disk column by column equal numpy over the whole array, and leave nothing behind."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from dreamzero_policy.data.stats import StatsAccumulator, relative_chunks


def test_stats_equal_numpy_over_every_episode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    H = 5
    episodes = [(rng.normal(size=(n, 4)), rng.normal(size=(n, 3))) for n in (40, 3, 2500)]  # one too short for H
    acc = StatsAccumulator({"arm": (slice(0, 2), slice(1, 3))}, H, tmp_path / ".stats")
    for state, action in episodes:
        acc.add(state, action)
    video_only_state = rng.normal(size=(7, 4))
    acc.add(video_only_state, None)  # a video-only episode: its state counts, its (NaN) actions do not
    stats, relative = acc.finish()
    assert not (tmp_path / ".stats").exists()

    # The statistics are those of the stored (float32) values, whatever precision came in.
    episodes = [(s.astype(np.float32).astype(np.float64), a.astype(np.float32).astype(np.float64)) for s, a in episodes]
    state = np.concatenate([s for s, _ in episodes] + [video_only_state.astype(np.float32).astype(np.float64)])
    action = np.concatenate([a for _, a in episodes])
    rel = np.concatenate(
        [
            (a[:, :2][np.arange(len(a) - H + 1)[:, None] + np.arange(H)] - s[: len(a) - H + 1, None, 1:3]).reshape(
                -1, 2
            )
            for s, a in episodes
            if len(a) >= H
        ]
    )
    assert len(rel) == (40 - H + 1 + 2500 - H + 1) * H
    for got, want in ((stats["observation.state"], state), (stats["action"], action), (relative["arm"], rel)):
        np.testing.assert_allclose(got["mean"], want.mean(0), rtol=1e-12)
        np.testing.assert_allclose(got["std"], want.std(0), rtol=1e-12)
        np.testing.assert_array_equal(got["min"], want.min(0))
        np.testing.assert_array_equal(got["max"], want.max(0))
        np.testing.assert_array_equal(got["q01"], np.quantile(want, 0.01, axis=0))
        np.testing.assert_array_equal(got["q99"], np.quantile(want, 0.99, axis=0))


def test_relative_chunks_in_blocks_equal_one_block() -> None:
    rng = np.random.default_rng(1)
    action, state = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    whole = np.concatenate(list(relative_chunks(action, state, 8, block=10_000)))
    blocks = list(relative_chunks(action, state, 8, block=16))
    assert len(blocks) == 6 and all(len(b) <= 16 * 8 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_array_equal(whole[8 * 10 + 3], action[13] - state[10])  # anchor 10, offset 3


def test_stats_from_row_blocks_equal_one_block(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    state, action = rng.normal(size=(103, 3)), rng.normal(size=(103, 3))
    whole = StatsAccumulator({"a": (slice(0, 3), slice(0, 3))}, 8, tmp_path / "w")
    whole.add(state, action)
    blocks = StatsAccumulator({"a": (slice(0, 3), slice(0, 3))}, 8, tmp_path / "b")
    cuts = [0, 5, 6, 40, 103]  # blocks shorter than the horizon too
    blocks.add_blocks([(state[a:b], action[a:b]) for a, b in pairwise(cuts)])
    assert whole.rel["a"].rows == blocks.rel["a"].rows == (103 - 8 + 1) * 8
    assert whole.finish() == blocks.finish()


@pytest.mark.parametrize("case", ["normal", "ties", "constant", "one", "two", "overfull-bin"])
def test_column_stats_quantiles_are_numpys_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from dreamzero_policy.data import stats as st

    monkeypatch.setattr(st, "READ_BLOCK", 1000)  # many blocks
    rng = np.random.default_rng(3)
    v = {
        "normal": rng.normal(size=25_001) * 1e3,
        "ties": rng.choice([0.0, 1.0, 0.5], size=20_000, p=[0.6, 0.39, 0.01]),  # a gripper: mostly two values
        "constant": np.full(500, 0.25),
        "one": np.array([3.0]),
        "two": np.array([2.0, -1.0]),
        "overfull-bin": np.concatenate([rng.normal(size=5000) * 1e-9, [1e6]]),  # nearly all in one bin
    }[case]
    if case == "overfull-bin":
        monkeypatch.setattr(st, "MAX_BIN_VALUES", 100)
    path = tmp_path / "col.f64"
    v.tofile(path)
    got = st.column_stats(path, len(v))
    assert got["q01"] == np.quantile(v, 0.01) and got["q99"] == np.quantile(v, 0.99)
    assert got["min"] == v.min() and got["max"] == v.max()
    np.testing.assert_allclose([got["mean"], got["std"]], [v.mean(), v.std()], rtol=1e-12, atol=1e-300)
