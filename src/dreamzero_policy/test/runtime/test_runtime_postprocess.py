"""Post-processing: q01/q99 normalisation, relative -> absolute, gripper, ChunkData."""

from __future__ import annotations

import numpy as np
import pytest
from dreamzero_policy.core.errors import BackendError
from dreamzero_policy.runtime.io_spec import NormStats, load_io_spec
from dreamzero_policy.runtime.postprocess import (
    actions_from_model,
    apply_gripper_convention,
    denormalize,
    make_chunk,
    normalize,
    to_absolute,
    to_relative,
)

SPEC = load_io_spec("droid_sim")


def test_normalize_roundtrip_and_flat_dims() -> None:
    stats = NormStats(q01=np.array([-1.0, 0.0, 2.0]), q99=np.array([1.0, 4.0, 2.0]))
    x = np.array([[0.5, 1.0, 7.0], [-3.0, 4.0, -1.0]])
    y = normalize(x, stats)
    np.testing.assert_allclose(y[0], [0.5, -0.5, 7.0])  # flat dim passes through
    assert y[1, 0] == -1.0  # clipped
    np.testing.assert_allclose(denormalize(y[:1], stats), x[:1], atol=1e-6)
    assert denormalize(np.array([[2.0, 0.0, 0.0]]), stats)[0, 0] == pytest.approx(2.0)  # beyond q99: not clipped


def test_relative_absolute_roundtrip() -> None:
    state = np.arange(8, dtype=np.float64) / 10
    rel = np.random.default_rng(0).normal(size=(24, 8))
    ab = to_absolute(SPEC, rel, state)
    np.testing.assert_allclose(ab[:, :7], rel[:, :7] + state[:7])
    np.testing.assert_allclose(ab[:, 7], rel[:, 7])  # gripper stays absolute
    np.testing.assert_allclose(to_relative(SPEC, ab, state), rel)


def test_actions_from_model_and_gripper() -> None:
    state = np.array([0.1] * 7 + [0.0])
    model_out = np.zeros((24, 32), np.float32)  # padded to 32 like DreamZero
    model_out[:, 7] = 1.0  # gripper at q99 -> closed
    a = actions_from_model(SPEC, model_out, state)
    assert a.shape == (24, 8)
    np.testing.assert_allclose(a[:, :7], 0.1)  # mid of symmetric stats + state
    np.testing.assert_allclose(a[:, 7], 1.0)
    g = apply_gripper_convention(SPEC, np.full((2, 8), 1.4))
    assert g[0, 7] == 1.0 and g[0, 0] == 1.4
    assert apply_gripper_convention(SPEC, np.full((1, 8), 0.4), threshold=0.5)[0, 7] == 0.0
    with pytest.raises(BackendError, match="shape"):
        actions_from_model(SPEC, np.zeros((24, 4)), state)


def test_make_chunk_fields_and_validation() -> None:
    a = np.arange(48, dtype=np.float64).reshape(6, 8)
    c = make_chunk(
        SPEC,
        a,
        stamp_ns=10_000_000_000,
        session_id="s",
        chunk_id=3,
        inference_started_ns=10_100_000_000,
        inference_latency_ns=250_000_000,
    )
    assert c.horizon == 6 and c.execute_horizon == 6 and c.names == SPEC.action_names
    assert c.embodiment == "droid_franka_sim" and c.action_space == 0
    assert c.step_duration_ns == 66_666_667
    assert c.flat_data()[:9] == list(range(9))
    assert c.step_times_ns()[0] == 10_000_000_000 + 66_666_667
    with pytest.raises(BackendError, match="NaN"):
        make_chunk(
            SPEC,
            np.full((2, 8), np.nan),
            stamp_ns=0,
            session_id="s",
            chunk_id=0,
            inference_started_ns=0,
            inference_latency_ns=0,
        )
    with pytest.raises(BackendError, match="shape"):
        make_chunk(
            SPEC,
            np.zeros((2, 7)),
            stamp_ns=0,
            session_id="s",
            chunk_id=0,
            inference_started_ns=0,
            inference_latency_ns=0,
        )
