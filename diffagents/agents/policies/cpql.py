"""CPQL (Chen, Li & Zhao 2023, "Boosting Continuous Control with Consistency Policy"): consistency policy Q-learning.

The actor is a consistency model over actions in [-1, 1] conditioned on the state (Karras sigmas,
``sigma_min = 0.002``, ``sigma_max = 80``, ``sigma_data = 0.5``, ``rho = 7``; see
:class:`diffagents.roles.consistency_policy.ConsistencyActionPolicy`), so one network evaluation gives an action.
The actor loss is ``alpha * L_bc + eta * L_q``: ``L_bc`` is the consistency-training loss between two adjacent
sigmas of an ``N``-point Karras grid against a target (EMA) copy of the actor (``N = 40`` as in the official
code, or Song et al.'s growing ``N(k)`` with ``n_scales_final``), ``L_q`` is the Diffusion-QL normalised
``-Q / E|Q_other|`` (offline) or ``-min(Q1, Q2)`` (online, official code). Twin critics with a soft-updated
target are trained on ``r + gamma (1 - terminated) min Q'(s', a')`` with ``a'`` from the actor. Acting samples
``n_candidates`` one-step actions and picks one by ``softmax(Q)`` (argmax when deterministic).

One name, two algorithms: ``CPQL(env=..., dataset=...)`` returns an :class:`OfflineCPQL` (an
:class:`~diffagents.core.offline.OfflineAgent`, one timestep = one gradient step on the Minari data, alpha 1.0) and
``CPQL(env=...)`` returns an :class:`OnlineCPQL` (an SB3 ``OffPolicyAlgorithm`` that collects experience with
VecEnvs into an SB3 replay buffer, like SAC; alpha 0.05). Both build their networks and compute their losses with
the same module-level functions; ``CPQL.load`` dispatches on the checkpoint. Both save pickle-free checkpoints
(:mod:`diffagents.persistence`). ``isinstance(agent, CPQL)`` holds for either.

Differences from the official code (documented choices): the critic target is soft-updated with ``tau`` every
step (official: EMA 0.995 every 5 steps after step 1000); sampling clips only the sampled action, not the
consistency function inside the training loss. ``bc_loss="consistency"`` optimises the consistency loss the paper
describes, ``bc_loss="recon"`` the reconstruction term the official code's ``terms["loss"]`` returns (the loss the
paper's numbers were trained with). Offline, ``recon`` is the default: at 3000 steps it averaged 48.1 normalized over
the seven benchmark datasets against 28.4 for ``consistency`` (``benchmarks/RESULTS.md``, "CPQL BC term"); online
keeps ``consistency``: against SAC the two terms measured the same within noise (Pendulum and Hopper, 3 seeds).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from diffagents.core import agent_io
from diffagents.core.checkpoint import load_agent, save_agent
from diffagents.core.config import AgentConfig
from diffagents.core.contract import AgentTraits
from diffagents.core.offline import OfflineAgent
from diffagents.core.registry import register_agent
from diffagents.cuda_graph import maybe_graphed
from diffagents.nn import MLPDenoiser, TwinQ
from diffagents.persistence import CheckpointError, read_checkpoint
from diffagents.roles import scored_candidates, select_candidates
from diffagents.roles.consistency_policy import ConsistencyActionPolicy, ct_discretization
from diffagents.spaces import space_from_dict, space_to_dict, spaces_equal
from diffagents.training import EMA, Updater, check_finite, make_lr_schedule, soft_update
from diffagents.transfer import to_device


@dataclass(kw_only=True)
class CPQLConfig(AgentConfig):
    """Hyperparameters of CPQL (official ``main.py`` / ``agents/ql_cm.py`` defaults).

    ``alpha``, ``q_normalize`` and ``critic_layer_norm`` default to None = the official per-mode value
    (offline: 1.0 / True / True; online: 0.05 / False / False); ``bc_loss`` None = ``"recon"`` offline and
    ``"consistency"`` online (see the module docstring). ``buffer_size``, ``learning_starts``,
    ``train_freq`` and ``gradient_steps`` are used by the online variant only. ReLU instead of Mish by default
    (faster on CPU; ``activation="mish"`` for the paper setting).
    """

    hidden: tuple[int, ...] = (256, 256, 256)
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    activation: str = "relu"
    time_dim: int = 16
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    n_scales: int = 40
    n_scales_final: int | None = None
    weighting: str = "karras"
    bc_loss: str | None = None
    alpha: float | None = None
    eta: float = 1.0
    q_normalize: bool | None = None
    critic_layer_norm: bool | None = None
    gamma: float = 0.99
    tau: float = 0.005
    grad_clip: float | None = 2.0
    ema_decay: float = 0.995
    ema_start: int = 1000
    ema_every: int = 5
    max_q_backup: bool = False
    n_backup_samples: int = 10
    n_candidates: int = 50
    sampler_steps: int = 1
    buffer_size: int = 1_000_000
    learning_starts: int = 10_000
    train_freq: int = 1
    gradient_steps: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(0 < self.sigma_min < self.sigma_max, "sigma_min", "0 < sigma_min < sigma_max", self.sigma_min)
        self._check(self.n_scales >= 2, "n_scales", ">= 2", self.n_scales)
        self._check(self.n_scales_final is None or self.n_scales_final >= self.n_scales, "n_scales_final",
                    ">= n_scales or None", self.n_scales_final)
        self._check(self.weighting in ("karras", "uniform"), "weighting", "'karras' or 'uniform'", self.weighting)
        self._check(self.bc_loss in (None, "consistency", "recon"), "bc_loss", "'consistency', 'recon' or None",
                    self.bc_loss)
        self._check(self.alpha is None or self.alpha >= 0, "alpha", ">= 0 or None", self.alpha)
        self._check(self.eta >= 0, "eta", ">= 0", self.eta)
        self._check(0 <= self.gamma <= 1, "gamma", "in [0, 1]", self.gamma)
        self._check(0 < self.tau <= 1, "tau", "in (0, 1]", self.tau)
        self._check(self.n_candidates >= 1, "n_candidates", ">= 1", self.n_candidates)
        self._check(self.sampler_steps >= 1, "sampler_steps", ">= 1", self.sampler_steps)
        self._check(self.train_freq >= 1 and self.gradient_steps >= 1, "train_freq/gradient_steps", ">= 1",
                    (self.train_freq, self.gradient_steps))

    def resolved(self, online: bool) -> tuple[float, bool, bool]:
        """``(alpha, q_normalize, critic_layer_norm)`` with the per-mode defaults filled in."""
        alpha = self.alpha if self.alpha is not None else (0.05 if online else 1.0)
        qn = self.q_normalize if self.q_normalize is not None else not online
        ln = self.critic_layer_norm if self.critic_layer_norm is not None else not online
        return alpha, qn, ln

    def resolved_bc_loss(self, online: bool) -> str:
        """``bc_loss`` with the per-mode default filled in: ``"recon"`` offline, ``"consistency"`` online."""
        return self.bc_loss or ("consistency" if online else "recon")


# ---------------------------------------------------------------------------------------------- shared pieces
def build_cpql_modules(obs_dim: int, act_dim: int, c: CPQLConfig, *, online: bool
                       ) -> tuple[ConsistencyActionPolicy, TwinQ, TwinQ, EMA]:
    """Actor, critic, critic target and the actor's EMA target (the consistency-loss target network)."""
    net = MLPDenoiser(x_dim=act_dim, cond_dim=obs_dim, hidden=c.hidden, time_dim=c.time_dim,
                      activation=c.activation)
    actor = ConsistencyActionPolicy(net, act_dim, sigma_min=c.sigma_min, sigma_max=c.sigma_max,
                                    sigma_data=c.sigma_data, rho=c.rho, sampler_steps=c.sampler_steps)
    critic = TwinQ(obs_dim, act_dim, hidden=c.critic_hidden, activation=c.activation,
                   layer_norm=c.resolved(online)[2])
    critic_target = TwinQ(obs_dim, act_dim, hidden=c.critic_hidden, activation=c.activation,
                          layer_norm=c.resolved(online)[2]).requires_grad_(False)
    critic_target.load_state_dict(critic.state_dict())
    ema = EMA(actor, decay=c.ema_decay, start_step=c.ema_start, update_every=c.ema_every)
    return actor, critic, critic_target, ema


