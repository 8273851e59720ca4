"""Role: one-step consistency policies over actions (Song et al. 2023; CPQL, Chen et al. 2023).

Two parameterisations of a consistency function ``f(x, level, s)`` that maps any point of a probability-flow ODE
trajectory to its clean end, both with the boundary condition ``f(x, clean) = x`` built in:

* :class:`ConsistencyActionPolicy` (CPQL): continuous Karras sigmas ``sigma in [sigma_min, sigma_max]``,
  ``f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), s)`` with the scalings of
  :func:`diffagents.diffusion.consistency_scalings` (Song et al. 2023, App. C) and the network inputs of the
  consistency-models code (``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``, ``c_noise = 250 log sigma``). It is
  trained by consistency training (no teacher, Song et al. Alg. 3) with a target network.
* :class:`DistilledConsistencyPolicy`: the discrete levels ``t_0 > ... > t_{n-1}`` of a VP teacher
  (Diffusion-QL / IDQL / Diffusion Policy) plus the clean end ``t_n`` (``alpha_bar = 1``), with
  ``f(x, t_j) = x / sqrt(ab_j) - sqrt(1 - ab_j) / sqrt(ab_j) F(x, t_j, s)`` = ``c_skip x + c_out F`` with
  ``c_skip = 1 / sqrt(ab_j)``, ``c_out = -sqrt((1 - ab_j) / ab_j)``: the x0-estimate of an eps-network ``F``.
  At the clean end ``c_skip = 1, c_out = 0`` (``f(x, t_n) = x`` exactly). ``F`` has the teacher's architecture
  and inputs, so it can start as a copy of the teacher (then ``f`` starts as the teacher's one-step estimate).
  It is trained by consistency distillation against DDIM steps of the teacher (Song et al. Alg. 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from diffagents.diffusion import (
    ConsistencySampler,
    consistency_scalings,
    karras_sigmas,
    sample_loop,
    split_prediction,
)
from diffagents.diffusion.schedules import NoiseSchedule


def karras_pair_levels(n_scales: int, index: torch.Tensor, sigma_min: float, sigma_max: float, rho: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjacent sigmas ``(sigma_i, sigma_{i+1})`` (``sigma_i > sigma_{i+1}``) of the ``n_scales``-point Karras
    grid (Karras et al. 2022, Eq. 5) for integer ``index`` in ``[0, n_scales - 2]``."""
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    i = index.to(torch.float32)
    t = (hi + i / (n_scales - 1) * (lo - hi)) ** rho
    t2 = (hi + (i + 1) / (n_scales - 1) * (lo - hi)) ** rho
    return t, t2


