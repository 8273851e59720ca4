"""Diffuser (Janner, Du, Tenenbaum & Levine, ICML 2022): planning with diffusion for flexible behaviour synthesis.

A temporal U-Net diffuses whole windows ``tau = [(a_0, s_0), ..., (a_{H-1}, s_{H-1})]`` (actions first, as in
the reference code) predicting ``x0`` (``predict_epsilon=False``) with the first action's loss up-weighted
(``action_weight = 10``). Planning conditions by inpainting the current state at ``h = 0`` (Sec. 3.3); a value
function ``J(tau^i, i)`` trained on noisy trajectories guides sampling by its gradient (Eq. 3, "guided
sampling", ``n_guide_steps = 2``, ``scale = 0.1``, ``t_stopgrad = 2``, gradient scaled by the posterior variance),
``n_samples`` candidate plans are ranked by value and the best plan's first action is executed; replanning
every ``replan_every`` steps gives receding-horizon control.

Maze mode (Sec. 5.1, Maze2D): the goal is inpainted into the last state (``goal_obs_dims`` says where the goal
sits in the flat observation) and the planned states are tracked with a PD controller (``execution="track"``),
planning once per episode (``replan_every=None``) and holding the last planned state once the plan has run out
(``scripts/plan_maze2d.py`` of the reference code). ``execution="follow"`` (ours, not in the paper) follows the
plan as a *path* instead of a timetable: the plan fixes the route, a PD law chases the first planned position
more than ``follow_radius`` away, and any stretch of the plan that comes back within ``follow_radius`` of the
agent is skipped. A plan-once planner that tracks its timetable arrives when the plan does, at ``h = H - 1``,
which caps its return (``benchmarks/RESULTS.md``, "Planners on PointMaze"); following the path does not wait.
With ``follow_stall_steps = k`` a followed plan that has not advanced for ``k`` steps short of its end (the agent
pressed against a wall that the sampled plan cuts through) is replaced by a new plan from where the agent is.
``plan_selection="support"`` (ours) samples ``n_samples`` plans and keeps the one with the smallest fraction of
its path in positions the dataset never visits (:mod:`diffagents.execution.plan_support`), so fewer plans cut
through walls; the paper plans once (``n_samples = 1``) and ranks candidates by value only in locomotion.

Fast sampling: any sampler of :mod:`diffagents.diffusion` with fewer steps, and warm-start replanning
(``warm_start``: the previous plan, shifted, is re-noised to an intermediate level and denoised from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from diffagents.core.agent_io import to_unit
from diffagents.core.config import AgentConfig
from diffagents.core.contract import WINDOWS
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.data.batches import attach_windows
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.execution.plan_cache import PlanCache, shift_plans
from diffagents.execution.plan_support import VisitedPositions
from diffagents.execution.trackers import follow_path, pd_track, stalled_envs
from diffagents.guidance import GradientGuide
from diffagents.nn import TemporalUNet, TemporalValue
from diffagents.roles import TrajectoryPlanner
from diffagents.training import EMA


@dataclass(kw_only=True)
class DiffuserConfig(AgentConfig):
    """Hyperparameters of :class:`Diffuser` (``jannerm/diffuser`` ``config/locomotion.py`` defaults).

    CPU budgets use smaller ``dim``/``dim_mults``/``n_samples``; keep the rest for paper-faithful runs.
    """

    batch_size: int = 64  # official: batch 32 x gradient_accumulate_every 2 per optimizer step
    learning_rate: float = 2e-4
    horizon: int = 32
    n_diffusion_steps: int = 20
    schedule: str = "cosine"
    prediction_type: str = "x0"
    dim: int = 32
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    activation: str = "mish"
    action_weight: float = 10.0
    clip_denoised: bool = False
    use_padding: bool = True
    ema_decay: float = 0.995
    ema_start: int = 2000
    ema_every: int = 10
    value_guidance: bool = True
    discount: float = 0.99
    termination_penalty: float | None = -100.0
    n_samples: int = 64
    guide_scale: float = 0.1
    n_guide_steps: int = 2
    t_stopgrad: int = 2
    scale_grad_by_std: bool = True
    replan_every: int | None = 1
    warm_start: float | None = None
    sampler: str = "ddpm"
    sampler_steps: int | None = None
    state_dims: int | None = None
    goal_obs_dims: tuple[int, ...] | None = None
    execution: str = "actions"
    track_pos_dims: tuple[int, ...] = (0, 2)
    track_vel_dims: tuple[int, ...] = (2, 4)
    track_gains: tuple[float, ...] = (1.0, 1.0)
    follow_radius: float = 0.5
    follow_gains: tuple[float, ...] = (10.0, 1.0)
    follow_stall_steps: int | None = None
    plan_selection: str = "value"
    support_resolution: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.horizon >= 2, "horizon", ">= 2", self.horizon)
        self._check_clip_is_bounded(self.clip_denoised)
        self._check(self.n_samples >= 1, "n_samples", ">= 1", self.n_samples)
        self._check(self.execution in ("actions", "track", "follow"), "execution", "'actions', 'track' or 'follow'",
                    self.execution)
        self._check(self.follow_radius > 0, "follow_radius", "> 0", self.follow_radius)
        self._check(self.plan_selection in ("value", "support"), "plan_selection", "'value' or 'support'",
                    self.plan_selection)
        self._check(self.support_resolution > 0, "support_resolution", "> 0", self.support_resolution)
        self._check(self.follow_stall_steps is None or self.follow_stall_steps >= 1, "follow_stall_steps",
                    ">= 1 or None", self.follow_stall_steps)
        self._check(self.replan_every is None or self.replan_every >= 1, "replan_every", ">= 1 or None",
                    self.replan_every)
        self._check(self.warm_start is None or 0 < self.warm_start < 1, "warm_start", "in (0, 1) or None",
                    self.warm_start)
        self._check(self.goal_obs_dims is None or len(self.goal_obs_dims) == 2, "goal_obs_dims",
                    "a (start, stop) pair or None", self.goal_obs_dims)


@register_agent
class Diffuser(OfflineAgent):
    """Diffuser as an SB3 ``BaseAlgorithm`` trained offline on trajectory windows of a Minari dataset."""

    config_class = DiffuserConfig
    batch_spec = WINDOWS
    sampler_swappable = True

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(horizon=8, dim=32, dim_mults=(1, 2), n_diffusion_steps=5, batch_size=8, n_samples=2, ema_start=2,
                    replan_every=2)
    config: DiffuserConfig
    acting_fields = OfflineAgent.acting_fields | {
        "n_samples", "guide_scale", "n_guide_steps", "t_stopgrad", "scale_grad_by_std", "replan_every", "warm_start",
        "sampler", "sampler_steps", "execution", "track_gains", "follow_radius", "follow_gains", "follow_stall_steps",
        "plan_selection", "support_resolution"}

    @classmethod
    def bench_config(cls) -> dict[str, Any]:
        """The CPU budget ``diffagents bench`` times (docs/compute-budget.md Sec. 6-7)."""
        return dict(horizon=32, dim=32, dim_mults=(1, 2, 4), n_diffusion_steps=20, n_samples=64, batch_size=32)

    @property
    def state_dim(self) -> int:
        return self.config.state_dims or self.obs_dim

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        c = self.config
        d = act_dim + self.state_dim
        weights = torch.ones(c.horizon, d)
        weights[0, :act_dim] = c.action_weight
        diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                      prediction_type=c.prediction_type)  # type: ignore[arg-type]
        unet = TemporalUNet(d, dim=c.dim, dim_mults=c.dim_mults, activation=c.activation)
        planner = TrajectoryPlanner(unet, diffusion, c.horizon, d, state_slice=slice(act_dim, d), loss_weights=weights,
                                    sampler=c.sampler, num_inference_steps=c.sampler_steps,
                                    clip_sample=1.0 if c.clip_denoised else None)
        self.ema = EMA(planner, decay=c.ema_decay, start_step=c.ema_start, update_every=c.ema_every)
        modules: dict[str, nn.Module] = {"planner": planner}
        if c.value_guidance:
            modules["value"] = TemporalValue(c.horizon, d, dim=c.dim, dim_mults=c.dim_mults, activation=c.activation)
        self.plans_made = 0
        self.decisions = 0
        self.plan_support: VisitedPositions | None = None
        return modules

    def _attach_data(self) -> None:
        c = self.config
        windows = attach_windows(self, c.horizon, discount=c.discount, termination_penalty=c.termination_penalty,
                                 use_padding=c.use_padding and c.goal_obs_dims is None)
        if self.acting_needs_data:  # plan_selection="support" without a grid at support_resolution
            real = windows.flat["mask"] > 0
            positions = windows.flat["observations"][real][:, slice(*c.track_pos_dims)]
            self.plan_support = VisitedPositions.fit(positions, c.support_resolution, device=self.device)

    @property
    def acting_needs_data(self) -> bool:
        """``plan_selection="support"`` needs the dataset's visited positions at ``support_resolution``."""
        c = self.config
        return c.plan_selection == "support" and (self.plan_support is None or
                                                  self.plan_support.resolution != c.support_resolution)

    def extra_arrays(self) -> dict[str, np.ndarray]:
        support = self.plan_support
        return {} if support is None else {f"plan_support/{k}": v for k, v in support.arrays().items()}

    def load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        prefix = "plan_support/"
        grid = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        self.plan_support = VisitedPositions.from_arrays(grid, device=self.device) if grid else None

    # ------------------------------------------------------------------ training
    def _inpaint(self, shape: tuple[int, ...], obs: torch.Tensor, last: torch.Tensor | None) -> Any:
        planner: TrajectoryPlanner = self.nets["planner"]  # type: ignore[assignment]
        return planner.condition(shape, obs[:, : self.state_dim], goal=last, goal_dims=slice(0, self.state_dim)
                                 if last is not None else None)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        planner: TrajectoryPlanner = self.nets["planner"]  # type: ignore[assignment]
        obs = batch["observations"][..., : self.state_dim]  # (B, H, S)
        x0 = torch.cat([batch["actions"], obs], dim=-1)  # (B, H, A + S)
        last = obs[:, -1] if self.config.goal_obs_dims is not None else None
        inpaint = self._inpaint(x0.shape, obs[:, 0], last)
        loss, stats = planner.loss(x0, inpaint=inpaint, mask=batch["mask"])
        self.updaters["planner"].step(loss)
        assert self.ema is not None
        self.ema.update(planner, self.num_timesteps)
        if "value" in self.nets:
            diffusion = planner.diffusion
            t = diffusion.sample_timesteps(x0.shape[0], x0.device)
            x_t = inpaint.apply(diffusion.q_sample(x0, t, torch.randn_like(x0)))
            v_loss = (self.nets["value"](x_t, t.float()) - batch["returns_to_go"][:, 0]).pow(2).mean()
            self.updaters["value"].step(v_loss)
            stats["value_loss"] = v_loss.detach()
        return stats

    # ------------------------------------------------------------------ acting
    def _goal_state(self, obs: torch.Tensor) -> torch.Tensor | None:
        """Normalised goal state ``(B, S)``: position = the observation's goal, other state dims zero."""
        gd = self.config.goal_obs_dims
        if gd is None:
            return None
        raw = self.normalizers["obs"].unnormalize(obs) if self.normalizers.get("obs") is not None else obs
        goal_raw = torch.zeros_like(raw)
        g0, g1 = gd
        pos = slice(*self.config.track_pos_dims)
        goal_raw[:, pos] = raw[:, g0:g1]
        goal_norm = self.normalizers["obs"].normalize(goal_raw) if self.normalizers.get("obs") is not None \
            else goal_raw
        goal = goal_norm[:, : self.state_dim].clone()
        zero_norm = self.normalizers["obs"].normalize(torch.zeros_like(raw)) if self.normalizers.get("obs") \
            is not None else torch.zeros_like(raw)
        keep = torch.ones(self.state_dim, dtype=torch.bool, device=obs.device)
        keep[pos] = False
        goal[:, keep] = zero_norm[:, : self.state_dim][:, keep]
        return goal

    def _plan(self, obs: torch.Tensor, deterministic: bool, prev: torch.Tensor | None = None, salt: int = 0
              ) -> torch.Tensor:
        """Best of ``n_samples`` guided plans per observation row: ``(B, H, A + S)`` (a CUDA graph with
        ``cuda_graph=True``); deterministic plans draw the noise of ``eval_generator(salt)``."""
        assert self.ema is not None
        gen = self.eval_generator(salt) if deterministic else None
        c = self.config
        if self.acting_needs_data and c.n_samples > 1:
            raise ValueError(f"plan_selection: 'support' needs the dataset's visited positions at support_resolution "
                             f"{c.support_resolution}, which this agent lacks (it has "
                             f"{'none' if self.plan_support is None else self.plan_support.resolution}); attach the "
                             "dataset with set_dataset(...) or load(..., dataset=...)")
        key = (self.ema.model.sampler, c.n_samples, c.plan_selection, self.plan_support, c.guide_scale,
               c.n_guide_steps, c.t_stopgrad, c.scale_grad_by_std, c.warm_start, c.replan_every)
        plans = self._graphed("plan", self._sample_plans, *((obs,) if prev is None else (obs, prev)), generator=gen,
                              key=key)
        self.plans_made += obs.shape[0]
        return plans

    def _sample_plans(self, obs: torch.Tensor, prev: torch.Tensor | None = None, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`_plan` as a pure tensor function of the observations and the previous plans (warm start)."""
        c = self.config
        assert self.ema is not None
        planner: TrajectoryPlanner = self.ema.model  # type: ignore[assignment]
        n, b = c.n_samples, obs.shape[0]
        obs_rep = obs.repeat_interleave(n, dim=0)  # (B*n, O)
        shape = (b * n, c.horizon, planner.transition_dim)
        inpaint = self._inpaint(shape, obs_rep, self._goal_state(obs_rep))
        guides = []
        value = self.nets["value"] if "value" in self.nets else None
        if value is not None and c.guide_scale > 0 and c.n_guide_steps > 0:
            guides.append(GradientGuide(lambda x, t: value(x, t), scale=c.guide_scale, n_guide_steps=c.n_guide_steps,
                                        t_stopgrad=c.t_stopgrad, scale_grad_by_std=c.scale_grad_by_std))
        x_init, start = None, 0
        if prev is not None and c.warm_start is not None:
            start = int(round((1.0 - c.warm_start) * len(planner.sampler.timesteps)))
            shifted = shift_plans(prev, c.replan_every or 1).repeat_interleave(n, dim=0)
            x_init = planner.renoise(shifted, start, generator)
        plans = planner.plan(b * n, inpaint, guides=guides, generator=generator, x_init=x_init, start_index=start,
                             device=obs.device)
        if n == 1:
            return plans
        if c.plan_selection == "support":
            assert self.plan_support is not None
            paths = self._raw(obs_rep, plans[..., self.act_dim:])[..., slice(*c.track_pos_dims)]
            scores = -self.plan_support.unvisited_fraction(paths)
        elif value is not None:
            scores = value(plans, torch.zeros(b * n, device=obs.device))
        else:
            scores = torch.zeros(b * n, device=obs.device)
        best = scores.view(b, n).argmax(dim=1)  # (B,)
        return plans.view(b, n, c.horizon, -1)[torch.arange(b, device=obs.device), best]

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        c = self.config
        cache = state if isinstance(state, PlanCache) else PlanCache()
        had_plans = cache.plans is not None and cache.plans.shape[0] == obs.shape[0]
        idx = cache.due(obs.shape[0], episode_start, c.replan_every, replan_at_end=c.execution == "actions")
        stalled = stalled_envs(cache, c.follow_stall_steps) if (c.execution == "follow" and had_plans and
                                                                  c.follow_stall_steps is not None) else idx[:0]
        idx = np.union1d(idx, stalled)
        if len(idx):
            starts = np.zeros(obs.shape[0], dtype=bool) if episode_start is None else \
                np.asarray(episode_start, dtype=bool).reshape(-1)
            warm = idx[~starts[idx]] if (had_plans and c.warm_start is not None) else idx[:0]
            warm = np.setdiff1d(warm, stalled)  # a plan that stalled is no start for the next one
            cold = np.setdiff1d(idx, np.union1d(warm, stalled))
            # (envs, previous plans to warm-start from, noise offset): the same noise from the same state would give
            # a stalled plan back, so its replacement draws other noise (deterministic mode: the evaluation seed
            # offset by the decision count)
            groups: list[tuple[np.ndarray, torch.Tensor | None, int]] = [(cold, None, 0), (stalled, None, cache.calls)]
            if len(warm) and cache.plans is not None:
                groups.append((warm, cache.plans[warm], 0))
            for sub, prev, salt in groups:
                if len(sub):
                    cache.store(sub, self._plan(obs[torch.as_tensor(sub, device=obs.device)], deterministic, prev,
                                                salt))
        plans, age = cache.current()
        rows = torch.arange(obs.shape[0], device=obs.device)
        steps = torch.as_tensor(age, device=obs.device)
        if c.execution == "actions":
            actions = plans[rows, steps, : self.act_dim]
        elif c.execution == "track":
            actions = self._track(obs, plans, steps)
        else:
            progress = cache.extra.get("progress")  # due() empties extra when the batch size changes
            moved = cache.extra.get("moved")  # plan age at which each env's progress last advanced
            if progress is None or moved is None:
                progress = torch.zeros(obs.shape[0], dtype=torch.long, device=obs.device)
                moved = torch.zeros_like(progress)
            if len(idx):
                new = torch.as_tensor(idx, device=obs.device)
                progress[new], moved[new] = 0, 0  # a new plan is followed from its start
            actions, advanced = self._follow(obs, plans, progress)
            cache.extra["moved"] = torch.where(advanced > progress, steps, moved)
            cache.extra["progress"] = advanced
        cache.advance()
        self.decisions += obs.shape[0]
        return actions, cache

    def _track(self, obs: torch.Tensor, plans: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """PD tracking of the next planned state (:func:`~diffagents.execution.trackers.pd_track`); past the
        plan's end the target is its last state with zero velocity."""
        h = plans.shape[1]
        nxt = torch.clamp(steps + 1, max=h - 1)
        states = plans[torch.arange(plans.shape[0], device=obs.device), nxt, self.act_dim:]  # (B, S) normalised
        target, cur = self._raw(obs, states[:, None])[:, 0], self._raw(obs)
        pos, vel = slice(*self.config.track_pos_dims), slice(*self.config.track_vel_dims)
        act = pd_track(target[:, pos], target[:, vel], cur[:, pos], cur[:, vel], (steps + 1 >= h)[:, None],
                       self.config.track_gains)
        return self._scale_action(act)

    def _follow(self, obs: torch.Tensor, plans: torch.Tensor, progress: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Path following of the planned positions (``execution="follow"``,
        :func:`~diffagents.execution.trackers.follow_path`); returns the actions and the new progress."""
        pos, vel = slice(*self.config.track_pos_dims), slice(*self.config.track_vel_dims)
        points = self._raw(obs, plans[..., self.act_dim:])[..., pos]  # (B, H, P) planned positions
        cur = self._raw(obs)
        act, progress = follow_path(points, cur[:, pos], cur[:, vel], progress, self.config.follow_radius,
                                    self.config.follow_gains)
        return self._scale_action(act), progress

    def _raw(self, obs: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """Env-unit observations: ``obs`` (``(B, O)``, normalised) itself, or with its state part replaced by each
        of the normalised planned ``states`` (``(B, K, S)`` -> ``(B, K, O)``)."""
        full = obs
        if states is not None:
            full = obs[:, None].expand(*states.shape[:2], obs.shape[-1]).clone()
            full[..., : self.state_dim] = states
        norm = self.normalizers.get("obs")
        return norm.unnormalize(full) if norm is not None else full

    def _scale_action(self, act: torch.Tensor) -> torch.Tensor:
        """Env-space actions -> the agents' [-1, 1] action space (clipped)."""
        low = torch.as_tensor(self.action_space.low, device=act.device, dtype=act.dtype)
        high = torch.as_tensor(self.action_space.high, device=act.device, dtype=act.dtype)
        return to_unit(act, low, high)  # type: ignore[no-any-return]

    def plan_reuse_rate(self) -> float:
        """Fraction of decisions served from a cached plan since construction."""
        return 1.0 - self.plans_made / max(self.decisions, 1)