def make_cpql_updaters(actor: nn.Module, critic: nn.Module, c: CPQLConfig) -> dict[str, Updater]:
    return {"actor": Updater(actor.parameters(), c.learning_rate, grad_clip=c.grad_clip, name="actor"),
            "critic": Updater(critic.parameters(), c.learning_rate, grad_clip=c.grad_clip, name="critic")}


def current_n_scales(c: CPQLConfig, progress: float) -> int:
    """``N`` of the Karras grid: fixed ``n_scales`` or Song et al.'s schedule from ``n_scales`` to the final."""
    return c.n_scales if c.n_scales_final is None else ct_discretization(progress, c.n_scales, c.n_scales_final)


def cpql_train_step(actor: ConsistencyActionPolicy, ema: EMA, critic: TwinQ, critic_target: TwinQ,
                    updaters: dict[str, Updater], batch: dict[str, torch.Tensor], c: CPQLConfig, *, online: bool,
                    step: int, progress: float) -> dict[str, torch.Tensor]:
    """One critic and one actor update (batch: ``obs, action ([-1, 1]), reward, next_obs, terminated``, all
    ``(B, ...)``); soft-updates the critic target and steps the actor's EMA target."""
    alpha, q_normalize, _ = c.resolved(online)
    obs, action = batch["obs"], batch["action"]
    with torch.no_grad():
        next_obs = batch["next_obs"]
        if c.max_q_backup:
            n = c.n_backup_samples
            obs_rep, nxt = actor.sample_candidates(next_obs, n)
            q1t, q2t = critic_target(obs_rep, nxt)
            target_v = torch.minimum(q1t.view(-1, n).amax(1), q2t.view(-1, n).amax(1))
        else:
            target_v = critic_target.q_min(next_obs, actor.sample(next_obs))
        # bootstrap through truncations, not terminations
        target = batch["reward"] + (1.0 - batch["terminated"]) * c.gamma * target_v
    q1, q2 = critic(obs, action)
    critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
    updaters["critic"].step(critic_loss)

    target_actor: ConsistencyActionPolicy = ema.model  # type: ignore[assignment]
    cons, extra = actor.consistency_loss(action, obs, target_actor, current_n_scales(c, progress),
                                         weighting=c.weighting)
    bc_loss = cons if c.resolved_bc_loss(online) == "consistency" else extra["recon_loss"]
    q1n, q2n = critic(obs, actor.sample(obs))
    if not q_normalize:
        q_loss = -torch.minimum(q1n, q2n).mean()
    elif random.random() > 0.5:  # the critic in the numerator is picked at random (official code)
        q_loss = -q1n.mean() / q2n.abs().mean().detach()
    else:
        q_loss = -q2n.mean() / q1n.abs().mean().detach()
    actor_loss = alpha * bc_loss + c.eta * q_loss
    updaters["actor"].step(actor_loss)
    ema.update(actor, step)
    soft_update(critic_target, critic, c.tau)
    return {"critic_loss": critic_loss.detach(), "bc_loss": bc_loss.detach(), "q_loss": q_loss.detach(),
            "consistency_loss": extra["consistency_loss"], "recon_loss": extra["recon_loss"].detach(),
            "actor_loss": actor_loss.detach(), "q_mean": q1.detach().mean()}


