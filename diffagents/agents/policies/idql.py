"""IDQL (Hansen-Estruch et al. 2023): Implicit Q-learning critics with a diffusion behaviour policy.

Critics are trained exactly as IQL (Kostrikov et al. 2022): an expectile value function
``L_V = E[|tau - 1(u < 0)| u^2]``, ``u = min_i Q'_i(s, a) - V(s)`` (IQL Eq. 5) and twin Q-functions regressed
on ``r + gamma (1 - terminated) V(s')`` (Eq. 6). The actor is a diffusion model of the behaviour policy (an
LN-ResNet noise net, VP schedule with T = 5, dropout 0.1, EMA) trained by plain denoising, separately from the
critics. At act time N actions are sampled from the actor and one is re-selected with the critic-derived
weights of the implicit policy: IDQL Sec. 4 shows the expectile critic defines
``pi_imp(a|s) ~ mu(a|s) |tau - 1(Q(s,a) < V(s))| / |Q(s,a) - V(s)|``; the official code samples with the
bounded weights ``|tau - 1(A < 0)|`` ("expectile" here). ``selection="argmax"`` is IDQL-A (greedy in Q).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffagents.core.config import AgentConfig
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.nn import ResidualMLPDenoiser, TwinQ, ValueMLP
from diffagents.roles import DiffusionActionPolicy, scored_candidates
from diffagents.training import EMA, soft_update


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL Eq. (5): asymmetric squared loss ``|tau - 1(u < 0)| u^2`` averaged over the batch."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


@dataclass(kw_only=True)
class IDQLConfig(AgentConfig):
    """Hyperparameters of :class:`IDQL` (official ``train_ddpm_iql_offline.py`` defaults, batch 256 on CPU)."""

    lr_schedule: str = "cosine"
    n_diffusion_steps: int = 5
    schedule: str = "vp"
    actor_width: int = 256
    actor_blocks: int = 3
    actor_dropout: float = 0.1
    time_dim: int = 64
    critic_hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    expectile: float = 0.7
    gamma: float = 0.99
    tau: float = 0.005
    ema_decay: float = 0.999
    n_candidates: int = 64
    selection: str = "expectile"
    sampler: str = "ddpm"
    sampler_steps: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(0.5 <= self.expectile < 1.0, "expectile", "in [0.5, 1)", self.expectile)
        self._check(self.n_candidates >= 1, "n_candidates", ">= 1", self.n_candidates)
        self._check(self.selection in ("expectile", "argmax"), "selection", "'expectile' or 'argmax'",
                    self.selection)
        self._check(self.sampler in ("ddpm", "ddim", "dpm"), "sampler", "'ddpm', 'ddim' or 'dpm'", self.sampler)


@register_agent
class IDQL(OfflineAgent):
    """IDQL as an SB3 ``BaseAlgorithm`` trained offline from a Minari dataset."""

    config_class = IDQLConfig
    distillable = True
    sampler_swappable = True

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(actor_width=32, actor_blocks=1, critic_hidden=(32, 32), batch_size=16, n_candidates=4)
    acting_fields = OfflineAgent.acting_fields | {"n_candidates", "selection", "sampler", "sampler_steps"}
    config: IDQLConfig

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        c = self.config
        diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                      prediction_type="eps")
        denoiser = ResidualMLPDenoiser(x_dim=act_dim, cond_dim=obs_dim, width=c.actor_width, n_blocks=c.actor_blocks,
                                       time_dim=c.time_dim, activation=c.activation, dropout=c.actor_dropout)
        actor = DiffusionActionPolicy(denoiser, diffusion, act_dim, sampler=c.sampler,
                                      num_inference_steps=c.sampler_steps)
        critic = TwinQ(obs_dim, act_dim, hidden=c.critic_hidden, activation=c.activation)
        self.ema = EMA(actor, decay=c.ema_decay)
        return {"actor": actor, "critic": critic, "critic_target": copy.deepcopy(critic).requires_grad_(False),
                "value": ValueMLP(obs_dim, hidden=c.critic_hidden, activation=c.activation)}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        obs, action = batch["obs"], batch["action"]
        critic, value = self.nets["critic"], self.nets["value"]
        critic_target: TwinQ = self.nets["critic_target"]  # type: ignore[assignment]
        with torch.no_grad():
            q_t = critic_target.q_min(obs, action)
        v_loss = expectile_loss(q_t - value(obs), c.expectile)
        self.updaters["value"].step(v_loss)
        with torch.no_grad():
            target = batch["reward"] + (1.0 - batch["terminated"]) * c.gamma * value(batch["next_obs"])
        q1, q2 = critic(obs, action)
        q_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.updaters["critic"].step(q_loss)
        actor: DiffusionActionPolicy = self.nets["actor"]  # type: ignore[assignment]
        bc_loss, _ = actor.loss(action, obs)
        self.updaters["actor"].step(bc_loss)
        assert self.ema is not None
        self.ema.update(self.nets["actor"], self.num_timesteps)
        soft_update(critic_target, critic, c.tau)
        return {"value_loss": v_loss.detach(), "critic_loss": q_loss.detach(), "bc_loss": bc_loss.detach(),
                "q_mean": q1.detach().mean()}

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        assert self.ema is not None
        actor: DiffusionActionPolicy = self.ema.model  # type: ignore[assignment]
        n = self.config.n_candidates
        gen = self.eval_generator() if deterministic else None
        scored = self._graphed("act", partial(scored_candidates, actor.sample, self.nets["critic_target"], n=n),
                               obs, generator=gen, key=(actor.sampler,))
        if n == 1:
            return scored[0], state
        cand, q = scored[0], scored[1].view(-1, n)  # (B*n, A), (B, n)
        b = q.shape[0]
        if deterministic or self.config.selection == "argmax":
            idx = q.argmax(dim=1)
        else:
            adv = q - self.nets["value"](obs).view(-1, 1)
            weights = torch.where(adv > 0, self.config.expectile, 1.0 - self.config.expectile)
            idx = torch.multinomial(weights, 1).squeeze(1)
        return cand.view(b, n, -1)[torch.arange(b, device=cand.device), idx], state
