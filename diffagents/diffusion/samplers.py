"""Samplers for discrete-time Gaussian diffusion, following the diffusers calling pattern.

``set_timesteps(n)`` picks the levels and precomputes every coefficient; ``step(model_output, i, x)`` returns
``(x_prev, x0_hat)`` and ``advance`` only ``x_prev`` (see :mod:`diffagents.diffusion.discrete`). Without
``clip_sample`` a step of DDIM costs two kernels, DDPM three (one draws and adds the noise) and DPM-Solver++(2M)
four, which keeps the sampler's overhead small next to a batch-1 MLP forward
(``benchmarks/sampler_overhead.py``).

Implemented:

* :class:`DDPMSampler`: ancestral sampling with the posterior q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Eq. 7),
  generalised to strided timesteps.
* :class:`DDIMSampler`: Song et al. 2021 (DDIM), Eq. (12), with ``eta`` interpolating DDIM (0) and DDPM (1).
* :class:`~diffagents.diffusion.dpm_solver.DPMSolverPPSampler`: DPM-Solver++ (Lu et al. 2022), multistep
  data-prediction solver of order 1, 2 (2M, Alg. 2) or 3 (3M), with lower-order warm-up and final steps.
"""

from __future__ import annotations

import math

import torch

from diffagents.diffusion.discrete import DiscreteSampler, add_noise, level_tensors, select_timesteps
from diffagents.diffusion.dpm_solver import DPMSolverPPSampler
from diffagents.diffusion.schedules import NoiseSchedule

__all__ = [
    "DDIMSampler", "DDPMSampler", "DPMSolverPPSampler", "DiscreteSampler", "SAMPLERS", "level_tensors",
    "make_sampler", "select_timesteps",
]


class DDPMSampler(DiscreteSampler):
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) with the posterior variance ``beta~_t`` (Eq. 7).

    For a strided subset of levels the step from ``t`` to ``s < t`` uses ``beta = 1 - ab_t / ab_s``, the
    exact posterior of the sub-chain. No noise is added on the last step.
    """

    def _precompute(self, ab: list[float], ab_prev: list[float]) -> None:
        self._c0, self._ct, self._std = [], [], []
        self._lin = []  # posterior mean = px * x + po * out
        for i, (a, ap) in enumerate(zip(ab, ab_prev)):
            beta = 1.0 - a / ap
            c0 = math.sqrt(ap) * beta / (1.0 - a)
            ct = math.sqrt(1.0 - beta) * (1.0 - ap) / (1.0 - a)
            self._c0.append(c0)
            self._ct.append(ct)
            self._std.append(math.sqrt(max((1.0 - ap) / (1.0 - a) * beta, 0.0)))
            rx, ro = self._x0_lin[i]
            self._lin.append((c0 * rx + ct, c0 * ro))
            self._scalar_values.append((c0 * rx + ct,))

    def advance(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        if self.clip_sample is None:
            mean = self._affine(model_output, i, x)
        else:
            x0, _ = self._x0_eps(model_output, i, x)
            mean = torch.add(x0 * self._c0[i], x, alpha=self._ct[i])
        return add_noise(mean, self._std[i] * temperature, generator)


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
        self._lin = []  # deterministic part = px * x + po * out
        for i, (a, ap) in enumerate(zip(ab, ab_prev)):
            sigma = self.eta * math.sqrt(max((1 - ap) / (1 - a) * (1 - a / ap), 0.0))
            cx0, ceps = math.sqrt(ap), math.sqrt(max(1.0 - ap - sigma**2, 0.0))
            self._cx0.append(cx0)
            self._ceps.append(ceps)
            self._sigma.append(sigma)
            (rx, ro), (ex, eo) = self._x0_lin[i], self._eps_lin[i]
            self._lin.append((cx0 * rx + ceps * ex, cx0 * ro + ceps * eo))
            self._scalar_values.append((cx0 * rx + ceps * ex,))

    def advance(self, model_output, i, x, generator=None, temperature=1.0):  # type: ignore[no-untyped-def]
        if self.clip_sample is None:
            out = self._affine(model_output, i, x)
        else:
            x0, eps = self._x0_eps(model_output, i, x)
            out = torch.add(x0 * self._cx0[i], eps, alpha=self._ceps[i])
        sigma = self._sigma[i]
        return out if sigma == 0.0 else add_noise(out, sigma * temperature, generator)


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
