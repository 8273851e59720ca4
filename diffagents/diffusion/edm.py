"""The Elucidated Diffusion Model process and its stochastic Heun sampler (Karras et al. 2022, "EDM"), weight-free.

Preconditioned denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`` (Table 1), log-normal training noise
levels with the loss weight ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (Eq. 2 and Sec. 5),
and the stochastic Heun sampler of Alg. 2, which follows the :class:`~diffagents.diffusion.loop.Sampler` protocol
(so :func:`~diffagents.diffusion.loop.sample_loop` and the guides work unchanged). SynthER (Lu et al. 2023) uses it
through :class:`~diffagents.roles.synthesizer.TransitionSynthesizer`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffagents.diffusion.consistency import karras_sigmas
from diffagents.diffusion.discrete import level_tensors


class EDMProcess(nn.Module):
    """EDM preconditioning and training loss (Karras et al. 2022, Table 1 and Eq. 2).

    Args:
        sigma_data: standard deviation of the (normalised) data; 1 for standard-normalised transitions.
        sigma_min: smallest sampling noise level.
        sigma_max: largest sampling noise level.
        p_mean: mean of ``ln sigma`` during training.
        p_std: standard deviation of ``ln sigma`` during training.
    """

    def __init__(self, *, sigma_data: float = 1.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 p_mean: float = -1.2, p_std: float = 1.2) -> None:
        super().__init__()
        for name, value in (("sigma_data", sigma_data), ("sigma_min", sigma_min), ("p_std", p_std)):
            if not value > 0:
                raise ValueError(f"{name}: expected > 0, got {value}")
        if not sigma_max > sigma_min:
            raise ValueError(f"sigma_max: expected > sigma_min={sigma_min}, got {sigma_max}")
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)

    def denoise(self, net: nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``D(x; sigma)`` for ``x (B, D)`` and ``sigma (B,)`` (Karras et al. 2022, Eq. 7 and Table 1)."""
        s = sigma.to(x.dtype)[:, None]  # (B, 1)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / (s**2 + sd2).sqrt()
        c_in = 1.0 / (s**2 + sd2).sqrt()
        c_noise = sigma.to(x.dtype).log() / 4.0
        return c_skip * x + c_out * net(c_in * x, c_noise, cond)

    def loss(self, net: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``E_sigma lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2`` with ``ln sigma ~ N(P_mean, P_std^2)``."""
        b = x0.shape[0]
        ln_sigma = torch.randn(b, device=x0.device, dtype=x0.dtype, generator=generator) * self.p_std + self.p_mean
        sigma = ln_sigma.exp()  # (B,)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        denoised = self.denoise(net, x0 + sigma[:, None] * noise, sigma, cond)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2  # (B,)
        loss = (weight[:, None] * (denoised - x0) ** 2).mean()
        return loss, {"diffusion_loss": loss.detach()}


class EDMHeunSampler:
    """Stochastic Heun sampler of EDM (Karras et al. 2022, Alg. 2) in the ``sample_loop`` protocol.

    Alg. 2 evaluates ``D`` twice per step (Euler predictor at ``t_hat_i``, Heun corrector at ``t_{i+1}``), so
    ``timesteps`` lists the ``2N - 1`` noise levels at which the denoiser is called:
    ``[t_hat_0, t_1, t_hat_1, t_2, ..., t_hat_{N-1}]`` (no corrector into ``t_N = 0``). ``step`` alternates
    predictor and corrector; after a corrector it adds the "churn" noise that lifts ``t_{i+1}`` to
    ``t_hat_{i+1} = (1 + gamma_{i+1}) t_{i+1}``. The "model output" is the preconditioned ``D(x; sigma)``
    (use :meth:`EDMProcess.denoise`). The first churn is folded into ``init_noise_sigma``.

    Args:
        num_inference_steps: ``N``, the number of Heun steps (SynthER: 128).
        sigma_min, sigma_max, rho: the Karras level schedule (Eq. 5).
        s_churn, s_tmin, s_tmax, s_noise: stochasticity (``s_churn = 0`` is the deterministic Heun ODE solver).
        clip_sample: optional clipping of the denoised estimate.
    """

    def __init__(self, num_inference_steps: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 rho: float = 7.0, s_churn: float = 80.0, s_tmin: float = 0.05, s_tmax: float = 50.0,
                 s_noise: float = 1.003, clip_sample: float | None = None) -> None:
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps: expected >= 1, got {num_inference_steps}")
        if s_churn < 0:
            raise ValueError(f"s_churn: expected >= 0, got {s_churn}")
        n = num_inference_steps
        self.sigmas = karras_sigmas(n, sigma_min, sigma_max, rho) + [0.0]  # t_0 .. t_N
        gamma_max = min(s_churn / n, math.sqrt(2.0) - 1.0)
        self.sigma_hats = [s * (1.0 + (gamma_max if s_tmin <= s <= s_tmax else 0.0)) for s in self.sigmas[:-1]]
        self.s_noise = float(s_noise)
        self.clip_sample = clip_sample
        self.timesteps: list[float] = []
        for i in range(n):
            self.timesteps.append(self.sigma_hats[i])
            if i + 1 < n:
                self.timesteps.append(self.sigmas[i + 1])
        t0, th0 = self.sigmas[0], self.sigma_hats[0]
        self.init_noise_sigma = math.sqrt(t0**2 + (th0**2 - t0**2) * self.s_noise**2)
        self._x_hat: torch.Tensor | None = None
        self._d: torch.Tensor | None = None

    @property
    def num_inference_steps(self) -> int:
        return len(self.sigma_hats)

    def reset(self) -> None:
        self._x_hat, self._d = None, None

    def timestep_tensors(self, batch_size: int, device: torch.device | str, dtype: torch.dtype
                         ) -> list[torch.Tensor]:
        return level_tensors(self, self.timesteps, batch_size, device, dtype)

    def step(self, model_output: torch.Tensor, k: int, x: torch.Tensor, generator: torch.Generator | None = None,
             temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """One denoiser evaluation: Euler predictor (even ``k``) or Heun corrector plus churn (odd ``k``)."""
        i = k // 2
        x0 = model_output if self.clip_sample is None else model_output.clamp(-self.clip_sample, self.clip_sample)
        t_hat, t_next = self.sigma_hats[i], self.sigmas[i + 1]
        if k % 2 == 0:  # predictor at (x_hat_i, t_hat_i)
            d = (x - x0) / t_hat
            if t_next == 0.0:
                return x0, x0
            self._x_hat, self._d = x, d
            return x + (t_next - t_hat) * d, x0
        if self._x_hat is None or self._d is None:
            raise RuntimeError("EDMHeunSampler: a corrector step needs the preceding predictor step")
        d_next = (x - x0) / t_next
        out = self._x_hat + (t_next - t_hat) * 0.5 * (self._d + d_next)
        t_hat_next = self.sigma_hats[i + 1]
        extra = math.sqrt(max(t_hat_next**2 - t_next**2, 0.0)) * self.s_noise * temperature
        if extra > 0:
            noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
            out = out.add_(noise, alpha=extra)
        return out, x0