def cpql_select_action(actor: ConsistencyActionPolicy, critic_target: TwinQ, obs: torch.Tensor, n: int,
                       deterministic: bool, generator: torch.Generator | None, *, owner: Any = None) -> torch.Tensor:
    """``n`` one-step candidates per observation, one picked by ``softmax(Q)`` (argmax when deterministic).

    ``owner`` (the agent or its online policy) holds the CUDA graphs of the candidate step, used when its
    ``config.cuda_graph`` is on (:func:`diffagents.cuda_graph.maybe_graphed`); None runs eagerly.
    """
    enabled = owner is not None and owner.config.cuda_graph
    scored = maybe_graphed(owner, enabled, "act", partial(scored_candidates, actor.sample, critic_target, n=n), obs,
                           generator=generator, key=(actor.sampler,))
    if n == 1:
        return scored[0]
    return select_candidates(scored[0], scored[1], n, deterministic=deterministic)


# ---------------------------------------------------------------------------------------------- offline
@register_agent
class OfflineCPQL(OfflineAgent):
    """Offline CPQL trained from a Minari dataset (built by ``CPQL(env=..., dataset=...)``)."""

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return dict(hidden=(32, 32), critic_hidden=(32, 32), batch_size=16, n_candidates=4, ema_start=2,
                    ema_every=1, n_scales=8)

    config_class = CPQLConfig
    acting_fields = OfflineAgent.acting_fields | {"n_candidates"}  # sampler_steps also shapes the Q targets
    ema_acts = False  # the EMA is the consistency target; the trained actor acts
    config: CPQLConfig

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        actor, critic, critic_target, self.ema = build_cpql_modules(obs_dim, act_dim, self.config, online=False)
        return {"actor": actor, "critic": critic, "critic_target": critic_target}

    def _make_updaters(self) -> dict[str, Updater]:
        return make_cpql_updaters(self.nets["actor"], self.nets["critic"], self.config)

    @property
    def actor(self) -> ConsistencyActionPolicy:
        return self.nets["actor"]  # type: ignore[return-value]

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        assert self.ema is not None
        return cpql_train_step(self.actor, self.ema, self.nets["critic"], self.nets["critic_target"],  # type: ignore[arg-type]
                               self.updaters, batch, self.config, online=False, step=self.num_timesteps,
                               progress=1.0 - self._current_progress_remaining)

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        gen = self.eval_generator() if deterministic else None
        return cpql_select_action(self.actor, self.nets["critic_target"], obs, self.config.n_candidates,  # type: ignore[arg-type]
                                  deterministic, gen, owner=self), state


