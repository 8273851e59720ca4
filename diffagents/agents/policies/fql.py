"""FQL (Park, Li & Levine 2025, "Flow Q-Learning"): a flow BC policy distilled into a one-step policy that
maximises Q.

Three networks besides the critics (official ``agents/fql.py``):

* the BC flow ``v(s, a_t, t)`` trained with the flow-matching loss on dataset actions (Eq. 5; ``a_t = (1 - t) z +
  t a``), never by the Q function;
* the one-step policy ``mu(s, z)``, trained to maximise ``Q(s, mu(s, z))`` while staying close to the flow's
  action from the same noise: ``L(mu) = E[-Q(s, mu(s, z))] + alpha E||mu(s, z) - a_flow(s, z)||^2`` (Eq. 8), where
  ``a_flow(s, z)`` is the BC flow's Euler rollout from ``z`` (``flow_steps`` steps, no gradient): the actor's Q
  term never back-propagates through the ODE;
* twin critics with LayerNorm, trained on ``r + gamma (1 - terminated) agg_i Q'_i(s', mu(s', z'))`` (``q_agg``:
  the mean of the two, FQL's default, or their min) with a Polyak-averaged target.

As in the official update, the critic target, the actor's Q term and the critic loss all use the parameters from
before the step (the target is computed first, the actor then steps against the current critic, and the critic
steps last). Acting is one network call: ``mu(s, z)`` clipped to [-1, 1], from a fixed ``z`` when deterministic.

Defaults: the paper's (App. C): 4 x 512 GELU MLPs, LayerNorm in the critics only, Adam 3e-4, batch 256, gamma
0.99, tau 0.005, 10 flow steps, ``q_agg="mean"``, no Q normalisation, observations as they are. ``alpha`` is tuned
per task in the paper (OGBench: 3-300, D4RL locomotion ranges in App. C, Table 6); 10 is the official default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffagents.core.config import AgentConfig
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.diffusion.flow import FlowMatching
from diffagents.nn import ConcatMLP, TwinQ
from diffagents.training import Updater, soft_update


@dataclass(kw_only=True)
class FQLConfig(AgentConfig):
    """Hyperparameters of :class:`FQL` (official ``agents/fql.py`` ``get_config``).

    Args:
        hidden / critic_hidden / activation: actor (BC flow, one-step policy) and critic MLPs.
        layer_norm / actor_layer_norm: LayerNorm in the critics (on) and in the actors (off).
        alpha: weight of the distillation term (tune per task).
        flow_steps: Euler steps of the BC flow's rollout (the distillation target).
        q_agg: ``"mean"`` or ``"min"`` of the twin target critics.
        normalize_q_loss: divide the actor's Q term by ``E|Q|`` (off in the paper).
        gamma / tau: discount and target-network rate.
    """

    hidden: tuple[int, ...] = (512, 512, 512, 512)
    critic_hidden: tuple[int, ...] = (512, 512, 512, 512)
    activation: str = "gelu"
    layer_norm: bool = True
    actor_layer_norm: bool = False
    obs_normalization: str = "none"
    alpha: float = 10.0
    flow_steps: int = 10
    q_agg: str = "mean"
    normalize_q_loss: bool = False
    gamma: float = 0.99
    tau: float = 0.005

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.alpha >= 0, "alpha", ">= 0", self.alpha)
        self._check(self.flow_steps >= 1, "flow_steps", ">= 1", self.flow_steps)
        self._check(self.q_agg in ("mean", "min"), "q_agg", "'mean' or 'min'", self.q_agg)
        self._check(0 <= self.gamma <= 1, "gamma", "in [0, 1]", self.gamma)
        self._check(0 < self.tau <= 1, "tau", "in (0, 1]", self.tau)


@register_agent
class FQL(OfflineAgent):
    """Flow Q-Learning as an SB3 ``BaseAlgorithm`` trained offline on Minari transitions (see the module docstring).

    Example:
        >>> agent = FQL(env=gym.make("Hopper-v5"), dataset=make_dataset("diffagents/hopper/medium-v0"), alpha=10.0)
        >>> agent.learn(40_000).predict(obs, deterministic=True)
    """

    config_class = FQLConfig
    config: FQLConfig
    ema_acts = False  # no EMA copy: the one-step policy acts

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(hidden=(32, 32), critic_hidden=(32, 32), batch_size=16, flow_steps=3)

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        c = self.config
        self.flow = FlowMatching(time_scale=1.0)
        critic = TwinQ(obs_dim, act_dim, hidden=c.critic_hidden, activation=c.activation, layer_norm=c.layer_norm)
        critic_target = TwinQ(obs_dim, act_dim, hidden=c.critic_hidden, activation=c.activation,
                              layer_norm=c.layer_norm).requires_grad_(False)
        critic_target.load_state_dict(critic.state_dict())
        return {
            "bc_flow": ConcatMLP(act_dim, obs_dim, c.hidden, c.activation, c.actor_layer_norm),
            "onestep": ConcatMLP(act_dim, obs_dim, c.hidden, c.activation, c.actor_layer_norm, time_input=False),
            "critic": critic, "critic_target": critic_target,
        }

    def _make_updaters(self) -> dict[str, Updater]:
        """One Adam for both actors (their losses are summed, as in the official single optimizer), one for the
        critic."""
        lr, nets = self.config.learning_rate, self.nets
        actor = [*nets["bc_flow"].parameters(), *nets["onestep"].parameters()]
        return {"actor": Updater(actor, lr, name="actor"), "critic": Updater(nets["critic"].parameters(), lr,
                                                                               name="critic")}

    def _onestep(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.nets["onestep"](noise, None, obs)  # type: ignore[no-any-return]

    def flow_actions(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The BC flow's Euler rollout from ``noise``, clipped to [-1, 1] (the distillation target)."""
        velocity = self.flow.velocity_of(self.nets["bc_flow"], obs)
        return self.flow.sample(velocity, noise, self.config.flow_steps, "euler", clip=1.0)

    def _q(self, critic: nn.Module, obs: torch.Tensor, act: torch.Tensor, agg: str) -> torch.Tensor:
        q1, q2 = critic(obs, act)
        return torch.minimum(q1, q2) if agg == "min" else 0.5 * (q1 + q2)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        obs, action = batch["obs"], batch["action"]
        with torch.no_grad():  # critic target with the one-step policy before this step's update
            z_next = torch.randn_like(action)
            next_action = self._onestep(batch["next_obs"], z_next).clamp(-1.0, 1.0)
            next_q = self._q(self.nets["critic_target"], batch["next_obs"], next_action, c.q_agg)
            target = batch["reward"] + c.gamma * (1.0 - batch["terminated"]) * next_q
        # actor: BC flow loss (Eq. 5) + alpha * distillation (Eq. 8) - Q(s, mu(s, z))
        bc_flow_loss, _ = self.flow.loss(self.nets["bc_flow"], action, obs)
        z = torch.randn_like(action)
        with torch.no_grad():
            flow_action = self.flow_actions(obs, z)
        actor_action = self._onestep(obs, z)
        distill_loss = (actor_action - flow_action).pow(2).mean()
        critic = self.nets["critic"].requires_grad_(False)  # the Q term trains the actor only
        try:
            q = self._q(critic, obs, actor_action.clamp(-1.0, 1.0), "mean")
            q_loss = -q.mean()
            if c.normalize_q_loss:
                q_loss = q_loss / q.abs().mean().detach()
            actor_loss = bc_flow_loss + c.alpha * distill_loss + q_loss
            self.updaters["actor"].step(actor_loss)
        finally:
            critic.requires_grad_(True)
        # critic, on the parameters before this step (the actor's update does not touch it)
        q1, q2 = self.nets["critic"](obs, action)
        critic_loss = 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))
        self.updaters["critic"].step(critic_loss)
        soft_update(self.nets["critic_target"], self.nets["critic"], c.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "bc_flow_loss": bc_flow_loss.detach(), "distill_loss": distill_loss.detach(),
                "q_loss": q_loss.detach(), "q_mean": q1.detach().mean()}

    def _sample_actions(self, obs: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(obs.shape[0], self.act_dim, device=obs.device, dtype=obs.dtype, generator=generator)
        return self._onestep(obs, noise).clamp(-1.0, 1.0)

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
            ) -> tuple[torch.Tensor, Any]:
        """One call of the one-step policy ``mu(s, z)`` (a fixed ``z`` when deterministic), clipped to [-1, 1]."""
        gen = self.eval_generator() if deterministic else None
        return self._graphed("act", self._sample_actions, obs, generator=gen), state
