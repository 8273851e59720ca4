"""Samplers for discrete-time Gaussian diffusion, following the diffusers calling pattern.

A sampler holds no weights. ``set_timesteps(n)`` picks ``n`` of the ``T`` training levels (a descending subset,
always ending at level 0) and precomputes every coefficient as a Python float, so ``step`` launches only a few
fused element-wise kernels and never reads a value back from the device (no host sync on CUDA, CUDA-graph
friendly). ``step(model_output, i, x)`` maps ``x`` at ``timesteps[i]`` to the next level and returns
``(x_prev, x0_hat)``.

Implemented:

* :class:`DDPMSampler`: ancestral sampling with the posterior q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Eq. 7),
  generalised to strided timesteps.
* :class:`DDIMSampler`: Song et al. 2021 (DDIM), Eq. (12), with ``eta`` interpolating DDIM (0) and DDPM (1).
* :class:`DPMSolverPPSampler`: DPM-Solver++ (Lu et al. 2022), multistep data-prediction solver of order
  1, 2 (2M, Eq. 7 / Alg. 2) or 3 (3M), with lower-order warm-up and final steps.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from diffagents.diffusion.process import check_prediction_type, split_prediction
from diffagents.diffusion.schedules import NoiseSchedule


def select_timesteps(
    num_train_steps: int, num_inference_steps: int, spacing: str = "linspace",
    alphas_cumprod: np.ndarray | None = None,
) -> list[int]:
    """``n`` distinct descending levels from ``T-1`` down to ``0`` (both included).

    Args:
        spacing: ``"linspace"`` (evenly spaced levels, the diffusers default) or ``"logsnr"`` (levels nearest to
            an even grid of ``lambda = log(alpha / sigma)``, as recommended for DPM-Solver, Lu et al. 2022 Sec. 5);
            ``"logsnr"`` needs ``alphas_cumprod``.
    """
    if not 1 <= num_inference_steps <= num_train_steps:
        raise ValueError(
            f"num_inference_steps: expected 1..{num_train_steps} (the training steps), got {num_inference_steps}"
        )
    if num_inference_steps == 1:
        return [num_train_steps - 1]
    grid = np.round(np.linspace(num_train_steps - 1, 0, num_inference_steps)).astype(np.int64)
    if spacing == "linspace":
        return [int(t) for t in grid]
    if spacing != "logsnr" or alphas_cumprod is None:
        raise ValueError(f"spacing: expected 'linspace' or 'logsnr' (with alphas_cumprod), got {spacing!r}")
    lam = 0.5 * np.log(alphas_cumprod / (1.0 - alphas_cumprod))
    targets = np.linspace(lam[-1], lam[0], num_inference_steps)
    chosen = {int(np.argmin(np.abs(lam - v))) for v in targets} | {0, num_train_steps - 1}
    for t in grid:  # top up with evenly spaced levels when two targets map to the same level
        if len(chosen) >= num_inference_steps:
            break
        chosen.add(int(t))
    for t in range(num_train_steps):
        if len(chosen) >= num_inference_steps:
            break
        chosen.add(t)
    return sorted(chosen, reverse=True)[:num_inference_steps - 1] + [0]


class DiscreteSampler:
    """Shared set-up for samplers over the levels of a :class:`NoiseSchedule`.

    Args:
        schedule: the training noise schedule.
        num_inference_steps: how many levels to visit (defaults to all training levels).
        prediction_type: what the denoiser predicts (``"eps"``, ``"x0"`` or ``"v"``).
        clip_sample: if set, clip the x0 estimate to ``[-clip_sample, clip_sample]`` at every step.
        spacing: how levels are chosen, ``"linspace"`` or ``"logsnr"`` (see :func:`select_timesteps`).
    """

    init_noise_sigma: float = 1.0

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_inference_steps: int | None = None,
        *,
        prediction_type: str = "eps",
        clip_sample: float | None = None,
        spacing: str = "linspace",
    ) -> None:
        check_prediction_type(prediction_type)
        self.spacing = spacing
        if clip_sample is not None and clip_sample <= 0:
            raise ValueError(f"clip_sample: expected a positive float or None, got {clip_sample}")
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.timesteps: list[int] = []
        self.set_timesteps(num_inference_steps or schedule.num_train_steps)

    @property
    def num_inference_steps(self) -> int:
        return len(self.timesteps)

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps = select_timesteps(
            self.schedule.num_train_steps, num_inference_steps, self.spacing, self.schedule.alphas_cumprod
        )
        ab = [self.schedule.alpha_bar(t) for t in self.timesteps]
        ab_prev = [self.schedule.alpha_bar(t) for t in self.timesteps[1:]] + [1.0]
        self._sqrt_ab = [math.sqrt(a) for a in ab]
        self._sqrt_1mab = [math.sqrt(1.0 - a) for a in ab]
        self._precompute(ab, ab_prev)

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        raise NotImplementedError  # each subclass fills its own coefficient lists

    def posterior_variance(self, i: int) -> float:
        """Variance of q(x_s | x_t, x_0) for the step from ``timesteps[i]`` (Ho et al. 2020, Eq. 7).

        Diffuser scales value gradients by it (``scale_grad_by_std``).
        """
        a = self._sqrt_ab[i] ** 2
        ap = self.schedule.alpha_bar(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else 1.0
        return (1.0 - ap) / (1.0 - a) * (1.0 - a / ap)

    def reset(self) -> None:
        """Clear per-trajectory state (multistep history); called by :func:`sample_loop` before sampling."""

    def timestep_tensors(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> list[torch.Tensor]:
        """The levels as ``(B,)`` tensors to pass to the denoiser, built once before a sampling loop."""
        levels = torch.tensor(self.timesteps, dtype=dtype, device=device)
        return [levels[i].expand(batch_size) for i in range(len(self.timesteps))]

    def _x0_eps(self, model_output: torch.Tensor, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = self._sqrt_ab[i], self._sqrt_1mab[i]
        x0, eps = split_prediction(model_output, x, a, s, self.prediction_type)
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
            eps = (x - a * x0) / s
        return x0, eps

    def step(
        self, model_output: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class DDPMSampler(DiscreteSampler):
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) with the posterior variance ``beta~_t`` (Eq. 7).

    For a strided subset of levels the step from ``t`` to ``s < t`` uses ``beta = 1 - ab_t / ab_s``, the
    exact posterior of the sub-chain. No noise is added on the last step.
    """

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        self._c0, self._ct, self._std = [], [], []
        for a, ap in zip(ab, ab_prev):
            beta = 1.0 - a / ap
            self._c0.append(math.sqrt(ap) * beta / (1.0 - a))
            self._ct.append(math.sqrt(1.0 - beta) * (1.0 - ap) / (1.0 - a))
            self._std.append(math.sqrt(max((1.0 - ap) / (1.0 - a) * beta, 0.0)))

    def step(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        x0, _ = self._x0_eps(model_output, i, x)
        mean = torch.add(x0 * self._c0[i], x, alpha=self._ct[i])
        std = self._std[i] * temperature
        if std > 0:
            noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            mean = mean.add_(noise, alpha=std)
        return mean, x0


class DDIMSampler(DiscreteSampler):
    """DDIM (Song et al. 2021, Eq. 12): ``x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z``.

    Args:
        eta: 0 gives the deterministic ODE sampler, 1 the DDPM posterior variance.
    """

    def __init__(self, schedule: NoiseSchedule, num_inference_steps: int | None = None, *, eta: float = 0.0,
                 prediction_type: str = "eps", clip_sample: float | None = None, spacing: str = "linspace") -> None:
        if eta < 0:
            raise ValueError(f"eta: expected >= 0, got {eta}")
        self.eta = eta
        super().__init__(schedule, num_inference_steps, prediction_type=prediction_type, clip_sample=clip_sample,
                         spacing=spacing)

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        self._cx0, self._ceps, self._sigma = [], [], []
        for a, ap in zip(ab, ab_prev):
            sigma = self.eta * math.sqrt(max((1 - ap) / (1 - a) * (1 - a / ap), 0.0))
            self._cx0.append(math.sqrt(ap))
            self._ceps.append(math.sqrt(max(1.0 - ap - sigma**2, 0.0)))
            self._sigma.append(sigma)

    def step(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        x0, eps = self._x0_eps(model_output, i, x)
        out = torch.add(x0 * self._cx0[i], eps, alpha=self._ceps[i])
        sigma = self._sigma[i] * temperature
        if sigma > 0:
            noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            out = out.add_(noise, alpha=sigma)
        return out, x0


class DPMSolverPPSampler(DiscreteSampler):
    """DPM-Solver++ multistep in data-prediction form (Lu et al. 2022, "DPM-Solver++", Alg. 2).

    With ``lambda = log(alpha / sigma)`` and ``h = lambda_s - lambda_t`` the first-order update is
    ``x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D0`` (equal to DDIM), and the second / third order
    corrections use finite differences of previous x0 predictions.

    Order schedule (as diffusers' ``DPMSolverMultistepScheduler`` with ``lower_order_final`` and
    ``final_sigmas_type="zero"``): the order is capped by the available history (warm-up, also after a warm
    start at ``start_index > 0``); the step *into* level 0 is first order, because level 0 (sigma ~ 0.01) plays
    the role of diffusers' final step to sigma = 0 and on evenly spaced levels it spans a lambda interval several
    times longer than the previous one, where finite differences would be extrapolated far; with fewer than 15
    steps the step before it is at most second order. The very last step (from level 0 to clean data) returns
    the x0 prediction.

    Args:
        order: 1, 2 ("2M") or 3 ("3M").
    """

    def __init__(self, schedule: NoiseSchedule, num_inference_steps: int | None = None, *, order: Literal[1, 2, 3] = 2,
                 prediction_type: str = "eps", clip_sample: float | None = None, spacing: str = "linspace") -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"order: expected 1, 2 or 3, got {order}")
        self.order = order
        self._history: list[torch.Tensor] = []
        super().__init__(schedule, num_inference_steps, prediction_type=prediction_type, clip_sample=clip_sample,
                         spacing=spacing)

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        lam = [0.5 * math.log(a / (1 - a)) for a in ab]
        n = len(ab)
        self._orders: list[int] = []
        # _coefs[i][k - 1]: the coefficients of an order-k update at step i, for every k <= _orders[i]
        self._coefs: list[list[tuple[float, ...]]] = []
        for i in range(n):
            ap = ab_prev[i]
            if ap >= 1.0:  # last step: sigma_s = 0, the update is x0
                self._orders.append(0)
                self._coefs.append([])
                continue
            order = min(self.order, i + 1)
            if i == n - 2:  # the step into level 0 (final_sigmas_type="zero")
                order = 1
            elif i == n - 3 and n < 15:  # lower_order_final
                order = min(order, 2)
            lam_s = 0.5 * math.log(ap / (1 - ap))
            h = lam_s - lam[i]
            alpha_s = math.sqrt(ap)
            ratio = math.sqrt(1 - ap) / math.sqrt(1 - ab[i])
            phi = math.expm1(-h)  # e^{-h} - 1
            coefs: list[tuple[float, ...]] = [(ratio, -alpha_s * phi)]
            if order >= 2:
                r0 = (lam[i] - lam[i - 1]) / h
                coefs.append((ratio, -alpha_s * phi, -0.5 * alpha_s * phi / r0))
            if order >= 3:
                r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
                c_d1 = alpha_s * (phi / h + 1.0)
                c_d2 = -alpha_s * ((phi + h) / h**2 - 0.5)
                coefs.append((ratio, -alpha_s * phi, c_d1, c_d2, r0, r1))
            self._orders.append(order)
            self._coefs.append(coefs)

    def reset(self) -> None:
        self._history = []

    def step(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        x0, _ = self._x0_eps(model_output, i, x)
        if i == 0:
            self._history = []
        self._history.append(x0)
        if len(self._history) > 3:
            self._history.pop(0)
        order = min(self._orders[i], len(self._history))
        if order == 0:
            return x0, x0
        c = self._coefs[i][order - 1]
        out = torch.add(x * c[0], x0, alpha=c[1])
        if order == 2:
            m1 = self._history[-2]
            out = out.add_(x0 - m1, alpha=c[2])
        elif order == 3:
            m1, m2 = self._history[-2], self._history[-3]
            r0, r1 = c[4], c[5]
            d1_0 = (x0 - m1) / r0
            d1_1 = (m1 - m2) / r1
            d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            out = out.add_(d1, alpha=c[2]).add_(d2, alpha=c[3])
        return out, x0


SAMPLERS: dict[str, type[DiscreteSampler]] = {
    "ddpm": DDPMSampler,
    "ddim": DDIMSampler,
    "dpm": DPMSolverPPSampler,
    "dpmsolver++": DPMSolverPPSampler,
}


def make_sampler(name: str, schedule: NoiseSchedule, num_inference_steps: int | None = None, **kwargs: object
                 ) -> DiscreteSampler:
    """Build a sampler by name: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` (DPM-Solver++)."""
    key = name.lower()
    if key not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {sorted(SAMPLERS)}, got {name!r}")
    return SAMPLERS[key](schedule, num_inference_steps, **kwargs)  # type: ignore[arg-type]
