"""MADiff (Zhu, Liu, Mao, Zhang, Ma, Zhang & Zhang, NeurIPS 2024): offline multi-agent RL with diffusion.

MADiff diffuses the joint observation trajectories ``(N, H, D)`` of all agents with attention between agents
(:class:`~diffagents.roles.joint_planner.JointTemporalUNet`), conditions on the team's discounted return
``y = R / returns_scale`` with classifier-free guidance (condition dropout 0.25, ``w = 1.2``; Decision Diffuser
Eq. 4) and recovers each agent's action by inverse dynamics ``a^i_t = f^i(o^i_t, o^i_{t+1})``.

* **MADiff-C** (centralised control, ``decentralized=False``): one planner sees every agent's observation
  history, inpaints all of it and every agent's action comes from the same joint plan.
* **MADiff-D** (decentralised execution, ``decentralized=True``; the paper's headline CTDE setting,
  ``agent_condition_type="single"`` in ``zbzhu99/madiff``): in training each sample inpaints the history of
  one random agent only; at act time agent ``i`` inpaints only its own history, predicts its teammates'
  trajectories, and acts from its own plan. No other agent's observation is used.

``env`` is a PettingZoo Parallel env (or a callable returning one); ``dataset`` a multi-agent Minari dataset with
``Dict({agent: Box})`` observations, ``Dict({agent: Box | Discrete})`` actions and one team reward per step (e.g.
``diffagents.data.make_dataset("diffagents/mpe-spread/expert-v0")``). MADiff is not an SB3 ``BaseAlgorithm``
(SB3 needs a Gymnasium env) but keeps its shapes: ``learn(total_timesteps)`` takes that many gradient steps,
``predict(obs_dict, state, episode_start, deterministic) -> (action_dict, state)``, and ``save``/``load`` use the
same pickle-free JSON + safetensors checkpoints (:mod:`diffagents.persistence`).

Layout: this module holds the agent; :mod:`~diffagents.agents.multiagent.madiff_config` its hyperparameters (re-exported
here), :mod:`~diffagents.agents.multiagent.madiff_data` the agents / spaces and the joint training data, and
the kernel (:mod:`diffagents.core`) ``learn``, ``save`` and ``load``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from diffagents.agents.multiagent.madiff_config import CPU_HYPERPARAMETERS, MADiffConfig
from diffagents.agents.multiagent.madiff_data import (
    AgentSpec,
    make_parallel_env,
    read_joint_data,
    roll_history,
    step_targets,
)
from diffagents.core.contract import JOINT_WINDOWS
from diffagents.core.loop import run_training
from diffagents.core.registry import register_agent
from diffagents.core.standalone import StandaloneAgent
from diffagents.cuda_graph import maybe_graphed
from diffagents.diffusion import GaussianDiffusion, NoiseSchedule
from diffagents.execution.plan_cache import PlanCache
from diffagents.guidance import ClassifierFreeGuidance
from diffagents.nn import AgentInverseDynamics, JointTemporalUNet
from diffagents.roles.joint_planner import JointPlanner
from diffagents.training import EMA, Updater, autocast
from diffagents.transfer import to_device

__all__ = ["CPU_HYPERPARAMETERS", "MADiff", "MADiffConfig", "make_parallel_env"]

@register_agent(kind="multiagent")
class MADiff(StandaloneAgent):
    """MADiff agent for PettingZoo Parallel envs, trained offline from a multi-agent Minari dataset.

    Args:
        env: a PettingZoo Parallel env or a zero-argument callable returning one (for spaces and
            :func:`diffagents.wrappers.pettingzoo.evaluate`); may be None when ``dataset`` is given.
        dataset: a multi-agent Minari dataset, its id or local path.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: seed of Python, NumPy and torch.
        verbose: 1 logs training statistics to stdout.
        tensorboard_log: TensorBoard log folder.
        **hyperparameters: fields of :class:`MADiffConfig`.
    """

    config_class: ClassVar[type[MADiffConfig]] = MADiffConfig  # type: ignore[assignment]
    batch_spec = JOINT_WINDOWS
    acting_fields = StandaloneAgent.acting_fields | {"replan_every", "guidance_weight", "target_return",
                                                     "target_quantile", "sampler", "sampler_steps"}
    config: MADiffConfig
    ema: EMA  # built with the planner, always present
    cpu_preset: ClassVar[dict[str, Any]] = CPU_HYPERPARAMETERS
    """Hyperparameters that fit the CPU budget (``diffagents train`` and the zoo start from them)."""

    def __init__(self, env: Any = None, dataset: Any = None, *, device: torch.device | str = "auto",
                 seed: int | None = None, verbose: int = 0, tensorboard_log: str | None = None,
                 _spec: AgentSpec | None = None, **hyperparameters: Any) -> None:
        from stable_baselines3.common.utils import set_random_seed

        from diffagents.data import load_dataset

        self.config = self.config_class.from_kwargs(type(self).__name__, hyperparameters)
        super().__init__(device=device, seed=seed, verbose=verbose, tensorboard_log=tensorboard_log)
        self.env = None if env is None else make_parallel_env(env)
        self.dataset = load_dataset(dataset) if dataset is not None else None
        self.spec = self._resolve_spec(_spec)
        if seed is not None:
            set_random_seed(seed)
        self.targets: np.ndarray | None = None  # (L,) normalised target return per episode step
        self._windows: Any = None
        self._pairs: Any = None
        self.build()
        if self.dataset is not None:
            self._attach_data()

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(dim=8, dim_mults=(1, 2), horizon=8, n_diffusion_steps=10, sampler="ddim", sampler_steps=4,
                    inv_hidden=(32,), batch_size=8, inv_batch_size=32, returns_scale=50.0, n_heads=2)

    @classmethod
    def bench_config(cls) -> dict[str, Any]:
        """``diffagents bench`` times the CPU preset (the paper's U-Net takes seconds a step on one thread)."""
        return dict(cls.cpu_preset)

    @property
    def normalizer(self) -> Any:
        """The per-agent observation normalizer ``(N*D)`` (``normalizers["obs"]``), or None."""
        return self.normalizers.get("obs")

    @normalizer.setter
    def normalizer(self, value: Any) -> None:
        self.normalizers["obs"] = value

    # ------------------------------------------------------------------ spaces and data
    def _resolve_spec(self, given: AgentSpec | None) -> AgentSpec:
        env_spec = AgentSpec.from_env(self.env) if self.env is not None else None
        for name, other in (("checkpoint", given),
                            ("dataset", AgentSpec.from_dataset(self.dataset) if self.dataset is not None else None)):
            if other is not None and env_spec is not None:
                env_spec.check_matches(other, name)
        spec = env_spec or given or (AgentSpec.from_dataset(self.dataset) if self.dataset is not None else None)
        if spec is None:
            raise ValueError("env/dataset: at least one of env or dataset is needed to know the agents and spaces")
        return spec

    @property
    def agents(self) -> list[str]:
        """Agent ids in the order of the planner's agent axis."""
        return list(self.spec.agents)

    def set_dataset(self, dataset: Any) -> None:
        """Attach (or replace) the training data; the normalizer is kept if already fitted or loaded."""
        from diffagents.data import load_dataset

        ds = load_dataset(dataset)
        self.spec.check_matches(AgentSpec.from_dataset(ds), "dataset")
        self.dataset = ds
        self._attach_data()

    def _attach_data(self) -> None:
        from diffagents.data import TensorSampler, WindowSampler, make_normalizer

        c, spec = self.config, self.spec
        data = read_joint_data(self.dataset, spec, c.window, history=c.history, discount=c.discount,
                               pad_mode=c.pad_mode)
        if self.normalizer is None and c.obs_normalization != "none":
            self.normalizer = make_normalizer(c.obs_normalization).fit(data.real_obs.reshape(len(data.real_obs), -1))
        flat = dict(data.windows.flat)
        flat["observations"] = self._norm(flat["observations"])
        if c.pad_mode == "zeros":
            flat["observations"][flat["mask"] == 0] = 0.0
        self._windows = WindowSampler(flat, data.index, c.window, device=self.device, joint=True)
        act = data.actions if spec.discrete else spec.scale_action(data.actions)
        self._pairs = TensorSampler({"obs": self._norm(data.obs), "next_obs": self._norm(data.next_obs),
                                     "action": act}, device=self.device)
        if self.targets is None:
            self.targets = step_targets(data.step_returns, c.target_quantile, c.returns_scale)

    def _norm(self, obs: Any) -> Any:
        """Normalise ``(..., N, D)`` observations (numpy or torch) with the per-agent ``(N*D)`` normalizer."""
        if self.normalizer is None:
            return obs.astype(np.float32) if isinstance(obs, np.ndarray) else obs
        flat = obs.reshape(*obs.shape[:-2], -1)
        out = self.normalizer.normalize(flat).reshape(obs.shape)
        return out.astype(np.float32) if isinstance(out, np.ndarray) else out

    # ------------------------------------------------------------------ model
    def build(self) -> None:
        c, spec = self.config, self.spec
        n, d = spec.n_agents, spec.obs_dim
        diffusion = GaussianDiffusion(NoiseSchedule(num_train_steps=c.n_diffusion_steps, kind=c.schedule),  # type: ignore[arg-type]
                                      prediction_type=c.prediction_type)  # type: ignore[arg-type]
        unet = JointTemporalUNet(d, n, c.dim, c.dim_mults, cond_dim=1, activation=c.activation,
                                 cfg_dropout=c.cfg_dropout, cfg=True, agent_embedding=c.agent_embedding,
                                 n_heads=c.n_heads, attention=c.attention)
        self.planner = JointPlanner(unet, diffusion, c.window, n, d, history=c.history, sampler=c.sampler,
                                    num_inference_steps=c.sampler_steps,
                                    clip_sample=1.0 if c.clip_denoised else None).to(self.device)
        self.inv_dyn = AgentInverseDynamics(d, spec.act_dim, n, shared=c.shared_inv_dyn,
                                            hidden=c.inv_hidden).to(self.device)
        self.ema = EMA(self.planner, decay=c.ema_decay, start_step=c.ema_start, update_every=c.ema_every)
        self.ema.model.to(self.device)
        self.updaters = {name: Updater(m.parameters(), c.learning_rate, grad_clip=c.grad_clip, name=name)
                         for name, m in self.nets.items()}

    @property
    def nets(self) -> dict[str, torch.nn.Module]:
        """The trained networks by name (all saved)."""
        return {"planner": self.planner, "inv_dyn": self.inv_dyn}

    # ------------------------------------------------------------------ learn (core/loop.py)
    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1000,
              progress_bar: bool = False, reset_num_timesteps: bool = True, tb_log_name: str | None = None,
              checkpoint_dir: str | os.PathLike[str] | None = None, checkpoint_every: int = 1000,
              keep_checkpoints: int = 2) -> MADiff:
        """Take ``total_timesteps`` gradient steps (one planner and one inverse-dynamics update each) in the one
        training loop (:func:`diffagents.core.loop.run_training`).

        Args:
            total_timesteps: gradient steps.
            callback: SB3 callbacks (``CheckpointCallback``, a ``BaseCallback`` or a list; a plain callable gets
                SB3's ``(locals, globals)`` and stops training by returning False).
            log_interval: steps between logger dumps (0 = never).
            progress_bar: show a progress bar.
            reset_num_timesteps: count from 0 (False continues the step counter).
            checkpoint_dir / checkpoint_every / keep_checkpoints: crash-safe training checkpoints; calling again
                with the same folder resumes bitwise from the newest one (CPU).
        """
        if self._windows is None:
            raise RuntimeError("MADiff.learn: no dataset attached; pass dataset= or call set_dataset() first")
        return run_training(self, total_timesteps, callback, log_interval=log_interval,  # type: ignore[no-any-return]
                            tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                            progress_bar=progress_bar, checkpoint_dir=checkpoint_dir,
                            checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints)

    def sample_batch(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Joint windows ``(B, N, W, D)`` plus inverse-dynamics pairs (keys ``inv_obs``, ``inv_next_obs``,
        ``inv_action``: ``(B', N, ...)``)."""
        batch = self._windows.sample(self.config.batch_size, generator=generator)
        pairs = self._pairs.sample(self.config.inv_batch_size, generator=generator)
        return batch | {f"inv_{k}": v for k, v in pairs.items()}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One planner update (Eq. 5 of Decision Diffuser with CFG dropout, joint over agents) and one
        inverse-dynamics update."""
        c, n = self.config, self.spec.n_agents
        x0 = batch["observations"]  # (B, N, W, D)
        returns = batch["returns_to_go"][:, c.history : c.history + 1] / c.returns_scale  # (B, 1)
        agent_mask = None
        if c.decentralized:  # MADiff-D: each sample conditions on one random agent's own history
            pick = torch.randint(0, n, (x0.shape[0],), device=x0.device)
            agent_mask = torch.nn.functional.one_hot(pick, n).bool()  # (B, N)
        inpaint = self.planner.condition(x0[:, :, : c.history + 1], agent_mask)
        valid = torch.ones_like(batch["mask"]) if c.loss_on_padding else batch["mask"]
        loss, stats = self.planner.loss(x0, inpaint=inpaint, cond=returns, valid=valid)
        self.updaters["planner"].step(loss)
        assert self.ema is not None
        self.ema.update(self.planner, self.num_timesteps)
        inv_loss, inv_stats = self.inv_dyn.loss(batch["inv_obs"], batch["inv_next_obs"], batch["inv_action"],
                                                self.spec.discrete)
        self.updaters["inv_dyn"].step(inv_loss)
        return stats | inv_stats

    # ------------------------------------------------------------------ predict
    def predict(self, observation: Mapping[str, Any], state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[dict[str, Any], Any]:
        """Joint step: ``{agent: obs}`` -> ``({agent: action}, state)``.

        Each observation is the agent's Box observation, or ``(n_envs, ...)`` for a batch of envs; actions come
        back with the same leading shape (Box actions in env bounds, Discrete actions as integers). ``state``
        carries the plan cache and observation history; pass ``episode_start=True`` (or one flag per env) at
        the first step of an episode. ``deterministic=True`` samples from a fixed-seed noise
        (``config.eval_seed``), so the same observations and state give the same actions.
        """
        obs, batched = self.spec.joint_observation(observation)  # (E, N, D)
        if self.normalizer is None and self.config.obs_normalization != "none":
            raise RuntimeError("MADiff.predict: the observation normalizer is not fitted; train or load first")
        x = to_device(self._norm(obs), self.device)  # pinned, non-blocking on CUDA
        with torch.no_grad(), autocast(self.device, self.config.precision):
            scaled, state = self.act(x, state, episode_start, deterministic)
        actions = self.spec.to_env_actions(scaled.float().cpu().numpy())  # (E, N, ...) env actions
        return {a: (actions[:, i] if batched else actions[0, i]) for i, a in enumerate(self.agents)}, state

    def act(self, obs: torch.Tensor, state: Any, episode_start: Any, deterministic: bool
             ) -> tuple[torch.Tensor, PlanCache]:
        """``obs``: ``(E, N, D)`` normalised -> inverse-dynamics outputs ``(E, N, A)`` and the cache."""
        c = self.config
        k, e = c.history, obs.shape[0]
        cache = state if isinstance(state, PlanCache) else PlanCache()
        starts = np.zeros(e, dtype=bool) if episode_start is None else np.asarray(episode_start, bool).reshape(-1)
        if len(starts) != e:
            raise ValueError(f"episode_start: expected {e} flags (one per env), got {len(starts)}")
        idx = cache.due(e, starts, c.replan_every)
        hist, step = roll_history(cache, obs, starts, k)  # (E, K+1, N, D), (E,) episode step of each env
        if len(idx):
            sub = torch.as_tensor(idx, device=obs.device)
            cache.store(idx, self._plan(hist[sub].transpose(1, 2), self._target(step[sub]), deterministic))
        plans, age = cache.current()  # (E, W, R, N, D)
        rows = torch.arange(e, device=obs.device)
        nxt = plans[rows, torch.as_tensor(np.minimum(age + k + 1, c.window - 1), device=obs.device)]  # (E, R, N, D)
        if c.decentralized:
            ids = torch.arange(self.spec.n_agents, device=obs.device)
            nxt = nxt[:, ids, ids]  # agent i reads its own plan's next observation
        else:
            nxt = nxt[:, 0]
        cache.advance()
        return self.inv_dyn(obs, nxt), cache

    def _target(self, step: torch.Tensor) -> torch.Tensor:
        """Normalised target return ``(M,)`` for envs at episode steps ``step``."""
        if self.config.target_return is not None:
            return torch.full(step.shape, self.config.target_return, device=step.device)
        if self.targets is None:
            raise RuntimeError("MADiff: no target returns; train on a dataset, load a trained model, or set "
                               "target_return")
        table = torch.as_tensor(self.targets, device=step.device)
        return table[step.clamp(max=len(table) - 1)]

    def _plan(self, known: torch.Tensor, target: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Plans for known histories ``(M, N, K+1, D)`` and targets ``(M,)`` -> ``(M, W, R, N, D)`` (R = N
        plans under MADiff-D, one per agent); a CUDA graph with ``cuda_graph=True``."""
        gen = torch.Generator(device=self.device).manual_seed(self.config.eval_seed) if deterministic else None
        return maybe_graphed(self, self.config.cuda_graph, "plan", self._sample_plans, known, target, generator=gen,
                             key=(self.ema.model.sampler,))

    def _sample_plans(self, known: torch.Tensor, target: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`_plan` as a pure tensor function of the known histories and targets."""
        c, n = self.config, self.spec.n_agents
        m = known.shape[0]
        agent_mask = None
        if c.decentralized:  # row (j, i): agent i's own history only; the others' values are zeroed
            eye = torch.eye(n, dtype=torch.bool, device=known.device)
            agent_mask = eye.repeat(m, 1)  # (M*N, N)
            known = known.repeat_interleave(n, dim=0) * agent_mask[:, :, None, None]  # (M*N, N, K+1, D)
            target = target.repeat_interleave(n)
        planner: JointPlanner = self.ema.model  # type: ignore[assignment]
        cond = target[:, None].to(known.dtype)  # (rows, 1)
        guided = ClassifierFreeGuidance(planner.denoiser, c.guidance_weight)  # type: ignore[arg-type]
        plans = planner.plan(planner.condition(known, agent_mask), cond=cond, denoiser=guided, generator=generator)
        return plans.view(m, -1, n, c.window, self.spec.obs_dim).permute(0, 3, 1, 2, 4)  # (M, W, R, N, D)

    # ------------------------------------------------------------------ persistence (core/checkpoint.py)
    def checkpoint_spaces(self) -> dict[str, Any]:
        """The agents and their spaces (:class:`~diffagents.agents.multiagent.madiff_data.AgentSpec`)."""
        return {"agents": self.spec.to_dict()}

    @classmethod
    def from_checkpoint_meta(cls, meta: dict[str, Any], config: MADiffConfig, *, env: Any, device: Any) -> MADiff:
        return cls(env=env, device=device, _spec=AgentSpec.from_dict(meta["agents"]), **vars(config))

    def extra_arrays(self) -> dict[str, np.ndarray]:
        return {} if self.targets is None else {"targets": self.targets}

    def load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if "targets" in arrays:
            self.targets = np.asarray(arrays["targets"], dtype=np.float32)
