"""Consistency models in the EDM / Karras sigma parameterisation (Song et al. 2023; Karras et al. 2022).

The consistency function is ``f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(x, sigma)`` with
``c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2)`` and
``c_out = (sigma - sigma_min) sigma_data / sqrt(sigma^2 + sigma_data^2)`` (Song et al. 2023, Eq. 7 and App. C),
so ``f(x, sigma_min) = x`` exactly. CPQL (Chen et al. 2023) uses it as a one-step policy.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffagents.diffusion.discrete import level_tensors


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> list[float]:
    """Karras et al. (2022) Eq. (5): ``n`` sigmas decreasing from ``sigma_max`` to ``sigma_min``."""
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    if n == 1:
        return [sigma_max]
    ramp = np.linspace(0.0, 1.0, n)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return [float(s) for s in inv**rho]


def consistency_scalings(sigma: torch.Tensor, sigma_min: float, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out)`` of the consistency parameterisation for a tensor of sigmas."""
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = (sigma - sigma_min) * sigma_data / torch.sqrt(sigma**2 + sigma_data**2)
    return c_skip, c_out


class ConsistencySampler:
    """One- or multi-step consistency sampling (Song et al. 2023, Alg. 1).

    The "model output" passed to :meth:`step` is the consistency function's value ``f(x, sigma_i)`` (an x0
    estimate). Between steps the estimate is re-noised to the next sigma: ``x = x0 + sqrt(s^2 - s_min^2) z``.
    The denoiser receives the sigma values as its time input.

    Args:
        sigmas: the decreasing noise levels to visit; ``[sigma_max]`` is one-step sampling.
        sigma_min: the smallest sigma of the model's training range.
        clip_sample: optional clipping of the estimate to ``[-c, c]``.
    """

    prediction_type = "x0"

    def __init__(self, sigmas: list[float], *, sigma_min: float = 0.002, clip_sample: float | None = None) -> None:
        if not sigmas or any(b >= a for a, b in zip(sigmas, sigmas[1:])):
            raise ValueError(f"sigmas: expected a non-empty strictly decreasing list, got {sigmas}")
        self.timesteps: list[float] = list(sigmas)
        self.sigma_min = sigma_min
        self.clip_sample = clip_sample
        self.init_noise_sigma = float(sigmas[0])
        self._renoise = [math.sqrt(max(s**2 - sigma_min**2, 0.0)) for s in sigmas[1:]] + [0.0]

    @property
    def num_inference_steps(self) -> int:
        return len(self.timesteps)

    def reset(self) -> None:
        """No multistep state."""

    def timestep_tensors(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> list[torch.Tensor]:
        """The sigmas as ``(B,)`` tensors to pass to the denoiser (cached per batch size, device and dtype)."""
        return level_tensors(self, self.timesteps, batch_size, device, dtype)

    def step(self, model_output: torch.Tensor, i: int, x: torch.Tensor, generator: torch.Generator | None = None,
             temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = model_output
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        std = self._renoise[i] * temperature
        if std == 0:
            return x0, x0
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        return torch.add(x0, noise, alpha=std), x0
