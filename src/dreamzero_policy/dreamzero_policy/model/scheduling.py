"""Flow-matching noise schedules and the flow UniPC sampler used by DreamZero.

Conventions (shared by training and inference):
- sigma in [0, 1] is the noise level; x_t = (1 - sigma) * x0 + sigma * noise.
- The model predicts the flow velocity v = noise - x0, so x0 = x_t - sigma * v.
- A "timestep" fed to the DiT is 1000 * sigma (float in training, truncated int64 at inference).

Every grid here is computed exactly as the official DreamZero code computes it (dtype and operation order
included), so it is bitwise equal to the parity fixture (`shared/reference/parity/schedules.safetensors`).

Why not diffusers' ``UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=5, prediction_type=
"flow_prediction")`` (checked with diffusers 0.42.1): its flow grid is built differently from the official one
(timesteps ..., 893, ..., 750, 695, 625, 537, 418, 252 instead of ..., 892, ..., 749, 694, 624, 535, 416, 249;
sigmas off by up to 3.2e-3), so driven by the fixture's model outputs its trace misses the official one by
1.4e-2, far outside the 1e-5 tolerance. It also finds the step by timestep value, while DreamZero drives the
solver by explicit step index. The update is short, so it is implemented here in float32 with 0-d tensors in
the official operation order; on the parity fixture the video and action traces match bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "DEFAULT_DIT_STEP_MASKS",
    "FlowUniPCScheduler",
    "add_noise",
    "dit_step_mask",
    "flow_target",
    "inference_grid",
    "training_grid",
    "training_weights",
]

# Official fixed masks for a 16-step grid (NUM_DIT_STEPS env var in the official head; 8 is the default).
# Indices of the steps at which the DiT runs; the other steps reuse the last computed velocity.
DEFAULT_DIT_STEP_MASKS: dict[int, tuple[int, ...]] = {
    5: (0, 1, 2, 7, 12),
    6: (0, 1, 5, 10, 14, 15),
    7: (0, 1, 2, 6, 10, 14, 15),
    8: (0, 1, 2, 6, 10, 13, 14, 15),
}


def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an int subclass; reject it so a stray True does not become 1 step.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_shift(shift: float) -> float:
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a finite positive number, got {shift}")
    return float(shift)


def training_grid(num_train_timesteps: int = 1000, shift: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The training sigma/timestep grid.

    Official: ``FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True).set_timesteps(N, training=True)``.

    sigma_k = shift*u/(1+(shift-1)*u) with u = linspace(1, 0, N+1)[:-1], all in float32; timestep = N * sigma.
    Index 0 is the noisiest (sigma 1, t = N).

    Returns:
        (sigmas, timesteps): float32 [N] each.
    """
    n = _check_int("num_train_timesteps", num_train_timesteps, 1)
    shift = _check_shift(shift)
    u = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float32)[:-1]
    sigmas = shift * u / (1 + (shift - 1) * u)
    timesteps = sigmas * n
    return sigmas, timesteps


def training_weights(timesteps: torch.Tensor) -> torch.Tensor:
    """Loss weight per grid index, for the grid ``timesteps`` [N] from :func:`training_grid`.

    w = exp(-2 ((t - N/2) / N)^2), minus its minimum over the grid, rescaled to sum to N (float32).
    It peaks near t = N/2 and is 0 at the grid's extreme. Index the result with the sample's grid index.

    Returns:
        float32 [N].
    """
    if not isinstance(timesteps, torch.Tensor) or timesteps.ndim != 1 or timesteps.numel() < 2:
        raise ValueError("timesteps must be a 1-D tensor with at least 2 entries (the training grid)")
    if not timesteps.is_floating_point():
        raise ValueError(f"timesteps must be floating point, got {timesteps.dtype}")
    n = timesteps.numel()
    y = torch.exp(-2 * ((timesteps - n / 2) / n) ** 2)
    y_shifted = y - y.min()
    total = y_shifted.sum()
    if not total > 0:
        raise ValueError("timesteps are all equal; the weight normalisation is undefined")
    return y_shifted * (n / total)


