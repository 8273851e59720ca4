"""Role: a conditional diffusion model over actions, ``a ~ pi(a | s)`` (survey Sec. 4.2).

Diffusion-QL (Wang et al. 2023, Eq. 1), IDQL (Hansen-Estruch et al. 2023) and EDP use it as the actor: actions
are normalised to [-1, 1], the denoiser is conditioned on the (normalised) observation, sampling runs the
reverse chain with x0 clipping to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffagents.diffusion import GaussianDiffusion, make_sampler, sample_loop
from diffagents.diffusion.samplers import DiscreteSampler


class DiffusionActionPolicy(nn.Module):
    """Diffusion policy over a flat action vector.

    Args:
        denoiser: network ``(a_t, t, obs) -> prediction`` (e.g. :class:`diffagents.nn.MLPDenoiser`).
        diffusion: the forward process (schedule + prediction type).
        act_dim: action dimension.
        sampler: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` used by :meth:`sample`.
        num_inference_steps: sampler steps (default: all training levels).
        clip_sample: x0 clipping bound (actions live in [-1, 1]).
    """

    def __init__(self, denoiser: nn.Module, diffusion: GaussianDiffusion, act_dim: int, *, sampler: str = "ddpm",
                 num_inference_steps: int | None = None, clip_sample: float | None = 1.0,
                 **sampler_kwargs: Any) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.diffusion = diffusion
        self.act_dim = act_dim
        self.clip_sample = clip_sample
        self.sampler: DiscreteSampler = make_sampler(sampler, diffusion.schedule, num_inference_steps,
                                                     prediction_type=diffusion.prediction_type,
                                                     clip_sample=clip_sample, **sampler_kwargs)

    def set_sampler(self, sampler: str, num_inference_steps: int | None = None, **kwargs: Any) -> None:
        """Switch the sampler used at act time (e.g. DPM-Solver++ with 3 steps)."""
        self.sampler = make_sampler(sampler, self.diffusion.schedule, num_inference_steps,
                                    prediction_type=self.diffusion.prediction_type, clip_sample=self.clip_sample,
                                    **kwargs)

    def loss(self, actions: torch.Tensor, obs: torch.Tensor, weights: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Behaviour-cloning denoising loss ``E ||eps - eps_theta(a_t, t, s)||^2`` (Diffusion-QL Eq. 2)."""
        return self.diffusion.loss(self.denoiser, actions, obs, weights=weights)

    def sample(self, obs: torch.Tensor, *, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Draw one action per observation row, shape ``(B, act_dim)`` in [-1, 1].

        Gradients flow through the whole chain when called with grad enabled (Diffusion-QL's Q-loss).
        """
        a = sample_loop(self.denoiser, self.sampler, (obs.shape[0], self.act_dim), cond=obs, generator=generator,
                        device=obs.device, dtype=obs.dtype, temperature=temperature)
        return a.clamp(-1.0, 1.0)

    def sample_candidates(self, obs: torch.Tensor, n: int, *, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` actions per observation: returns ``(obs_rep (B*n, D), actions (B*n, A))``, rows grouped by obs."""
        obs_rep = obs.repeat_interleave(n, dim=0)  # (B*n, D)
        return obs_rep, self.sample(obs_rep, generator=generator)


def scored_candidates(sample: Callable[..., torch.Tensor], critic: Any, obs: torch.Tensor, n: int, *,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """``n`` actions per observation from ``sample(obs_rep, generator=...)`` and, when ``n > 1``, their scores
    ``critic.q_min(obs_rep, actions)``: ``(actions (B*n, A), q (B*n,))``, or ``(actions,)`` when ``n == 1``.

    A pure tensor function (no host sync), so the whole candidate step can run as one CUDA graph; the pick
    (:func:`select_candidates`) stays outside, since ``torch.multinomial`` syncs with the host.
    """
    obs_rep = obs.repeat_interleave(n, dim=0)  # (B*n, D)
    actions = sample(obs_rep, generator=generator)
    return (actions, critic.q_min(obs_rep, actions)) if n > 1 else (actions,)


def select_candidates(actions: torch.Tensor, scores: torch.Tensor, n: int, *, deterministic: bool,
                      generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Pick one of ``n`` candidates per observation by score.

    ``deterministic`` takes the argmax; otherwise samples ``softmax(scores / temperature)`` as Diffusion-QL's
    ``sample_action`` does (Wang et al. 2023, official code). ``actions`` is ``(B*n, A)``, ``scores`` ``(B*n,)``.
    """
    b = actions.shape[0] // n
    scores = scores.view(b, n)  # (B, n)
    if deterministic:
        idx = scores.argmax(dim=1)
    else:
        probs = torch.softmax(scores / temperature, dim=1)
        idx = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return actions.view(b, n, -1)[torch.arange(b, device=actions.device), idx]  # (B, A)
