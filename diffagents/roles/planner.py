"""Role: a diffusion model over trajectory windows ``(B, H, D)`` used as a planner (survey Sec. 4.1).

Diffuser (Janner et al. 2022) diffuses ``[actions, states]`` per step and conditions by inpainting the current
state at ``h = 0`` (and a goal state at ``h = H - 1`` in Maze2D); Decision Diffuser (Ajay et al. 2023) diffuses
states only, conditions on returns with classifier-free guidance and recovers actions by inverse dynamics.
This role holds the denoiser, the process and the act-time sampler; agents choose the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from diffagents.diffusion import GaussianDiffusion, Guide, make_sampler, sample_loop
from diffagents.diffusion.samplers import DiscreteSampler
from diffagents.guidance import Inpaint


class TrajectoryPlanner(nn.Module):
    """Diffusion planner over windows of ``horizon`` steps with ``transition_dim`` features.

    Args:
        denoiser: ``(x_t (B, H, D), t, cond, cond_mask) -> (B, H, D)`` (e.g. :class:`diffagents.nn.TemporalUNet`).
        diffusion: the forward process.
        horizon: planning horizon H.
        transition_dim: features per step D.
        state_slice: where the state lives inside a step's features (``slice(act_dim, None)`` for Diffuser,
            ``slice(0, None)`` for Decision Diffuser).
        loss_weights: optional ``(H, D)`` per-element loss weights (Diffuser's ``action_weight`` on ``h = 0``).
        sampler / num_inference_steps / clip_sample: act-time sampler settings.
    """

    loss_weights: torch.Tensor | None

    def __init__(self, denoiser: nn.Module, diffusion: GaussianDiffusion, horizon: int, transition_dim: int, *,
                 state_slice: slice, loss_weights: torch.Tensor | None = None, sampler: str = "ddpm",
                 num_inference_steps: int | None = None, clip_sample: float | None = None,
                 **sampler_kwargs: Any) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.diffusion = diffusion
        self.horizon = horizon
        self.transition_dim = transition_dim
        self.state_slice = state_slice
        self.clip_sample = clip_sample
        self.register_buffer("loss_weights", loss_weights, persistent=False)
        self.sampler: DiscreteSampler = make_sampler(sampler, diffusion.schedule, num_inference_steps,
                                                     prediction_type=diffusion.prediction_type,
                                                     clip_sample=clip_sample, **sampler_kwargs)

    def set_sampler(self, sampler: str, num_inference_steps: int | None = None, **kwargs: Any) -> None:
        self.sampler = make_sampler(sampler, self.diffusion.schedule, num_inference_steps,
                                    prediction_type=self.diffusion.prediction_type, clip_sample=self.clip_sample,
                                    **kwargs)

    def condition(self, shape: tuple[int, ...], states: torch.Tensor, *, first: int = 0,
                  goal: torch.Tensor | None = None, goal_dims: slice | None = None) -> Inpaint:
        """Inpainting of the observed states at steps ``first..first+K-1`` (``states`` is ``(B, K, S)`` or
        ``(B, S)``) and optionally of ``goal`` (``(B, G)``) into ``goal_dims`` of the state at ``h = H - 1``."""
        if states.ndim == 2:
            states = states[:, None]  # (B, 1, S)
        mask = torch.zeros(shape, dtype=torch.bool, device=states.device)
        values = torch.zeros(shape, dtype=states.dtype, device=states.device)
        k = states.shape[1]
        mask[:, first:first + k, self.state_slice] = True
        values[:, first:first + k, self.state_slice] = states
        if goal is not None:
            dims = goal_dims or slice(0, goal.shape[-1])
            start = self.state_slice.start or 0
            gd = slice(start + (dims.start or 0), start + dims.stop)
            mask[:, -1, gd] = True
            values[:, -1, gd] = goal
        return Inpaint(mask, values)

    def loss(self, x0: torch.Tensor, *, inpaint: Inpaint | None = None, cond: torch.Tensor | None = None,
             mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Denoising loss on windows; ``mask`` is ``(B, H)`` (1 = real step) and broadcast over features."""
        weights = self.loss_weights
        m = None if mask is None else mask[..., None].expand_as(x0)
        return self.diffusion.loss(self.denoiser, x0, cond, weights=weights, mask=m,
                                   inpaint=None if inpaint is None else inpaint.apply)

    def plan(self, batch_size: int, inpaint: Inpaint, *, cond: torch.Tensor | None = None,
             denoiser: Any = None, guides: Sequence[Guide] = (), generator: torch.Generator | None = None,
             x_init: torch.Tensor | None = None, start_index: int = 0, device: torch.device | str = "cpu",
             temperature: float = 1.0) -> torch.Tensor:
        """Sample ``(B, H, D)`` plans with ``inpaint`` held fixed (applied last, after any other guide)."""
        return sample_loop(denoiser or self.denoiser, self.sampler, (batch_size, self.horizon, self.transition_dim),
                           cond=cond, guides=[*guides, inpaint], generator=generator, x_init=x_init,
                           start_index=start_index, device=device, temperature=temperature)

    def renoise(self, plan: torch.Tensor, start_index: int, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        """Warm start: noise a (shifted) previous plan to level ``timesteps[start_index]`` (q(x_t | x_0))."""
        level = int(self.sampler.timesteps[start_index])
        t = torch.full((plan.shape[0],), level, device=plan.device, dtype=torch.long)
        noise = torch.randn(plan.shape, device=plan.device, dtype=plan.dtype, generator=generator)
        return self.diffusion.q_sample(plan, t, noise)