def inference_grid(
    num_steps: int = 16, shift: float = 5.0, sigma_max: float = 0.999
) -> tuple[torch.Tensor, torch.Tensor]:
    """The UniPC sampling grid.

    Official: ``FlowUniPCMultistepScheduler(shift=1).set_timesteps(num_steps, shift=shift)``.

    sigma_max is rounded to float32 first (the official scheduler reads it back from a float32 tensor), then
    sigmas = shift5(linspace(sigma_max, 0, num_steps + 1)[:-1]) in float64, timesteps = int64(1000 * sigma)
    (truncation), sigmas cast to float32 with a final 0 appended.

    Returns:
        (timesteps int64 [num_steps], sigmas float32 [num_steps + 1], sigmas[-1] == 0).
    """
    n = _check_int("num_steps", num_steps, 1)
    shift = _check_shift(shift)
    if not (0.0 < sigma_max <= 1.0):
        raise ValueError(f"sigma_max must be in (0, 1], got {sigma_max}")
    if n > 1 and float(np.float32(sigma_max)) >= 1.0:
        # log(1 - sigma) is -inf at sigma 1 and the multistep coefficients would be NaN;
        # only the 1-step mode may start at 1.
        raise ValueError(
            "sigma_max must be < 1 for a multistep grid (num_steps > 1); use sigma_max=1.0 only with 1 step"
        )
    s_max = float(np.float32(sigma_max))
    sigmas = np.linspace(s_max, 0.0, n + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    timesteps = torch.from_numpy(sigmas * 1000).to(torch.int64)
    sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
    return timesteps, torch.from_numpy(sigmas)


def dit_step_mask(num_steps: int = 16, num_dit_steps: int = 8) -> torch.Tensor:
    """Which sampling steps evaluate the DiT (the others reuse the last computed velocity).

    - ``num_dit_steps == num_steps``: every step.
    - ``num_steps == 16`` and ``num_dit_steps`` in 5..8: the official fixed masks (default 8 = steps
      0, 1, 2, 6, 10, 13, 14, 15).
    - Otherwise: ``num_dit_steps`` steps evenly spread over the grid (always step 0, and the last step when
      ``num_dit_steps >= 2``). The official code falls back to all 16 steps for other values; here the count
      is always honoured, so a configured budget is exactly what runs.

    Returns:
        bool [num_steps] with exactly ``num_dit_steps`` True entries and entry 0 True.
    """
    n = _check_int("num_steps", num_steps, 1)
    k = _check_int("num_dit_steps", num_dit_steps, 1)
    if k > n:
        raise ValueError(f"num_dit_steps ({k}) cannot exceed num_steps ({n})")
    mask = torch.zeros(n, dtype=torch.bool)
    if k == n:
        mask[:] = True
    elif n == 16 and k in DEFAULT_DIT_STEP_MASKS:
        mask[list(DEFAULT_DIT_STEP_MASKS[k])] = True
    else:
        # Spacing (n-1)/(k-1) >= 1, so the rounded indices are strictly increasing: exactly k of them.
        idx = np.rint(np.linspace(0, n - 1, k)).astype(np.int64)
        mask[torch.from_numpy(idx)] = True
    return mask


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - sigma) * x0 + sigma * noise.

    ``noise`` has ``x0``'s shape. ``sigma`` is a Python float in [0, 1] or a tensor that broadcasts to
    ``x0`` by the usual right-aligned rule, e.g. [B, 1, 1, 1, 1] per sample or [B, 1, F, 1, 1] per frame for
    video [B, C, F, H, W], and [B, T, 1] per action token for actions [B, T, D]. A bare [B] is NOT expanded
    for you (it would align with the last axis); reshape it first. The result always has ``x0``'s shape.
    Tensor sigmas are not range-checked (that would force a device sync).
    """
    _check_pair(x0, noise)
    if isinstance(sigma, torch.Tensor):
        try:
            out_shape = torch.broadcast_shapes(sigma.shape, x0.shape)
        except RuntimeError as exc:
            raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not broadcast to x0 {tuple(x0.shape)}") from exc
        if out_shape != x0.shape:
            raise ValueError(f"sigma of shape {tuple(sigma.shape)} enlarges x0 {tuple(x0.shape)} to {tuple(out_shape)}")
    elif not (0.0 <= float(sigma) <= 1.0):
        raise ValueError(f"sigma must be in [0, 1], got {sigma}")
    return (1 - sigma) * x0 + sigma * noise


def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target (velocity) noise - x0; same shape as ``x0``."""
    _check_pair(x0, noise)
    return noise - x0


