"""Role: a conditional diffusion model over action chunks, ``A_t ~ pi(A_t | O_t)`` (Chi et al. 2023, Sec. 3).

Diffusion Policy predicts a sequence of ``Tp`` actions ``(B, Tp, A)`` in [-1, 1] conditioned on a global vector
(the flattened, normalised observation history of ``To`` steps), with a 1-D temporal U-Net (FiLM conditioning)
or a transformer over the time axis of the chunk. The agent executes ``Ta`` of the ``Tp`` actions (receding
horizon) before sampling the next chunk.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffagents.diffusion import GaussianDiffusion, make_sampler, sample_loop
from diffagents.diffusion.samplers import DiscreteSampler


class ActionChunkPolicy(nn.Module):
    """Diffusion policy over action chunks ``(B, horizon, act_dim)``.

    Args:
        denoiser: ``(x_t (B, H, A), t (B,), cond (B, C)) -> (B, H, A)`` (e.g. :class:`diffagents.nn.TemporalUNet`
            or :class:`diffagents.nn.DiT1D` built with ``cond_dim = C``).
        diffusion: the forward process (schedule + prediction type).
        horizon: chunk length ``Tp``.
        act_dim: action size ``A``.
        sampler: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` used by :meth:`sample`.
        num_inference_steps: sampler steps (default: all training levels).
        clip_sample: x0 clipping bound (actions live in [-1, 1]; Diffusion Policy's ``clip_sample=True``).
    """

    def __init__(self, denoiser: nn.Module, diffusion: GaussianDiffusion, horizon: int, act_dim: int, *,
                 sampler: str = "ddim", num_inference_steps: int | None = None, clip_sample: float | None = 1.0,
                 **sampler_kwargs: Any) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.diffusion = diffusion
        self.horizon = horizon
        self.act_dim = act_dim
        self.clip_sample = clip_sample
        self.sampler: DiscreteSampler = make_sampler(sampler, diffusion.schedule, num_inference_steps,
                                                     prediction_type=diffusion.prediction_type,
                                                     clip_sample=clip_sample, **sampler_kwargs)

    @property
    def event_shape(self) -> tuple[int, int]:
        """Shape of one sample: ``(horizon, act_dim)``."""
        return (self.horizon, self.act_dim)

    def set_sampler(self, sampler: str, num_inference_steps: int | None = None, **kwargs: Any) -> None:
        """Switch the act-time sampler (e.g. DDPM with all 100 levels, as in the paper)."""
        self.sampler = make_sampler(sampler, self.diffusion.schedule, num_inference_steps,
                                    prediction_type=self.diffusion.prediction_type, clip_sample=self.clip_sample,
                                    **kwargs)

    def loss(self, actions: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Denoising loss ``E ||eps - eps_theta(A_k, k, O)||^2`` over whole chunks (Chi et al. 2023, Eq. 5)."""
        return self.diffusion.loss(self.denoiser, actions, cond)

    def sample(self, cond: torch.Tensor, *, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """One chunk per condition row: ``(B, horizon, act_dim)`` in [-1, 1]."""
        a = sample_loop(self.denoiser, self.sampler, (cond.shape[0], self.horizon, self.act_dim), cond=cond,
                        generator=generator, device=cond.device, dtype=cond.dtype, temperature=temperature)
        return a.clamp(-1.0, 1.0)