# ---------------------------------------------------------------------------------------------- online
class CPQLPolicy(BasePolicy):
    """SB3 policy of online CPQL: actor, twin critics, targets and optimizers; ``_predict`` runs the
    consistency sampler and returns actions in [-1, 1] (``squash_output=True``)."""

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Box, lr_schedule: Any,
                 config: CPQLConfig | None = None) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        self.config = config or CPQLConfig()
        obs_dim = int(np.prod(observation_space.shape))  # type: ignore[arg-type]
        act_dim = int(np.prod(action_space.shape))
        self.actor, self.critic, self.critic_target, self.ema = build_cpql_modules(obs_dim, act_dim, self.config,
                                                                                   online=True)
        self.actor_target = self.ema.model  # registered, so .to(device) moves it
        self.updaters = make_cpql_updaters(self.actor, self.critic, self.config)
        self.optimizer = self.updaters["actor"].optimizer

    def _predict(self, observation: Any, deterministic: bool = False) -> torch.Tensor:
        obs = observation.float().flatten(1)
        gen = torch.Generator(device=obs.device).manual_seed(self.config.eval_seed) if deterministic else None
        return cpql_select_action(self.actor, self.critic_target, obs, self.config.n_candidates, deterministic, gen,
                                  owner=self)


@register_agent(kind="online")
class OnlineCPQL(OffPolicyAlgorithm, AgentTraits):
    """Online CPQL as an SB3 ``OffPolicyAlgorithm`` (built by ``CPQL(env=...)``); SB3 collects the data.

    Example:
        >>> agent = CPQL(env=make_vec_env("Pendulum-v1", n_envs=2), learning_starts=1000)
        >>> agent.learn(20_000)
    """

    policy_aliases = {"MlpPolicy": CPQLPolicy}  # noqa: RUF012
    policy: CPQLPolicy
    config_class = CPQLConfig
    ema_acts: ClassVar[bool] = False  # the EMA is the consistency target; the trained actor acts
    acting_fields: ClassVar[frozenset[str]] = OfflineCPQL.acting_fields

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {**OfflineCPQL.tiny_config(), "learning_starts": 16}

    def __init__(self, env: Any = None, policy: Any = "MlpPolicy", *, device: torch.device | str = "auto",
                 seed: int | None = None, verbose: int = 0, tensorboard_log: str | None = None,
                 _init_setup_model: bool = True, _spaces: tuple[Any, Any] | None = None,
                 **hyperparameters: Any) -> None:
        self.config = c = CPQLConfig.from_kwargs(type(self).__name__, hyperparameters)
        self.normalizers: dict[str, Any] = {}  # online CPQL acts on raw observations
        self.train_wall_s = 0.0
        if env is None and _spaces is None:
            raise ValueError("env: online CPQL needs an env (pass dataset= as well for offline training)")
        super().__init__(policy, env, make_lr_schedule(c.learning_rate, c.lr_schedule), buffer_size=c.buffer_size,
                         learning_starts=c.learning_starts, batch_size=c.batch_size, tau=c.tau, gamma=c.gamma,
                         train_freq=c.train_freq, gradient_steps=c.gradient_steps, policy_kwargs={"config": c},
                         tensorboard_log=tensorboard_log, verbose=verbose, device=device, support_multi_env=True,
                         seed=seed, sde_support=False, supported_action_spaces=(spaces.Box,))
        if env is None:
            assert _spaces is not None
            self.observation_space, self.action_space = _spaces
            self.n_envs = 1
        elif _spaces is not None:
            for label, a, b in (("observation_space", _spaces[0], self.observation_space),
                                ("action_space", _spaces[1], self.action_space)):
                if not spaces_equal(a, b):
                    raise ValueError(f"{label}: the env has {b} but the checkpoint has {a}")
        if not isinstance(self.observation_space, spaces.Box):
            raise TypeError(f"observation_space: online CPQL needs a Box observation space, got "
                            f"{self.observation_space}")
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ the learner contract
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One critic and one actor update on a transitions batch (actions in [-1, 1])."""
        p = self.policy
        return cpql_train_step(p.actor, p.ema, p.critic, p.critic_target, p.updaters, batch, self.config,
                               online=True, step=self._n_updates, progress=1.0 - self._current_progress_remaining)

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
            ) -> tuple[torch.Tensor, Any]:
        """Actions in [-1, 1] for flat observations ``(E, obs_dim)`` on the device."""
        p = self.policy
        gen = torch.Generator(device=obs.device).manual_seed(self.config.eval_seed) if deterministic else None
        return cpql_select_action(p.actor, p.critic_target, obs, self.config.n_candidates, deterministic, gen,
                                  owner=p), state

    def prepare_obs(self, observation: Any) -> tuple[torch.Tensor, bool]:
        """Validated observations as a float ``(E, obs_dim)`` tensor on the device, and whether they came as a batch
        (the same checks as every agent's, :func:`~diffagents.core.agent_io.flat_observations`)."""
        from diffagents.data import ObsFlattener

        flattener = ObsFlattener.from_space(self.observation_space)
        flat, vectorized = agent_io.flat_observations(flattener, observation, flattener.dim, self.observation_space)
        return to_device(flat, self.device), vectorized

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """Online CPQL acts on raw observations."""
        return np.asarray(obs, dtype=np.float32)

    def set_training_mode(self, mode: bool) -> None:
        self.policy.set_training_mode(mode)

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        self.set_training_mode(True)
        self._update_learning_rate([u.optimizer for u in self.updaters.values()])
        stats: dict[str, torch.Tensor] = {}
        assert self.replay_buffer is not None
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            batch = {"obs": data.observations.float().flatten(1), "action": data.actions.float(),
                     "reward": data.rewards.float().view(-1), "next_obs": data.next_observations.float().flatten(1),
                     "terminated": data.dones.float().view(-1)}  # SB3: dones exclude time-limit truncations
            stats = self.train_step(batch)
            self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, value in check_finite(stats, self._n_updates).items():  # type: ignore[arg-type]
            self.logger.record(f"train/{key}", value)

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 4,  # type: ignore[override]
              tb_log_name: str = "CPQL", reset_num_timesteps: bool = True, progress_bar: bool = False,
              checkpoint_dir: str | os.PathLike[str] | None = None, checkpoint_every: int = 1000,
              keep_checkpoints: int = 2) -> OnlineCPQL:
        """SB3's ``learn`` (one timestep = one env step per env).

        Args:
            checkpoint_dir: if set, a full training checkpoint (networks, optimizers, RNG states, the replay
                buffer, SB3's last observations and every env's state) is written there at the start of the first
                rollout after each ``checkpoint_every`` env steps; calling ``learn`` again with the same folder
                resumes from the newest one and ends with the weights of an uninterrupted run (CPU, same seed;
                DummyVecEnv of MuJoCo or classic-control envs, see :mod:`diffagents.core.online_resume`).
        """
        if checkpoint_dir is not None:
            from stable_baselines3.common.callbacks import CallbackList, ConvertCallback

            from diffagents.core.online_resume import OnlineCheckpoint, check_resumable_env, resume_online

            if checkpoint_every < 1:
                raise ValueError(f"checkpoint_every: expected >= 1, got {checkpoint_every}")
            check_resumable_env(self.env)
            folder = Path(checkpoint_dir)
            if resume_online(self, folder):
                total_timesteps, reset_num_timesteps = total_timesteps - self.num_timesteps, False
            saver = OnlineCheckpoint(folder, checkpoint_every, keep_checkpoints)
            callbacks = callback if isinstance(callback, list) else [callback] if callback is not None else []
            callback = CallbackList([c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in callbacks]
                                    + [saver])
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)

    # ------------------------------------------------------------------ the kernel's checkpoint (core/checkpoint.py)
    @property
    def nets(self) -> dict[str, nn.Module]:
        p = self.policy
        return {"actor": p.actor, "critic": p.critic, "critic_target": p.critic_target}

    @property
    def ema(self) -> EMA:
        return self.policy.ema

    @property
    def updaters(self) -> dict[str, Updater]:
        return self.policy.updaters

    def checkpoint_spaces(self) -> dict[str, Any]:
        return {"observation_space": space_to_dict(self.observation_space),
                "action_space": space_to_dict(self.action_space)}

    @classmethod
    def from_checkpoint_meta(cls, meta: dict[str, Any], config: CPQLConfig, *, env: Any, device: Any) -> OnlineCPQL:
        spaces_ = (space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]))
        return cls(env=env, device=device, _spaces=spaces_, **config.to_dict())

    def save(self, path: Any, exclude: Any = None, include: Any = None, *,  # type: ignore[override]
             weights_dtype: str | None = None) -> None:
        """Atomically write a JSON + safetensors checkpoint (the replay buffer is not saved); ``exclude`` and
        ``weights_dtype`` as in :meth:`OfflineAgent.save`."""
        save_agent(self, path, exclude, weights_dtype=weights_dtype)

    @classmethod
    def load(cls, path: Any, env: Any = None, device: torch.device | str = "auto",  # type: ignore[override]
             custom_objects: Any = None, print_system_info: bool = False, force_reset: bool = True,
             **kwargs: Any) -> OnlineCPQL:
        """Rebuild from a checkpoint written by :meth:`save`; never unpickles (raises :class:`CheckpointError`)."""
        return load_agent(cls, path, env=env, device=device)  # type: ignore[no-any-return]

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        raise NotImplementedError("load_replay_buffer: SB3 replay-buffer files are pickles, which diffagents "
                                  "never loads; refill the buffer from the env or a Minari dataset instead")


