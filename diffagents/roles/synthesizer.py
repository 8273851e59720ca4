"""Role: a diffusion model over whole transitions ``x = [s, a, r, s', terminal]`` (SynthER, Lu et al. 2023).

The sample *is* data: a generated row is split back into a transition and mixed into the replay data of a
standard RL learner. The role holds the denoiser and the generative process and draws ``(B, D)`` samples in
the normalised space; :class:`diffagents.agents.SynthER` owns the normaliser, the layout and the data plumbing.

Two processes are supported:

* ``GaussianDiffusion`` (discrete VP / cosine schedule, eps-prediction, :func:`GaussianDiffusion.loss`) sampled
  with DDPM, DDIM or DPM-Solver++ from :mod:`diffagents.diffusion`;
* :class:`~diffagents.diffusion.edm.EDMProcess`, the Elucidated Diffusion Model SynthER actually uses (Karras et al. 2022, "EDM"):
  preconditioned denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`` (Table 1), log-normal training
  noise levels with the loss weight ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``, and the
  stochastic Heun sampler of Alg. 2 (:class:`~diffagents.diffusion.edm.EDMHeunSampler`). SynthER's settings: ``sigma_data = 1`` (the data
  are standard-normalised), 128 sampling steps, ``S_churn = 80``, ``S_tmin = 0.05``, ``S_tmax = 50``,
  ``S_noise = 1.003`` (``lucidrains``' ``ElucidatedDiffusion`` defaults).

Both samplers follow the :class:`diffagents.diffusion.Sampler` protocol, so :func:`sample_loop` and the guides
of :mod:`diffagents.guidance` (e.g. :class:`~diffagents.guidance.Inpaint` for ``(s, a)``-conditioned sampling)
work unchanged with either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from diffagents.diffusion import (
    GaussianDiffusion,
    Guide,
    make_sampler,
    sample_loop,
)
from diffagents.diffusion.edm import EDMHeunSampler, EDMProcess


class TransitionSynthesizer(nn.Module):
    """Unconditional diffusion model over flat, normalised transition vectors ``(B, D)``.

    Args:
        denoiser: network ``(x, t, cond) -> (B, D)`` (SynthER: :class:`diffagents.nn.ResidualMLPDenoiser`).
        process: :class:`GaussianDiffusion` (discrete) or :class:`EDMProcess`.
        x_dim: ``D``, the transition size.
        sampler: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` for a discrete process; ignored (Heun) for EDM.
        num_inference_steps: sampling steps (default: all discrete levels; 128 for EDM).
        clip_sample: optional clipping of the denoised estimate.
        **sampler_kwargs: extra sampler arguments (EDM: ``rho``, ``s_churn``, ``s_tmin``, ``s_tmax``,
            ``s_noise``; DDIM: ``eta``; DPM-Solver++: ``order``).
    """

    def __init__(self, denoiser: nn.Module, process: GaussianDiffusion | EDMProcess, x_dim: int, *,
                 sampler: str = "ddpm", num_inference_steps: int | None = None, clip_sample: float | None = None,
                 **sampler_kwargs: Any) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.process = process
        self.x_dim = x_dim
        self.sampler_name = sampler
        self.num_inference_steps = num_inference_steps
        self.clip_sample = clip_sample
        self.sampler_kwargs = dict(sampler_kwargs)
        self.make_sampler()  # validate the settings now rather than at the first sample

    @property
    def is_edm(self) -> bool:
        return isinstance(self.process, EDMProcess)

    def make_sampler(self, num_inference_steps: int | None = None) -> Any:
        """A fresh sampler (its own multistep state) with ``num_inference_steps`` (default: the configured)."""
        steps = num_inference_steps or self.num_inference_steps
        if isinstance(self.process, EDMProcess):
            p = self.process
            return EDMHeunSampler(steps or 128, sigma_min=p.sigma_min, sigma_max=p.sigma_max,
                                  clip_sample=self.clip_sample, **self.sampler_kwargs)
        return make_sampler(self.sampler_name, self.process.schedule, steps,
                            prediction_type=self.process.prediction_type, clip_sample=self.clip_sample,
                            **self.sampler_kwargs)

    def loss(self, x0: torch.Tensor, *, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The process's denoising loss on a batch of normalised transitions ``(B, D)``."""
        if isinstance(self.process, EDMProcess):
            return self.process.loss(self.denoiser, x0, generator=generator)
        return self.process.loss(self.denoiser, x0, generator=generator)

    def denoise_fn(self, net: nn.Module | None = None) -> Any:
        """The callable ``(x, t, cond)`` that :func:`sample_loop` should call (EDM: preconditioned)."""
        model = self.denoiser if net is None else net
        if isinstance(self.process, EDMProcess):
            process = self.process
            return lambda x, t, cond: process.denoise(model, x, t, cond)
        return model

    @torch.no_grad()
    def sample(self, n: int, *, net: nn.Module | None = None, sampler: Any = None, guides: Sequence[Guide] = (),
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               temperature: float = 1.0) -> torch.Tensor:
        """Draw ``n`` normalised transitions, shape ``(n, D)``.

        Args:
            n: number of samples (one batch; callers chunk large requests).
            net: the network to use instead of ``denoiser`` (e.g. the EMA copy).
            sampler: a sampler from :meth:`make_sampler` (default: a fresh one with the configured steps).
            guides: guidance hooks (e.g. :class:`~diffagents.guidance.Inpaint` on the ``(s, a)`` entries).
            generator: RNG for all noise.
            device: device of the samples.
            temperature: noise scale (1 = the trained process).
        """
        smp = sampler if sampler is not None else self.make_sampler()
        return sample_loop(self.denoise_fn(net), smp, (n, self.x_dim), guides=guides, generator=generator,
                           device=device, dtype=torch.float32, temperature=temperature)