def ct_discretization(progress: float, s0: int, s1: int) -> int:
    """Consistency-training schedule ``N(k)`` (Song et al. 2023, App. C):
    ``ceil(sqrt(k/K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1`` at training progress ``k/K`` in [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    return int(math.ceil(math.sqrt(p * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1)


class ConsistencyActionPolicy(nn.Module):
    """Consistency policy over flat actions in [-1, 1] (CPQL's actor).

    Args:
        denoiser: network ``F(x, t, s) -> (B, act_dim)`` (e.g. :class:`diffagents.nn.MLPDenoiser`).
        act_dim: action size.
        sigma_min / sigma_max / sigma_data / rho: the Karras noise range and data scale (CPQL: 0.002, 80, 0.5, 7).
        sampler_steps: consistency sampling steps (1 = one-step, CPQL's ``onestep``); the visited sigmas are the
            first ``sampler_steps`` points of a ``sampler_steps + 1``-point Karras grid.
        clip_sample: clip the estimate to ``[-c, c]`` while sampling (CPQL's ``clip_denoised``).
    """

    def __init__(self, denoiser: nn.Module, act_dim: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 sigma_data: float = 0.5, rho: float = 7.0, sampler_steps: int = 1,
                 clip_sample: float | None = 1.0) -> None:
        super().__init__()
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"sigma_min/sigma_max: expected 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.denoiser = denoiser
        self.act_dim = act_dim
        self.sigma_min, self.sigma_max, self.sigma_data, self.rho = sigma_min, sigma_max, sigma_data, rho
        self.clip_sample = clip_sample
        self.sampler = self.make_sampler(sampler_steps)

    def make_sampler(self, steps: int) -> ConsistencySampler:
        """A :class:`ConsistencySampler` visiting ``steps`` Karras sigmas from ``sigma_max``."""
        if steps < 1:
            raise ValueError(f"sampler_steps: expected >= 1, got {steps}")
        sigmas = karras_sigmas(steps + 1, self.sigma_min, self.sigma_max, self.rho)[:steps]
        return ConsistencySampler(sigmas, sigma_min=self.sigma_min, clip_sample=self.clip_sample)

    def set_sampler(self, steps: int) -> None:
        self.sampler = self.make_sampler(steps)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, obs: torch.Tensor | None) -> torch.Tensor:
        """The consistency function ``f(x, sigma, s)`` (no clipping: ``f(x, sigma_min) = x`` exactly)."""
        sigma = sigma.to(x.dtype).expand(x.shape[0]) if sigma.ndim == 0 else sigma.to(x.dtype)
        c_skip, c_out = consistency_scalings(sigma, self.sigma_min, self.sigma_data)
        c_in = 1.0 / torch.sqrt(sigma**2 + self.sigma_data**2)
        shape = (-1,) + (1,) * (x.ndim - 1)
        out = self.denoiser(x * c_in.view(shape), 250.0 * torch.log(sigma + 1e-44), obs)
        return c_skip.view(shape) * x + c_out.view(shape) * out

    def sample(self, obs: torch.Tensor, *, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """One action per observation row, ``(B, act_dim)`` in [-1, 1]; differentiable when grad is enabled."""
        a = sample_loop(self.denoise, self.sampler, (obs.shape[0], self.act_dim), cond=obs, generator=generator,
                        device=obs.device, dtype=obs.dtype, temperature=temperature)
        return a.clamp(-1.0, 1.0)

    def sample_candidates(self, obs: torch.Tensor, n: int, *, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` actions per observation: ``(obs_rep (B*n, D), actions (B*n, A))``, rows grouped by obs."""
        obs_rep = obs.repeat_interleave(n, dim=0)  # (B*n, D)
        return obs_rep, self.sample(obs_rep, generator=generator)

    def consistency_loss(self, actions: torch.Tensor, obs: torch.Tensor, target: ConsistencyActionPolicy,
                         n_scales: int, *, weighting: str = "karras", generator: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Consistency-training loss (Song et al. 2023, Alg. 3; CPQL's ``consistency_losses``).

        With ``i ~ U{0..N-2}`` and one ``z ~ N(0, I)``: ``L = lambda(sigma_i) ||f_theta(a + sigma_i z, sigma_i) -
        f_target(a + sigma_{i+1} z, sigma_{i+1})||^2`` (the Euler step of the ODE with the one-sample score
        estimate lands exactly on ``a + sigma_{i+1} z``). ``lambda = 1/sigma^2 + 1/sigma_data^2`` ("karras", the
        CPQL default) or 1 ("uniform").

        Returns:
            ``(consistency loss, stats)``; ``stats["recon_loss"]`` is ``lambda ||f_theta - a||^2``, the term the
            official CPQL code actually optimises (its ``terms["loss"]``).
        """
        if n_scales < 2:
            raise ValueError(f"n_scales: expected >= 2, got {n_scales}")
        b = actions.shape[0]
        idx = torch.randint(0, n_scales - 1, (b,), device=actions.device, generator=generator)
        t, t2 = karras_pair_levels(n_scales, idx, self.sigma_min, self.sigma_max, self.rho)
        t, t2 = t.to(actions.dtype), t2.to(actions.dtype)
        z = torch.randn(actions.shape, device=actions.device, dtype=actions.dtype, generator=generator)
        shape = (-1,) + (1,) * (actions.ndim - 1)
        pred = self.denoise(actions + t.view(shape) * z, t, obs)
        with torch.no_grad():
            tgt = target.denoise(actions + t2.view(shape) * z, t2, obs)
        if weighting == "karras":
            w = 1.0 / t**2 + 1.0 / self.sigma_data**2
        elif weighting == "uniform":
            w = torch.ones_like(t)
        else:
            raise ValueError(f"weighting: expected 'karras' or 'uniform', got {weighting!r}")
        cons = ((pred - tgt) ** 2).flatten(1).mean(1) * w  # (B,)
        recon = ((pred - actions) ** 2).flatten(1).mean(1) * w  # (B,)
        return cons.mean(), {"consistency_loss": cons.mean().detach(), "recon_loss": recon.mean()}


class DistilledConsistencyPolicy(nn.Module):
    """A consistency student on the discrete levels of a VP teacher (see the module docstring).

    Args:
        denoiser: the student network ``F(x_t, t, cond)`` (same signature and inputs as the teacher's eps-net).
        schedule: the teacher's noise schedule.
        levels: the teacher's levels ``t_0 > ... > t_{n-1}`` the student is defined on (DDIM timesteps).
        event_shape: shape of one sample, ``(A,)`` for actions or ``(Tp, A)`` for chunks.
        clip_sample: clip samples to ``[-c, c]``.
    """

    levels: torch.Tensor
    sqrt_ab: torch.Tensor
    sqrt_1mab: torch.Tensor

    def __init__(self, denoiser: nn.Module, schedule: NoiseSchedule, levels: Sequence[int],
                 event_shape: Sequence[int], *, clip_sample: float | None = 1.0) -> None:
        super().__init__()
        levels = [int(t) for t in levels]
        if not levels or any(b >= a for a, b in zip(levels, levels[1:])) or levels[-1] < 0:
            raise ValueError(f"levels: expected a strictly decreasing list of levels >= 0, got {levels}")
        self.denoiser = denoiser
        self.event_shape = tuple(int(d) for d in event_shape)
        self.clip_sample = clip_sample
        ab = [schedule.alpha_bar(t) for t in levels] + [1.0]  # + the clean end (t_n = -1)
        self.register_buffer("levels", torch.tensor(levels + [-1], dtype=torch.float32), persistent=False)
        self.register_buffer("sqrt_ab", torch.tensor([math.sqrt(a) for a in ab]), persistent=False)
        self.register_buffer("sqrt_1mab", torch.tensor([math.sqrt(1.0 - a) for a in ab]), persistent=False)

    @property
    def n_levels(self) -> int:
        """Number ``n`` of noisy levels (index ``n`` is the clean end)."""
        return int(self.levels.shape[0]) - 1

    def _view(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v.to(x.dtype).view((-1,) + (1,) * (x.ndim - 1))

    def forward(self, x: torch.Tensor, j: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """``f(x, t_j, cond)`` for integer level indices ``j`` of shape ``(B,)`` in ``[0, n]``."""
        a, s = self._view(self.sqrt_ab[j], x), self._view(self.sqrt_1mab[j], x)
        f = (x - s * self.denoiser(x, self.levels[j].to(x.dtype), cond)) / a
        clean = (j == self.n_levels).view((-1,) + (1,) * (x.ndim - 1))
        return torch.where(clean, x, f)

    def ddim_step(self, teacher: nn.Module, prediction_type: str, x: torch.Tensor, j: torch.Tensor,
                  cond: torch.Tensor | None) -> torch.Tensor:
        """One deterministic DDIM step (Song et al. 2021, Eq. 12 with eta = 0) of the teacher's PF-ODE from level
        ``t_j`` to ``t_{j+1}`` per row (to clean data when ``j = n - 1``), with the teacher's x0 clipping.
        Identical to :class:`diffagents.diffusion.DDIMSampler` on the same levels."""
        a, s = self._view(self.sqrt_ab[j], x), self._view(self.sqrt_1mab[j], x)
        out = teacher(x, self.levels[j].to(x.dtype), cond)
        x0, eps = split_prediction(out, x, a, s, prediction_type)
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
            eps = (x - a * x0) / s
        a2, s2 = self._view(self.sqrt_ab[j + 1], x), self._view(self.sqrt_1mab[j + 1], x)
        return a2 * x0 + s2 * eps

    def sample(self, cond: torch.Tensor, *, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """One-step sampling ``f(z, t_0)`` with ``z ~ N(0, I)``, shape ``(B, *event_shape)``, clipped."""
        if noise is None:
            noise = torch.randn((cond.shape[0], *self.event_shape), device=cond.device, dtype=cond.dtype,
                                generator=generator)
        j = torch.zeros(noise.shape[0], dtype=torch.long, device=noise.device)
        out = self(noise, j, cond)
        return out if self.clip_sample is None else out.clamp(-self.clip_sample, self.clip_sample)

    def distillation_loss(self, target: DistilledConsistencyPolicy, teacher: nn.Module, prediction_type: str,
                          x0: torch.Tensor, cond: torch.Tensor | None,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Consistency distillation (Song et al. 2023, Alg. 2) with squared L2 distance:
        ``||f_theta(x_j, t_j) - f_target(DDIM_teacher(x_j, t_j -> t_{j+1}), t_{j+1})||^2``, ``j ~ U{0..n-1}``,
        ``x_j = sqrt(ab_j) x0 + sqrt(1 - ab_j) z``. At ``j = n - 1`` the target is the teacher's clean estimate
        (boundary condition), which anchors the chain."""
        b = x0.shape[0]
        j = torch.randint(0, self.n_levels, (b,), device=x0.device, generator=generator)
        z = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_j = self._view(self.sqrt_ab[j], x0) * x0 + self._view(self.sqrt_1mab[j], x0) * z
        with torch.no_grad():
            x_next = self.ddim_step(teacher, prediction_type, x_j, j, cond)
            tgt = target(x_next, j + 1, cond)
            if self.clip_sample is not None:  # the teacher's clipped ODE ends in [-c, c]
                tgt = tgt.clamp(-self.clip_sample, self.clip_sample)
        pred = self(x_j, j, cond)
        err = pred - tgt
        if self.clip_sample is not None:  # beyond the bound on the target's side, sampling's clip makes it exact
            c = self.clip_sample
            err = torch.where(((tgt >= c) & (pred >= c)) | ((tgt <= -c) & (pred <= -c)), torch.zeros_like(err), err)
        w = self.sqrt_ab[j].to(x0.dtype) ** 2  # (B,)
        loss = (w * (err**2).flatten(1).mean(1)).mean()
        return loss, {"distill_loss": loss.detach()}