# ---------------------------------------------------------------------------------------------- factory
class _CPQLMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, (OfflineCPQL, OnlineCPQL))


@register_agent(kind="facade")
class CPQL(metaclass=_CPQLMeta):
    """``CPQL(env=..., dataset=...)`` -> :class:`OfflineCPQL`; ``CPQL(env=...)`` -> :class:`OnlineCPQL`.

    Keyword arguments are :class:`CPQLConfig` fields plus ``device``, ``seed``, ``verbose``, ``tensorboard_log``.
    """

    config_class = CPQLConfig

    def __new__(cls, env: Any = None, dataset: Any = None, **kwargs: Any) -> Any:
        if dataset is not None:
            return OfflineCPQL(env=env, dataset=dataset, **kwargs)
        return OnlineCPQL(env=env, **kwargs)

    @classmethod
    def load(cls, path: Any, env: Any = None, device: torch.device | str = "auto", dataset: Any = None,
             **kwargs: Any) -> Any:
        """Load an offline or online CPQL checkpoint (dispatching on its ``algo``); never unpickles."""
        algo = read_checkpoint(path, load_optimizers=False).meta.get("algo")
        if algo == OfflineCPQL.agent_name:
            return OfflineCPQL.load(path, env=env, device=device, dataset=dataset)
        if algo == OnlineCPQL.agent_name:
            if dataset is not None:
                raise ValueError("dataset: an online CPQL checkpoint trains from its env, not from a dataset")
            return OnlineCPQL.load(path, env=env, device=device)
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {algo} agent, not a CPQL")
