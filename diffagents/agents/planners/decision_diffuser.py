"""Decision Diffuser (Ajay, Du, Gupta, Tenenbaum, Jaakkola & Agrawal, ICLR 2023).

Diffuses state-only windows ``(s_0 .. s_{H-1})`` (eps-prediction, temporal U-Net with a global condition) and
conditions on the normalised return ``y = R / returns_scale`` with classifier-free guidance
(Eq. 4: ``eps~ = eps(x, null) + w (eps(x, y) - eps(x, null))``, condition dropout 0.25 in training, w = 1.2 at
act time with target return 0.9). The current state (and, with ``history = K``, the last K states) is inpainted;
actions come from an inverse-dynamics MLP ``a_t = f(s_t, s_{t+1})`` (Eq. 5) trained on dataset pairs.
Defaults follow ``anuragajay/decision-diffuser`` ``locomotion_config.py``; CPU budgets shrink ``horizon``,
``dim`` and ``n_diffusion_steps`` (name them next to every score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from diffagents.core.config import AgentConfig
from diffagents.core.contract import WINDOWS
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.data.batches import attach_windows
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.execution.plan_cache import PlanCache
from diffagents.guidance import ClassifierFreeGuidance
from diffagents.nn import InverseDynamics, TemporalUNet
from diffagents.roles import TrajectoryPlanner
from diffagents.training import EMA


@dataclass(kw_only=True)
class DecisionDiffuserConfig(AgentConfig):
    """Hyperparameters of :class:`DecisionDiffuser` (official locomotion config).

    ``obs_normalization="cdf"`` with ``clip_denoised=True`` is the official ``CDFNormalizer`` + clipped x0
    estimate: states live in [-1, 1] and each reverse step clips its x0 estimate there. Without the clip, an
    eps-prediction model's x0 estimate at the last levels of the cosine schedule (``sqrt(alpha_bar)`` near 0)
    amplifies small eps errors into plans far outside the data (measured: |s| up to 645 after 3000 steps on
    Hopper medium, so the inverse dynamics saturates every action).
    """

    batch_size: int = 64  # official: batch 32 x gradient_accumulate_every 2 per optimizer step
    learning_rate: float = 2e-4
    horizon: int = 100
    n_diffusion_steps: int = 200
    schedule: str = "cosine"
    dim: int = 128
    dim_mults: tuple[int, ...] = (1, 4, 8)
    activation: str = "mish"
    cfg_dropout: float = 0.25
    guidance_weight: float = 1.2
    target_return: float = 0.9
    returns_scale: float = 400.0
    discount: float = 0.99
    termination_penalty: float | None = -100.0
    history: int = 0
    inv_hidden: tuple[int, ...] = (256, 256)
    ema_decay: float = 0.995
    ema_start: int = 2000
    ema_every: int = 10
    replan_every: int | None = 1
    sampler: str = "ddpm"
    sampler_steps: int | None = None
    clip_denoised: bool = True
    obs_normalization: str = "cdf"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.history >= 0, "history", ">= 0", self.history)
        self._check(self.horizon >= self.history + 2, "horizon", f">= history + 2 = {self.history + 2}", self.horizon)
        self._check(0.0 <= self.cfg_dropout < 1.0, "cfg_dropout", "in [0, 1)", self.cfg_dropout)
        self._check(self.returns_scale > 0, "returns_scale", "> 0", self.returns_scale)
        self._check_clip_is_bounded(self.clip_denoised)


@register_agent
class DecisionDiffuser(OfflineAgent):
    """Decision Diffuser as an SB3 ``BaseAlgorithm`` trained offline on state windows of a Minari dataset."""

    config_class = DecisionDiffuserConfig
    batch_spec = WINDOWS
    sampler_swappable = True

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(horizon=8, dim=8, dim_mults=(1, 2), n_diffusion_steps=5, batch_size=8, ema_start=2, history=1,
                    returns_scale=100.0)
    acting_fields = OfflineAgent.acting_fields | {"guidance_weight", "target_return", "replan_every", "sampler",
                                                  "sampler_steps"}
    config: DecisionDiffuserConfig

    @classmethod
    def bench_config(cls) -> dict[str, Any]:
        """The CPU budget ``diffagents bench`` times (docs/compute-budget.md Sec. 6-7)."""
        return dict(horizon=32, dim=32, dim_mults=(1, 2, 4), n_diffusion_steps=20, batch_size=32)

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        c = self.config
        diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                      prediction_type="eps")
        unet = TemporalUNet(obs_dim, dim=c.dim, dim_mults=c.dim_mults, cond_dim=1, activation=c.activation,
                            cfg_dropout=c.cfg_dropout, cfg=True)
        planner = TrajectoryPlanner(unet, diffusion, c.horizon, obs_dim, state_slice=slice(0, obs_dim),
                                    sampler=c.sampler, num_inference_steps=c.sampler_steps,
                                    clip_sample=1.0 if c.clip_denoised else None)
        self.ema = EMA(planner, decay=c.ema_decay, start_step=c.ema_start, update_every=c.ema_every)
        return {"planner": planner, "inv_dyn": InverseDynamics(obs_dim, act_dim, hidden=c.inv_hidden)}

    def _attach_data(self) -> None:
        c = self.config
        attach_windows(self, c.horizon, discount=c.discount, termination_penalty=c.termination_penalty,
                       use_padding=True)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        planner: TrajectoryPlanner = self.nets["planner"]  # type: ignore[assignment]
        obs, mask = batch["observations"], batch["mask"]  # (B, H, O), (B, H)
        returns = batch["returns_to_go"][:, :1] / c.returns_scale  # (B, 1)
        inpaint = planner.condition(obs.shape, obs[:, : c.history + 1])
        loss, stats = planner.loss(obs, inpaint=inpaint, cond=returns, mask=mask)
        self.updaters["planner"].step(loss)
        assert self.ema is not None
        self.ema.update(planner, self.num_timesteps)
        inv_loss = self.inverse_dynamics_loss(batch)
        self.updaters["inv_dyn"].step(inv_loss)
        stats["inv_dyn_loss"] = inv_loss.detach()
        return stats

    def inverse_dynamics_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error of ``a_t = f(s_t, s_{t+1})`` (Eq. 5) over the consecutive real steps of a window
        batch (``observations`` ``(B, H, O)``, ``actions`` ``(B, H, A)``, ``mask`` ``(B, H)``)."""
        obs, mask = batch["observations"], batch["mask"]
        pair = mask[:, :-1] * mask[:, 1:]  # (B, H-1)
        s, s_next = obs[:, :-1].reshape(-1, obs.shape[-1]), obs[:, 1:].reshape(-1, obs.shape[-1])
        pred = self.nets["inv_dyn"](s, s_next)  # (B*(H-1), A)
        err = (pred - batch["actions"][:, :-1].reshape(-1, self.act_dim)).pow(2).mean(-1) * pair.reshape(-1)
        return err.sum() / pair.sum().clamp_min(1.0)

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        c = self.config
        cache = state if isinstance(state, PlanCache) else PlanCache()
        k = c.history
        idx = cache.due(obs.shape[0], episode_start, 1 if k else c.replan_every)
        hist = cache.extra.get("history")
        starts = np.zeros(obs.shape[0], dtype=bool) if episode_start is None else \
            np.asarray(episode_start, dtype=bool).reshape(-1)
        if k:
            if hist is None or hist.shape[0] != obs.shape[0]:
                hist = obs[:, None].repeat(1, k + 1, 1)  # (B, K+1, O)
            else:
                hist = torch.cat([hist[:, 1:], obs[:, None]], dim=1)
                fresh = torch.as_tensor(starts, device=obs.device)
                hist[fresh] = obs[fresh, None].expand(-1, k + 1, -1)
            cache.extra["history"] = hist
        if len(idx):
            sub = torch.as_tensor(idx, device=obs.device)
            known = hist[sub] if hist is not None else obs[sub][:, None]
            cache.store(idx, self._plan(known, deterministic))
        plans, age = cache.current()
        rows = torch.arange(obs.shape[0], device=obs.device)
        nxt = torch.as_tensor(np.minimum(age + k + 1, c.horizon - 1), device=obs.device)
        actions = self.nets["inv_dyn"](obs, plans[rows, nxt])
        cache.advance()
        return actions.clamp(-1.0, 1.0), cache

    def _plan(self, known: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Sample one plan per row with the known states ``(B, K+1, O)`` inpainted and CFG on the target return
        (a CUDA graph with ``cuda_graph=True``)."""
        assert self.ema is not None
        return self._graphed("plan", self._sample_plans, known, generator=self.eval_generator() if deterministic
                             else None, key=(self.ema.model.sampler,))

    def _sample_plans(self, known: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`_plan` as a pure tensor function of the known states."""
        c = self.config
        assert self.ema is not None
        planner: TrajectoryPlanner = self.ema.model  # type: ignore[assignment]
        b = known.shape[0]
        shape = (b, c.horizon, self.obs_dim)
        cond = torch.full((b, 1), c.target_return, device=known.device, dtype=known.dtype)
        guided = ClassifierFreeGuidance(planner.denoiser, c.guidance_weight)  # type: ignore[arg-type]
        return planner.plan(b, planner.condition(shape, known), cond=cond, denoiser=guided, generator=generator,
                            device=known.device)
