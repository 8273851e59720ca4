"""FlowBC: behaviour cloning with a flow-matching policy (the BC flow of Park, Li & Levine 2025, "Flow
Q-Learning", Sec. 4 and Eq. 5; Lipman et al. 2023 for conditional flow matching).

The policy is a velocity field ``v(a_t, t, s)`` over actions in [-1, 1], trained with the conditional
flow-matching loss on the linear interpolant ``a_t = (1 - t) z + t a``, ``z ~ N(0, I)``
(:class:`~diffagents.diffusion.flow.FlowMatching`); acting integrates the ODE from ``z`` with ``flow_steps`` Euler
steps (10 in the paper) and clips to the action bounds. ``deterministic=True`` starts every decision from the same
noise (``eval_seed``), so the same observation gives the same action.

Defaults follow the FQL paper's BC flow (App. C) and its official code: the velocity field is a 4 x 512 GELU MLP
on ``[s, a_t, t]`` with the raw time as one input (:class:`~diffagents.nn.ConcatMLP`), Adam 3e-4, batch 256,
10 Euler steps, uniform time sampling, observations used as they are (``obs_normalization="none"``). No EMA
(the official code acts with the trained network).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from diffagents.core.config import AgentConfig
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.diffusion.flow import METHODS, TIME_SAMPLING, FlowMatching
from diffagents.nn import ConcatMLP


@dataclass(kw_only=True)
class FlowBCConfig(AgentConfig):
    """Hyperparameters of :class:`FlowBC` (FQL paper, App. C).

    Args:
        hidden / activation: the velocity MLP ``v(a_t, t, s)``.
        flow_steps: ODE steps at act time (Euler: one network call each).
        sampler: ``"euler"`` (paper) or ``"heun"`` (two calls a step).
        time_sampling / logit_mean / logit_std: training times (uniform in the paper).
    """

    hidden: tuple[int, ...] = (512, 512, 512, 512)
    activation: str = "gelu"
    obs_normalization: str = "none"
    flow_steps: int = 10
    sampler: str = "euler"
    time_sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.flow_steps >= 1, "flow_steps", ">= 1", self.flow_steps)
        self._check(self.sampler in METHODS, "sampler", f"one of {METHODS}", self.sampler)
        self._check(self.time_sampling in TIME_SAMPLING, "time_sampling", f"one of {TIME_SAMPLING}",
                    self.time_sampling)
        self._check(self.logit_std > 0, "logit_std", "> 0", self.logit_std)
        self._check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden", "positive widths",
                    self.hidden)


@register_agent
class FlowBC(OfflineAgent):
    """Flow-matching behaviour cloning as an SB3 ``BaseAlgorithm`` trained offline on Minari transitions.

    Example:
        >>> agent = FlowBC(env=gym.make("Pendulum-v1"), dataset=make_dataset("diffagents/pendulum/expert-v0"))
        >>> agent.learn(20_000).predict(obs, deterministic=True)
    """

    config_class = FlowBCConfig
    config: FlowBCConfig
    acting_fields = OfflineAgent.acting_fields | {"flow_steps", "sampler"}
    ema_acts = False  # no EMA copy: the trained network acts (official FQL code)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(hidden=(32, 32), batch_size=16, flow_steps=3)

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        c = self.config
        self.flow = FlowMatching(c.time_sampling, c.logit_mean, c.logit_std, time_scale=1.0)
        return {"velocity": ConcatMLP(act_dim, obs_dim, c.hidden, c.activation)}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One step of the conditional flow-matching loss on dataset actions (FQL Eq. 5)."""
        loss, stats = self.flow.loss(self.nets["velocity"], batch["action"], batch["obs"])
        self.updaters["velocity"].step(loss)
        return stats

    def _sample_actions(self, obs: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(obs.shape[0], self.act_dim, device=obs.device, dtype=obs.dtype, generator=generator)
        velocity = self.flow.velocity_of(self.nets["velocity"], obs)
        return self.flow.sample(velocity, noise, self.config.flow_steps, self.config.sampler, clip=1.0)

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
            ) -> tuple[torch.Tensor, Any]:
        """``flow_steps`` ODE steps from Gaussian noise (a fixed one when deterministic) to actions in [-1, 1]."""
        gen = self.eval_generator() if deterministic else None
        key = (self.config.flow_steps, self.config.sampler)
        return self._graphed("act", self._sample_actions, obs, generator=gen, key=key), state
