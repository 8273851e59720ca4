"""Role: a joint multi-agent trajectory planner over ``(B, N, H, D)`` (MADiff, Zhu et al. 2024).

MADiff (Sec. 4.2 and Fig. 2) diffuses the observation trajectories of all ``N`` agents together. Each agent's
trajectory goes through a temporal U-Net (Diffuser's, Janner et al. 2022) and the agents exchange information
by multi-head attention across agents on the U-Net's skip connections and at its bottleneck
(``ConvAttentionDeconv`` in ``zbzhu99/madiff``). Here the U-Net weights are shared between agents; an optional
learned agent-id embedding, added to the time embedding, lets agents specialise (without it the denoiser is
permutation-equivariant over agents and works for any ``N``). Conditioning follows Decision Diffuser (Ajay et
al. 2023): the team return enters through a :class:`~diffagents.nn.ConditionEncoder` with classifier-free
dropout to a learned null token (one draw per sample, shared by all its agents, as in MADiff), observed
histories are inpainted, and actions come from inverse dynamics ``a^i_t = f^i(o^i_t, o^i_{t+1})``. The networks
live in the network axis (:class:`~diffagents.nn.JointTemporalUNet`, :class:`~diffagents.nn.AgentInverseDynamics`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffagents.diffusion import GaussianDiffusion, make_sampler, sample_loop
from diffagents.diffusion.samplers import DiscreteSampler
from diffagents.guidance import Inpaint


class JointPlanner(nn.Module):
    """Diffusion planner over joint windows ``(B, N, W, D)`` with ``W = history + horizon``.

    Args:
        denoiser: ``(x (B, N, W, D), t, cond, cond_mask) -> (B, N, W, D)``, e.g. :class:`JointTemporalUNet`.
        diffusion: the forward process.
        window: window length ``W`` (history ``K`` plus the planning horizon).
        n_agents: ``N``.
        obs_dim: ``D``.
        history: ``K`` past steps before the current one (inpainted together with it).
        sampler / num_inference_steps / clip_sample: act-time sampler settings.
    """

    def __init__(self, denoiser: nn.Module, diffusion: GaussianDiffusion, window: int, n_agents: int, obs_dim: int,
                 *, history: int = 0, sampler: str = "ddpm", num_inference_steps: int | None = None,
                 clip_sample: float | None = None) -> None:
        super().__init__()
        if not isinstance(history, int) or history < 0:
            raise ValueError(f"history: expected an int >= 0, got {history!r}")
        if window < history + 2:
            raise ValueError(f"window: expected >= history + 2 = {history + 2}, got {window}")
        self.denoiser, self.diffusion = denoiser, diffusion
        self.window, self.n_agents, self.obs_dim, self.history = window, n_agents, obs_dim, history
        self.clip_sample = clip_sample
        self.sampler: DiscreteSampler = make_sampler(sampler, diffusion.schedule, num_inference_steps,
                                                     prediction_type=diffusion.prediction_type,
                                                     clip_sample=clip_sample)

    def set_sampler(self, sampler: str, num_inference_steps: int | None = None, **kwargs: Any) -> None:
        """Swap the act-time sampler (e.g. DDIM with 15 steps, as MADiff does on SMAC)."""
        self.sampler = make_sampler(sampler, self.diffusion.schedule, num_inference_steps,
                                    prediction_type=self.diffusion.prediction_type, clip_sample=self.clip_sample,
                                    **kwargs)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, W, D)`` of one sample."""
        return self.n_agents, self.window, self.obs_dim

    def condition(self, known: torch.Tensor, agent_mask: torch.Tensor | None = None) -> Inpaint:
        """Inpaint the known steps ``0..K`` (``known``: ``(B, N, K+1, D)``) of the agents where ``agent_mask``
        (bool ``(B, N)``; default all) is True. Other agents' entries are generated (MADiff-D)."""
        b, n, k1, d = known.shape
        if (n, d) != (self.n_agents, self.obs_dim) or k1 != self.history + 1:
            raise ValueError(f"known: expected shape (B, {self.n_agents}, {self.history + 1}, {self.obs_dim}), "
                             f"got {tuple(known.shape)}")
        shape = (b, *self.shape)
        mask = torch.zeros(shape, dtype=torch.bool, device=known.device)
        values = torch.zeros(shape, dtype=known.dtype, device=known.device)
        sel = torch.ones(b, n, dtype=torch.bool, device=known.device) if agent_mask is None else agent_mask
        mask[:, :, :k1] = sel[:, :, None, None]
        values[:, :, :k1] = torch.where(sel[:, :, None, None], known, torch.zeros_like(known))
        return Inpaint(mask, values)

    def loss(self, x0: torch.Tensor, *, inpaint: Inpaint, cond: torch.Tensor | None, valid: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Denoising loss on ``x0`` ``(B, N, W, D)``; ``valid`` (``(B, W)``, 1 = train on this step) is combined
        with "not inpainted" and "not a history step" (MADiff's ``loss_masks``)."""
        steps = torch.arange(self.window, device=x0.device) >= self.history  # (W,)
        m = (valid > 0) & steps[None]  # (B, W)
        mask = (m[:, None, :, None] & ~inpaint.mask).to(x0.dtype)  # (B, N, W, D)
        return self.diffusion.loss(self.denoiser, x0, cond, mask=mask, inpaint=inpaint.apply)

    def plan(self, inpaint: Inpaint, *, cond: torch.Tensor | None = None, denoiser: Any = None,
             generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Sample ``(B, N, W, D)`` joint plans with ``inpaint`` held fixed."""
        b = inpaint.mask.shape[0]
        return sample_loop(denoiser or self.denoiser, self.sampler, (b, *self.shape), cond=cond,  # type: ignore[arg-type]
                           guides=[inpaint], generator=generator, device=inpaint.mask.device,
                           temperature=temperature)
