"""Diffusion-QL (Wang, Hunt & Zhou, ICLR 2023): diffusion policies as an expressive policy class for offline RL.

The actor is a conditional DDPM over actions (VP schedule, T = 5, MLP noise net); the loss is
``L = L_bc + eta * L_q`` with ``L_bc`` the denoising loss (Eq. 2) and ``L_q = -Q(s, a~) / E|Q|`` where
``a~ ~ pi_theta(.|s)`` is sampled through the whole reverse chain with gradients (Eq. 3; the official code
normalises by the other critic's mean |Q| and picks the critic at random). Twin critics with target networks
are trained with the EMA actor's next actions (optionally the max over 10 sampled actions, "max-Q backup").
At act time N candidates are sampled and one is chosen by ``softmax(Q)`` (or argmax when deterministic).

``action_approx=True`` gives EDP's variant (Kang et al. 2023): the Q-loss uses the one-step estimate
``x0_hat(a_t, t)`` of a noised dataset action instead of back-propagating through the chain.

Defaults follow the official ``main.py`` gym settings (lr 3e-4 cosine, batch 256, gamma 0.99, tau 0.005,
EMA 0.995 every 5 steps from step 1000, eta 1.0, grad norm 9, 50 candidates) except the activation: ReLU by
default on CPU (the paper's Mish is ~30% slower here; set ``activation="mish"`` for the paper setting).
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
from diffagents.nn import MLPDenoiser, TwinQ
from diffagents.roles import DiffusionActionPolicy, scored_candidates, select_candidates
from diffagents.training import EMA, Updater, soft_update


def normalized_q_loss(q: torch.Tensor, q_other: torch.Tensor) -> torch.Tensor:
    """``-mean(Q) / mean(|Q_other|)`` with the denominator detached (Diffusion-QL Eq. 3, official code).

    The normalisation makes ``eta`` independent of the reward scale: multiplying both critics by c > 0 leaves
    the loss unchanged.
    """
    return -q.mean() / q_other.abs().mean().detach()


@dataclass(kw_only=True)
class DiffusionQLConfig(AgentConfig):
    """Hyperparameters of :class:`DiffusionQL` (Wang et al. 2023, App. C and the official code)."""

    lr_schedule: str = "cosine"
    n_diffusion_steps: int = 5
    schedule: str = "vp"
    hidden: tuple[int, ...] = (256, 256, 256)
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    activation: str = "relu"
    time_dim: int = 16
    eta: float = 1.0
    gamma: float = 0.99
    tau: float = 0.005
    grad_clip: float | None = 9.0
    ema_decay: float = 0.995
    ema_start: int = 1000
    ema_every: int = 5
    max_q_backup: bool = False
    n_backup_samples: int = 10
    n_candidates: int = 50
    action_approx: bool = False
    sampler: str = "ddpm"
    sampler_steps: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.n_diffusion_steps >= 1, "n_diffusion_steps", ">= 1", self.n_diffusion_steps)
        self._check(self.eta >= 0, "eta", ">= 0", self.eta)
        self._check(0 <= self.gamma <= 1, "gamma", "in [0, 1]", self.gamma)
        self._check(0 < self.tau <= 1, "tau", "in (0, 1]", self.tau)
        self._check(self.n_candidates >= 1, "n_candidates", ">= 1", self.n_candidates)
        self._check(self.n_backup_samples >= 1, "n_backup_samples", ">= 1", self.n_backup_samples)
        self._check(self.sampler in ("ddpm", "ddim", "dpm"), "sampler", "'ddpm', 'ddim' or 'dpm'", self.sampler)


@register_agent
class DiffusionQL(OfflineAgent):
    """Diffusion-QL as an SB3 ``BaseAlgorithm`` trained offline from a Minari dataset.

    Example:
        >>> agent = DiffusionQL(env="Pendulum-v1", dataset="diffagents/pendulum/expert-v0")
        >>> agent.learn(20_000, progress_bar=True)
        >>> action, _ = agent.predict(obs, deterministic=True)
    """

    config_class = DiffusionQLConfig
    distillable = True
    sampler_swappable = True

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(hidden=(32, 32), critic_hidden=(32, 32), batch_size=16, n_candidates=4, ema_start=2)
    acting_fields = OfflineAgent.acting_fields | {"n_candidates"}  # its sampler also draws the Q-loss actions
    config: DiffusionQLConfig

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        c = self.config
        diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                      prediction_type="eps")
        denoiser = MLPDenoiser(x_dim=act_dim, cond_dim=obs_dim, hidden=c.hidden, time_dim=c.time_dim,
                               activation=c.activation)
        actor = DiffusionActionPolicy(denoiser, diffusion, act_dim, sampler=c.sampler,
                                      num_inference_steps=c.sampler_steps)
        critic = TwinQ(obs_dim, act_dim, hidden=c.critic_hidden, activation=c.activation)
        critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.ema = EMA(actor, decay=c.ema_decay, start_step=c.ema_start, update_every=c.ema_every)
        return {"actor": actor, "critic": critic, "critic_target": critic_target}

    def _make_updaters(self) -> dict[str, Updater]:
        c = self.config
        return {
            "actor": Updater(self.nets["actor"].parameters(), c.learning_rate, grad_clip=c.grad_clip, name="actor"),
            "critic": Updater(self.nets["critic"].parameters(), c.learning_rate, grad_clip=c.grad_clip,
                              name="critic"),
        }

    @property
    def actor(self) -> DiffusionActionPolicy:
        return self.nets["actor"]  # type: ignore[return-value]

    @property
    def critic(self) -> TwinQ:
        return self.nets["critic"]  # type: ignore[return-value]

    def _target_q(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Bellman target ``r + gamma (1 - terminated) min_i Q'_i(s', a')`` with ``a' ~`` EMA actor."""
        c = self.config
        next_obs = batch["next_obs"]
        assert self.ema is not None
        target_actor: DiffusionActionPolicy = self.ema.model  # type: ignore[assignment]
        with torch.no_grad():
            if c.max_q_backup:
                n = c.n_backup_samples
                obs_rep, act = target_actor.sample_candidates(next_obs, n)
                q1, q2 = self.nets["critic_target"](obs_rep, act)
                target = torch.minimum(q1.view(-1, n).amax(1), q2.view(-1, n).amax(1))
            else:
                q1, q2 = self.nets["critic_target"](next_obs, target_actor.sample(next_obs))
                target = torch.minimum(q1, q2)
            # bootstrap through truncations, not through terminations (docs/integration.md Sec. 3)
            return batch["reward"] + (1.0 - batch["terminated"]) * c.gamma * target

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        obs, action = batch["obs"], batch["action"]
        # critic
        target = self._target_q(batch)
        q1, q2 = self.critic(obs, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.updaters["critic"].step(critic_loss)
        # actor: L = L_bc + eta * L_q
        bc_loss, _ = self.actor.loss(action, obs)
        if c.action_approx:
            t = self.actor.diffusion.sample_timesteps(obs.shape[0], obs.device)
            noise = torch.randn_like(action)
            a_t = self.actor.diffusion.q_sample(action, t, noise)
            new_action = self.actor.diffusion.predict_x0(self.actor.denoiser(a_t, t.float(), obs), a_t, t)
            new_action = new_action.clamp(-1.0, 1.0)
        else:
            new_action = self.actor.sample(obs)
        q1_new, q2_new = self.critic(obs, new_action)
        coin = np.random.uniform()  # noqa: NPY002 (the legacy global RNG is captured by checkpoints)
        q_loss = normalized_q_loss(q1_new, q2_new) if coin > 0.5 else normalized_q_loss(q2_new, q1_new)
        actor_loss = bc_loss + c.eta * q_loss
        self.updaters["actor"].step(actor_loss)
        assert self.ema is not None
        self.ema.update(self.actor, self.num_timesteps)
        soft_update(self.nets["critic_target"], self.critic, c.tau)
        return {"critic_loss": critic_loss.detach(), "bc_loss": bc_loss.detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor_loss.detach(), "q_mean": q1.detach().mean()}

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        """Sample ``n_candidates`` actions per observation from the EMA actor and pick by the target critic."""
        assert self.ema is not None
        actor: DiffusionActionPolicy = self.ema.model  # type: ignore[assignment]
        gen = self.eval_generator() if deterministic else None
        n = self.config.n_candidates
        scored = self._graphed("act", partial(scored_candidates, actor.sample, self.nets["critic_target"], n=n),
                               obs, generator=gen, key=(actor.sampler,))
        if n == 1:
            return scored[0], state
        return select_candidates(scored[0], scored[1], n, deterministic=deterministic), state