def _check_pair(x0: torch.Tensor, noise: torch.Tensor) -> None:
    if x0.shape != noise.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} must have the same shape")


class FlowUniPCScheduler:
    """Order-2 UniPC (bh2, predict-x0, flow prediction, lower-order final) on a fixed sigma grid.

    Reproduces the official ``FlowUniPCMultistepScheduler`` (solver_order=2) step for step: UniC corrector
    of the previous order at every step i >= 1, then a UniP predictor of order min(2, N - i, i + 1). Scalars
    are float32 0-d tensors in the official operation order; tensors keep the sample's dtype.

    One instance per recursion (video and actions need separate instances). Call ``step`` with
    ``step_index = 0, 1, ..., N-1`` in order; a skipped DiT step passes the previous velocity again.
    With sigmas [1, 0] (1-step "Flash" mode) the single step returns x0 = x - sigma * v exactly.

    Args:
        sigmas: float [N + 1], strictly decreasing, ending in 0 (e.g. ``inference_grid(...)[1]``); values are
            used in float32. sigmas[0] may be 1 only when N == 1.
    """

    solver_order = 2

    def __init__(self, sigmas: torch.Tensor) -> None:
        if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
            raise ValueError("sigmas must be a 1-D tensor with at least 2 entries (N steps + final 0)")
        s = sigmas.detach().to(device="cpu", dtype=torch.float32).clone()
        if not bool(torch.isfinite(s).all()):
            raise ValueError("sigmas must be finite")
        if s[-1].item() != 0.0:
            raise ValueError(f"sigmas must end in 0, got {s[-1].item()}")
        if not bool((s[1:] < s[:-1]).all()):
            raise ValueError("sigmas must be strictly decreasing")
        n = s.numel() - 1
        limit_ok = s[0].item() <= 1.0 if n == 1 else s[0].item() < 1.0
        if not limit_ok:
            raise ValueError(f"sigmas[0] must be < 1 (or <= 1 for a single step), got {s[0].item()}")
        self.sigmas = s
        self.num_steps = n
        # lambda = log(alpha) - log(sigma), alpha = 1 - sigma, in float32 as the official code computes it.
        # lambda[N] = +inf (sigma 0), lambda[0] = -inf for sigma 1; both give finite order-1 updates.
        self._lambdas = torch.log(1 - s) - torch.log(s)
        self.reset()

    def reset(self) -> None:
        """Forget the history; call before a new sampling run."""
        self._m: list[torch.Tensor | None] = [None, None]  # x0 predictions of steps i-1 and i (newest last)
        self._last_sample: torch.Tensor | None = None
        self._this_order = 0
        self._lower_order_nums = 0
        self._next_index = 0

    def step(self, model_output: torch.Tensor, step_index: int, sample: torch.Tensor) -> torch.Tensor:
        """Advance ``sample`` from sigmas[step_index] to sigmas[step_index + 1].

        Args:
            model_output: flow velocity at (sample, sigmas[step_index]); ``sample``'s shape (batch first).
            step_index: must equal the number of steps taken since ``reset``.
            sample: the current sample x_i (what this scheduler returned last, or the initial noise).

        Returns:
            x_{i+1}, same shape and dtype as ``sample``.
        """
        if isinstance(step_index, bool) or not isinstance(step_index, int):
            raise ValueError(f"step_index must be an int, got {type(step_index).__name__}")
        if step_index != self._next_index:
            raise ValueError(
                f"step_index {step_index} out of order: expected {self._next_index} "
                f"(steps must run 0..{self.num_steps - 1} in order; call reset() to restart)"
            )
        if step_index >= self.num_steps:
            raise ValueError(f"all {self.num_steps} steps are done; call reset() to start a new run")
        if model_output.shape != sample.shape:
            raise ValueError(
                f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} differ in shape"
            )
        i = step_index
        x0_pred = sample - self.sigmas[i] * model_output

        if i > 0 and self._last_sample is not None:
            sample = self._corrector(x0_pred, self._last_sample, sample, self._this_order, i)

        self._m = [self._m[1], x0_pred]
        this_order = min(self.solver_order, self.num_steps - i)  # lower-order final
        self._this_order = min(this_order, self._lower_order_nums + 1)  # warm-up
        self._last_sample = sample
        prev = self._predictor(sample, self._this_order, i)
        self._lower_order_nums = min(self._lower_order_nums + 1, self.solver_order)
        self._next_index = i + 1
        return prev

    @property
    def predictor_orders(self) -> list[int]:
        """The UniP order used at each step: [1, 2, ..., 2, 1] for N >= 3."""
        return [min(self.solver_order, self.num_steps - i, i + 1) for i in range(self.num_steps)]

    # --- the two updates (predict-x0 form; alpha = 1 - sigma) ---------------------------------------------

    def _coefficients(self, t_idx: int, s0_idx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """h, hh = -h, h_phi_1 = B_h = expm1(-h) for the interval s0 -> t (float32 0-d tensors)."""
        h = self._lambdas[t_idx] - self._lambdas[s0_idx]
        hh = -h
        h_phi_1 = torch.expm1(hh)
        return h, hh, h_phi_1, h_phi_1  # bh2: B(h) = expm1(hh)

    def _b_vector(self, hh: torch.Tensor, h_phi_1: torch.Tensor, b_h: torch.Tensor, order: int) -> list[torch.Tensor]:
        h_phi_k = h_phi_1 / hh - 1
        factorial = 1
        out = []
        for k in range(1, order + 1):
            out.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        return out

    def _predictor(self, x: torch.Tensor, order: int, i: int) -> torch.Tensor:
        m0 = self._m[1]
        assert m0 is not None
        sigma_t, sigma_s0 = self.sigmas[i + 1], self.sigmas[i]
        alpha_t = 1 - sigma_t
        h, _, h_phi_1, b_h = self._coefficients(i + 1, i)
        x_t = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0
        if order == 2:
            m1 = self._m[0]
            assert m1 is not None
            rk = (self._lambdas[i - 1] - self._lambdas[i]) / h
            d1 = (m1 - m0) / rk
            # For order 2 the official code fixes rho_p = 0.5 instead of solving.
            x_t = x_t - alpha_t * b_h * (0.5 * d1)
        return x_t.to(x.dtype)

    def _corrector(
        self, model_t: torch.Tensor, last_sample: torch.Tensor, this_sample: torch.Tensor, order: int, i: int
    ) -> torch.Tensor:
        m0 = self._m[1]
        assert m0 is not None
        sigma_t, sigma_s0 = self.sigmas[i], self.sigmas[i - 1]
        alpha_t = 1 - sigma_t
        h, hh, h_phi_1, b_h = self._coefficients(i, i - 1)
        x_t_ = sigma_t / sigma_s0 * last_sample - alpha_t * h_phi_1 * m0
        d1_t = model_t - m0
        if order == 1:
            x_t = x_t_ - alpha_t * b_h * (0.5 * d1_t)
        else:
            m1 = self._m[0]
            assert m1 is not None
            rk = (self._lambdas[i - 2] - self._lambdas[i - 1]) / h
            d1 = (m1 - m0) / rk
            one = torch.ones((), dtype=torch.float32)
            r_mat = torch.stack([torch.stack([one, one]), torch.stack([rk, one])])
            rhos = torch.linalg.solve(r_mat, torch.stack(self._b_vector(hh, h_phi_1, b_h, 2)))
            x_t = x_t_ - alpha_t * b_h * (rhos[0] * d1 + rhos[1] * d1_t)
        return x_t.to(this_sample.dtype)
