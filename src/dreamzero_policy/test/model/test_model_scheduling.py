"""Schedules and the flow UniPC sampler against the official parity fixture (case `schedules`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dreamzero_policy.model.scheduling import (
    FlowUniPCScheduler,
    add_noise,
    dit_step_mask,
    flow_target,
    inference_grid,
    training_grid,
    training_weights,
)
from parity_fixture import load_case, load_json

UNIPC_ATOL = 1e-5  # parity README §6: UniPC trace given the stored model outputs


@pytest.fixture(scope="module")
def sched() -> dict[str, torch.Tensor]:
    return load_case("schedules")


def _bitwise(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.equal(actual, expected), f"max diff {(actual.double() - expected.double()).abs().max().item()}"


# --- grids --------------------------------------------------------------------------------------------------


def test_training_grid_bitwise(sched: dict[str, torch.Tensor]) -> None:
    sigmas, timesteps = training_grid()
    _bitwise(sigmas, sched["train.sigmas"])
    _bitwise(timesteps, sched["train.timesteps"])


def test_training_weights_bitwise(sched: dict[str, torch.Tensor]) -> None:
    weights = training_weights(sched["train.timesteps"])
    _bitwise(weights, sched["train.weights"])
    assert int(weights.argmax()) == 833
    assert weights.sum().item() == pytest.approx(1000.0, rel=1e-5)


def test_inference_grid_bitwise(sched: dict[str, torch.Tensor]) -> None:
    timesteps, sigmas = inference_grid()
    _bitwise(timesteps, sched["infer.timesteps"])
    _bitwise(sigmas, sched["infer.sigmas"])
    assert sigmas[-1].item() == 0.0


def test_inference_grid_one_step() -> None:
    timesteps, sigmas = inference_grid(num_steps=1, sigma_max=1.0)
    assert timesteps.tolist() == [1000]
    assert sigmas.tolist() == [1.0, 0.0]


# --- step masks ---------------------------------------------------------------------------------------------


def test_default_dit_step_mask_matches_fixture(sched: dict[str, torch.Tensor]) -> None:
    _bitwise(dit_step_mask(), sched["infer.dit_step_mask"])


@pytest.mark.parametrize("k", ["5", "6", "7", "16"])
def test_official_masks_by_num_dit_steps(k: str) -> None:
    expected = load_json("index")["notes"]["dit_step_masks_by_NUM_DIT_STEPS"][k]
    assert dit_step_mask(16, int(k)).tolist() == expected


@pytest.mark.parametrize(("n", "k"), [(16, 1), (16, 3), (16, 12), (10, 4), (4, 2), (1, 1), (32, 8)])
def test_generic_masks_honour_the_count(n: int, k: int) -> None:
    mask = dit_step_mask(n, k)
    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert int(mask.sum()) == k
    assert bool(mask[0])
    if k >= 2:
        assert bool(mask[-1])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((16, 0), ">= 1"),
        ((16, 17), "cannot exceed"),
        ((0, 1), ">= 1"),
        ((16, 8.0), "int"),
        ((True, 1), "int"),
    ],
)
def test_dit_step_mask_validation(args: tuple[object, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dit_step_mask(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, ">= 1"),
        ({"shift": 0.0}, "shift"),
        ({"sigma_max": 1.5}, "sigma_max"),
        ({"sigma_max": 1.0}, "< 1"),
    ],
)
def test_inference_grid_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        inference_grid(**kwargs)  # type: ignore[arg-type]


def test_training_grid_validation() -> None:
    with pytest.raises(ValueError, match="num_train_timesteps"):
        training_grid(0)
    with pytest.raises(ValueError, match="1-D"):
        training_weights(torch.zeros(2, 2))


# --- UniPC --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["video", "action"])
def test_unipc_reproduces_official_trace(sched: dict[str, torch.Tensor], stream: str) -> None:
    outputs = sched[f"unipc.{stream}.model_outputs"]
    samples = sched[f"unipc.{stream}.samples"]
    scheduler = FlowUniPCScheduler(sched["infer.sigmas"])
    assert scheduler.predictor_orders == sched["unipc.predictor_order"].tolist()
    x = samples[0]
    for i in range(16):
        x = scheduler.step(outputs[i], i, x)
        err = (x - samples[i + 1]).abs().max().item()
        assert err <= UNIPC_ATOL, f"{stream} step {i}: max abs diff {err}"
        # Feed the recorded state forward so each step is checked on its own inputs (errors cannot hide).
        x = samples[i + 1]


def test_unipc_free_running_trace_and_reset(sched: dict[str, torch.Tensor]) -> None:
    outputs = sched["unipc.action.model_outputs"]
    samples = sched["unipc.action.samples"]
    scheduler = FlowUniPCScheduler(sched["infer.sigmas"])
    for _ in range(2):  # the second pass proves reset() clears the history
        scheduler.reset()
        x = samples[0]
        for i in range(16):
            x = scheduler.step(outputs[i], i, x)
        assert (x - samples[16]).abs().max().item() <= UNIPC_ATOL


def test_unipc_last_step_returns_x0() -> None:
    torch.manual_seed(0)
    _, sigmas = inference_grid(4)
    scheduler = FlowUniPCScheduler(sigmas)
    x = torch.randn(2, 3, 5)
    v = torch.randn(2, 3, 5)
    for i in range(3):
        x = scheduler.step(v, i, x)
    final = scheduler.step(v, 3, x)
    torch.testing.assert_close(final, x - sigmas[3] * v, rtol=0, atol=0)


def test_one_step_mode_reaches_x0_for_perfect_velocity() -> None:
    torch.manual_seed(1)
    x0 = torch.randn(1, 16, 2, 4, 8)
    noise = torch.randn_like(x0)
    _, sigmas = inference_grid(num_steps=1, sigma_max=1.0)
    scheduler = FlowUniPCScheduler(sigmas)
    x1 = add_noise(x0, noise, sigmas[0])
    out = scheduler.step(flow_target(x0, noise), 0, x1)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


def test_multistep_reaches_x0_for_perfect_velocity() -> None:
    # On the straight flow path a perfect velocity is constant, so every order of UniPC is exact.
    torch.manual_seed(2)
    x0 = torch.randn(3, 6, 32)
    noise = torch.randn_like(x0)
    _, sigmas = inference_grid(16)
    scheduler = FlowUniPCScheduler(sigmas)
    x = add_noise(x0, noise, sigmas[0])
    v = flow_target(x0, noise)
    for i in range(16):
        x = scheduler.step(v, i, x)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-4)


def test_unipc_validation() -> None:
    with pytest.raises(ValueError, match="end in 0"):
        FlowUniPCScheduler(torch.tensor([0.9, 0.5]))
    with pytest.raises(ValueError, match="decreasing"):
        FlowUniPCScheduler(torch.tensor([0.5, 0.9, 0.0]))
    with pytest.raises(ValueError, match="sigmas\\[0\\]"):
        FlowUniPCScheduler(torch.tensor([1.0, 0.5, 0.0]))
    _, sigmas = inference_grid(4)
    scheduler = FlowUniPCScheduler(sigmas)
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="out of order"):
        scheduler.step(x, 1, x)
    with pytest.raises(ValueError, match="shape"):
        scheduler.step(torch.zeros(1, 3), 0, x)
    for i in range(4):
        x = scheduler.step(torch.ones(1, 4), i, x)
    with pytest.raises(ValueError, match="all 4 steps are done"):
        scheduler.step(x, 4, x)


# --- noising ------------------------------------------------------------------------------------------------


def test_add_noise_and_target_broadcasting() -> None:
    torch.manual_seed(3)
    x0 = torch.randn(2, 16, 3, 4, 8)
    noise = torch.randn_like(x0)
    sigma = torch.tensor([0.2, 0.7, 0.9]).view(1, 1, 3, 1, 1)  # per frame
    xt = add_noise(x0, noise, sigma)
    for f, s in enumerate([0.2, 0.7, 0.9]):
        torch.testing.assert_close(xt[:, :, f], (1 - s) * x0[:, :, f] + s * noise[:, :, f])
    # x0 is recovered from x_t and the target velocity: x0 = x_t - sigma * v.
    torch.testing.assert_close(xt - sigma * flow_target(x0, noise), x0, rtol=0, atol=1e-6)
    assert torch.equal(add_noise(x0, noise, 0.0), x0)
    with pytest.raises(ValueError, match="enlarges"):
        add_noise(x0[:, :, :1], noise[:, :, :1], sigma)
    with pytest.raises(ValueError, match="broadcast"):
        add_noise(x0, noise, torch.rand(2))
    with pytest.raises(ValueError, match="same shape"):
        flow_target(x0, noise[:1])
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        add_noise(x0, noise, 1.5)


def test_unipc_keeps_sample_dtype() -> None:
    # The served model runs in bf16; the solver must hand back bf16 samples, close to the float32 recursion.
    torch.manual_seed(4)
    _, sigmas = inference_grid(16)
    x32 = torch.randn(1, 6, 32).to(torch.bfloat16).float()
    outs = [torch.randn(1, 6, 32).to(torch.bfloat16) for _ in range(16)]
    s16, s32 = FlowUniPCScheduler(sigmas), FlowUniPCScheduler(sigmas)
    x16 = x32.to(torch.bfloat16)
    for i in range(16):
        x16 = s16.step(outs[i], i, x16)
        x32 = s32.step(outs[i].float(), i, x32)
        assert x16.dtype == torch.bfloat16
    assert (x16.float() - x32).abs().max().item() < 0.1
