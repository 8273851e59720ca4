"""The offline front-end of the agent kernel: an SB3 ``BaseAlgorithm`` whose ``learn()`` takes gradient steps on a
Minari dataset (docs/architecture.md).

Conventions (docs/integration.md Sec. 1.2): one timestep = one gradient step, so ``total_timesteps``, LR schedules,
``EvalCallback(eval_freq=...)`` and ``CheckpointCallback(save_freq=...)`` all count gradient steps. The env is only
used for spaces and by evaluation callbacks; it is never stepped. ``learn`` is the one training loop
(:mod:`diffagents.core.loop`); ``save`` / ``load`` and training checkpoints are the one checkpoint format
(:mod:`diffagents.core.checkpoint`, JSON + safetensors, never pickle); input validation and action scaling are in
:mod:`~diffagents.core.agent_io`.

A concrete agent (one file per paper) provides a config dataclass and the learner contract
(:mod:`diffagents.core.contract`): ``build``, ``train_step``, ``act``, ``tiny_config`` and its capability flags,
and registers itself with :func:`~diffagents.core.registry.register_agent`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from diffagents.core import agent_io
from diffagents.core.checkpoint import load_agent, save_agent
from diffagents.core.config import AgentConfig
from diffagents.core.contract import AgentTraits
from diffagents.core.loop import run_training, setup_learn
from diffagents.cuda_graph import Out, maybe_graphed
from diffagents.distributed import broadcast_modules, local_device, maybe_init
from diffagents.spaces import space_from_dict, space_to_dict, spaces_equal
from diffagents.training import EMA, Updater, autocast, make_lr_schedule
from diffagents.transfer import to_device


class ModuleBundle(BasePolicy):
    """The agent's networks as one SB3 ``BasePolicy`` (so ``set_training_mode``/``get_parameters`` work)."""

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Space[Any],
                 modules: dict[str, nn.Module]) -> None:
        super().__init__(observation_space, action_space)
        self.nets = nn.ModuleDict(modules)

    def _predict(self, observation: Any, deterministic: bool = False) -> torch.Tensor:
        raise RuntimeError("call agent.predict(); the bundle only holds the networks")


class OfflineAgent(BaseAlgorithm, AgentTraits):
    """Base of every offline diffusion agent. See the module docstring for the subclass contract.

    Args:
        env: a Gymnasium env, env id or VecEnv (for spaces and evaluation callbacks), or None.
        dataset: a Minari dataset, its id or a local path; None when loading or training later via
            :meth:`set_dataset`.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: RNG seed (Python, NumPy, torch, action space).
        verbose: 0 quiet, 1 log to stdout.
        tensorboard_log: TensorBoard log folder.
        **hyperparameters: fields of the agent's config dataclass.
    """

    action_space: spaces.Box
    policy: ModuleBundle

    def __init__(self, env: Any = None, dataset: Any = None, *, device: torch.device | str = "auto",
                 seed: int | None = None, verbose: int = 0, tensorboard_log: str | None = None,
                 _init_setup_model: bool = True, _spaces: tuple[Any, Any] | None = None,
                 **hyperparameters: Any) -> None:
        self.config = self.config_class.from_kwargs(type(self).__name__, hyperparameters)
        from diffagents.data import ObsFlattener, load_dataset

        self.dataset = load_dataset(dataset) if dataset is not None else None
        if env is None and self.dataset is None and _spaces is None:
            raise ValueError("env/dataset: at least one of env or dataset is needed to know the spaces, got neither")
        self._distributed = False
        device = local_device(device)
        super().__init__(
            policy=ModuleBundle, env=env, learning_rate=make_lr_schedule(self.config.learning_rate,
                                                                         self.config.lr_schedule),
            tensorboard_log=tensorboard_log, verbose=verbose, device=device, support_multi_env=True, seed=seed,
            supported_action_spaces=(spaces.Box,),
        )
        raw_obs_space, action_space = self._resolve_spaces(_spaces)
        self.observation_space = raw_obs_space
        self.action_space = action_space
        self.flattener = ObsFlattener.from_space(raw_obs_space)
        self.obs_dim = int(np.prod(self.flattener.flat_space.shape))
        self.act_dim = int(np.prod(action_space.shape))
        self._transitions: Any = None
        self._sampler: Any = None
        self.normalizers: dict[str, Any] = {}
        self.ema: EMA | None = None
        self.updaters: dict[str, Updater] = {}
        self.train_wall_s = 0.0  # seconds spent in learn() over this agent's training, resumed runs included
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ spaces and data
    def _resolve_spaces(self, given: tuple[Any, Any] | None) -> tuple[spaces.Space[Any], spaces.Box]:
        env_spaces = None
        if self.env is not None:
            env_spaces = (self.env.observation_space, self.env.action_space)
        data_spaces = None
        if self.dataset is not None:
            data_spaces = (self.dataset.observation_space, self.dataset.action_space)
        for name, cand in (("checkpoint", given), ("dataset", data_spaces)):
            if cand is not None and env_spaces is not None:
                for label, a, b in (("observation_space", cand[0], env_spaces[0]),
                                    ("action_space", cand[1], env_spaces[1])):
                    if not spaces_equal(a, b):
                        raise ValueError(f"{label}: the env has {b} but the {name} has {a}")
        obs_space, act_space = env_spaces or given or data_spaces  # type: ignore[misc]
        if not isinstance(act_space, spaces.Box):
            raise TypeError(f"action_space: {type(self).__name__} needs a Box action space, got {act_space}")
        return obs_space, act_space

    def set_dataset(self, dataset: Any) -> None:
        """Attach (or replace) the training data; normalizers are fitted only if not already fitted/loaded."""
        from diffagents.data import load_dataset

        ds = load_dataset(dataset)
        for label, a, b in (("observation_space", ds.observation_space, self.observation_space),
                            ("action_space", ds.action_space, self.action_space)):
            if not spaces_equal(a, b):
                raise ValueError(f"{label}: the agent was built for {b} but the dataset has {a}")
        self.dataset = ds
        self._attach_data()

    def _attach_data(self) -> None:
        from diffagents.data import TensorSampler

        arrays = self._dataset_arrays()
        if "obs" not in self.normalizers:
            self.normalizers["obs"] = self.fit_obs_normalizer(arrays["obs"])
        self._sampler = TensorSampler(self._preprocess_arrays(arrays), device=self.device)

    def _dataset_arrays(self) -> dict[str, np.ndarray]:
        """Transition arrays from the dataset (override for window-based agents)."""
        from diffagents.data import to_transitions

        tr = to_transitions(self.dataset, flattener=self.flattener)
        self._transitions = tr
        return {
            "obs": tr.observations, "action": tr.actions, "reward": tr.rewards.astype(np.float32),
            "next_obs": tr.next_observations, "terminated": tr.terminations.astype(np.float32),
        }

    def fit_obs_normalizer(self, obs: np.ndarray) -> Any:
        from diffagents.data import make_normalizer

        kind = self.config.obs_normalization
        return None if kind == "none" else make_normalizer(kind).fit(obs)

    def _preprocess_arrays(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Normalise observations and scale actions to [-1, 1] once, before the data goes to the device."""
        out = dict(arrays)
        for key in ("obs", "next_obs"):
            if key in out:
                out[key] = self.normalize_obs(out[key])
        if "action" in out:
            out["action"] = self.scale_action(out["action"])
        return out

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        norm = self.normalizers.get("obs")
        return np.asarray(norm.normalize(obs) if norm is not None else obs, dtype=np.float32)

    # ------------------------------------------------------------------ action scaling
    def scale_action(self, action: np.ndarray) -> np.ndarray:
        """Env-space actions -> [-1, 1] using the action space bounds (clipped)."""
        return agent_io.scale_action(self.action_space, action)

    def unscale_action(self, scaled: np.ndarray) -> np.ndarray:
        """[-1, 1] actions -> env-space actions (the action space's dtype, inside its bounds)."""
        return agent_io.unscale_action(self.action_space, scaled)

    # ------------------------------------------------------------------ model
    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        modules = self.build(self.obs_dim, self.act_dim)
        self.policy = ModuleBundle(self.observation_space, self.action_space, modules).to(self.device)
        if self.ema is not None:  # the acting copy lives outside the bundle
            self.ema.model.to(self.device)
        self.updaters = self._make_updaters()
        if self.config.compile:
            for module in [*self.nets.values(), *([self.ema.model] if self.ema is not None else [])]:
                module.compile()
        self._distributed = maybe_init(self.device)
        if self._distributed:
            broadcast_modules([self.policy] + ([self.ema.model] if self.ema is not None else []))
        if self.dataset is not None:
            self._attach_data()

    def build(self, obs_dim: int, act_dim: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _make_updaters(self) -> dict[str, Updater]:
        """One Adam :class:`Updater` per network with trainable parameters (override for other settings)."""
        return {name: Updater(m.parameters(), self.config.learning_rate, name=name) for name, m in self.nets.items()
                if any(p.requires_grad for p in m.parameters())}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def act(self, obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, deterministic: bool
             ) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    @property
    def nets(self) -> nn.ModuleDict:
        return self.policy.nets

    # ------------------------------------------------------------------ learn (core/loop.py)
    def _setup_learn(self, total_timesteps: int, callback: Any = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, BaseCallback]:
        """SB3's set-up without resetting the env (offline training never steps it)."""
        return setup_learn(self, total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def sample_batch(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One minibatch of the agent's ``batch_spec`` from the attached data, on the device."""
        return self._sampler.sample(self.config.batch_size, generator=generator)  # type: ignore[no-any-return]

    def set_training_mode(self, mode: bool) -> None:
        """``train()`` / ``eval()`` on every network."""
        self.policy.set_training_mode(mode)

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1000,  # type: ignore[override]
              tb_log_name: str | None = None, reset_num_timesteps: bool = True,
              progress_bar: bool = False, checkpoint_dir: str | os.PathLike[str] | None = None,
              checkpoint_every: int = 1000, keep_checkpoints: int = 2) -> OfflineAgent:
        """Take ``total_timesteps`` gradient steps on the dataset (SB3 callbacks run after every step); the one
        training loop, :func:`diffagents.core.loop.run_training`.

        Args:
            checkpoint_dir: if set, a full training checkpoint (weights, EMA, optimizers, normalizers, RNG states,
                counters) is written atomically there every ``checkpoint_every`` steps and at the end; calling
                ``learn`` again with the same folder resumes from the latest one, so a killed run continues and
                ends with the same weights as an uninterrupted run (CPU, same seed).
            keep_checkpoints: how many of the newest checkpoints to keep.
        """
        if self._sampler is None:
            raise RuntimeError(f"{type(self).__name__}.learn: no dataset attached; pass dataset= or call "
                               "set_dataset() first")
        return run_training(self, total_timesteps, callback, log_interval=log_interval,  # type: ignore[no-any-return]
                            tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                            progress_bar=progress_bar, checkpoint_dir=checkpoint_dir,
                            checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints)

    # ------------------------------------------------------------------ predict
    def prepare_obs(self, observation: Any) -> tuple[torch.Tensor, bool]:
        """Validated, flattened and normalised observations ``(E, obs_dim)`` on the device, and whether the input
        was a VecEnv batch (see :func:`~diffagents.core.agent_io.flat_observations`)."""
        flat, vectorized = agent_io.flat_observations(self.flattener, observation, self.obs_dim,
                                                      self.observation_space)
        return to_device(self.normalize_obs(flat), self.device), vectorized  # pinned, non-blocking on CUDA

    def predict(self, observation: Any, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3 ``predict``: single or batched (VecEnv) observations -> env-space actions and the next state."""
        obs, vectorized = self.prepare_obs(observation)
        self.policy.set_training_mode(False)
        with torch.no_grad(), autocast(self.device, self.config.precision):
            actions, state = self.act(obs, state, episode_start, deterministic)
        act = self.unscale_action(actions.float().cpu().numpy()).reshape((-1, *tuple(self.action_space.shape)))
        return (act if vectorized else act[0]), state

    def _graphed(self, name: str, fn: Callable[..., Out], *inputs: torch.Tensor,
                 generator: torch.Generator | None = None, key: Hashable = ()) -> Out:
        """Act-time sampling ``fn(*inputs, generator=generator)``: replayed from a CUDA graph per input signature
        when ``config.cuda_graph`` is on and the inputs are on CUDA, eager otherwise (identical on CPU).

        ``fn`` must be a pure tensor function (see :mod:`diffagents.cuda_graph`); ``key`` names the Python state
        it depends on that may change (e.g. the sampler, replaced by ``set_sampler``).
        """
        return maybe_graphed(self, self.config.cuda_graph, name, fn, *inputs, generator=generator, key=key)

    def set_sampler(self, sampler: str, num_inference_steps: int | None = None, **kwargs: Any) -> None:
        """Use another act-time sampler of :mod:`diffagents.diffusion` on the EMA model, e.g. ``"ddim"`` or
        ``"dpm"`` (DPM-Solver++) with few steps, or ``"ddpm"`` over all levels; training keeps its DDPM chain.

        Raises:
            TypeError: the agent has no diffusion sampler (consistency and distilled actors take
                ``sampler_steps`` in their config instead).
        """
        model = self.ema.model if self.ema is not None else None
        if not self.sampler_swappable or model is None:
            raise TypeError(f"set_sampler: {type(self).__name__} has no diffusion sampler to replace "
                            "(a consistency actor's step count is config.sampler_steps)")
        model.set_sampler(sampler, num_inference_steps, **kwargs)  # type: ignore[operator]

    def eval_generator(self, offset: int = 0) -> torch.Generator:
        """A generator seeded with ``config.eval_seed`` (plus ``offset``) for deterministic action sampling."""
        return torch.Generator(device=self.device).manual_seed(self.config.eval_seed + offset)

    # ------------------------------------------------------------------ persistence (core/checkpoint.py)
    def checkpoint_spaces(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild the networks: the spaces and the observation flattener."""
        return {"observation_space": space_to_dict(self.observation_space),
                "action_space": space_to_dict(self.action_space), "flattener": self.flattener.to_dict()}

    def restore_spaces(self, meta: dict[str, Any]) -> None:
        """Restore from a checkpoint's metadata what :meth:`checkpoint_spaces` saved beyond the spaces."""
        from diffagents.data import ObsFlattener

        self.flattener = ObsFlattener.from_dict(meta["flattener"])

    @classmethod
    def from_checkpoint_meta(cls, meta: dict[str, Any], config: AgentConfig, *, env: Any, device: Any
                             ) -> OfflineAgent:
        """An untrained agent with a checkpoint's spaces and config, bound to ``env`` (whose spaces must match)."""
        spaces_ = (space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]))
        return cls(env=env, dataset=None, device=device, _spaces=spaces_, **config.to_dict())

    @property
    def acting_needs_data(self) -> bool:
        """Whether acting with the current config needs something fitted on the dataset that the agent lacks
        (then attach one with :meth:`set_dataset`)."""
        return False

    def save(self, path: Any, exclude: Any = None, include: Any = None, *,  # type: ignore[override]
             weights_dtype: str | None = None) -> None:
        """Atomically write a pickle-free checkpoint (``.zip`` is appended if ``path`` has no suffix).

        Args:
            exclude: names of parts to leave out; ``["optimizers"]`` writes an inference-only file (about a third
                of the size; training can continue from it with fresh optimizer state); adding
                ``"training_weights"`` also leaves out the network the EMA copy averages where that copy is what
                acts (``ema_acts``; loading fills the network from it): about half the file of a planner or
                Diffusion Policy, less where critics dominate (the zoo's setting).
            weights_dtype: ``"float16"`` / ``"bfloat16"`` store the network weights at half size (the zoo's
                setting); loading casts them back to float32. None stores them exactly.
        """
        save_agent(self, path, exclude, weights_dtype=weights_dtype)

    @classmethod
    def load(cls, path: Any, env: Any = None, device: torch.device | str = "auto",  # type: ignore[override]
             dataset: Any = None, custom_objects: Any = None, print_system_info: bool = False,
             force_reset: bool = True, **kwargs: Any) -> OfflineAgent:
        """Rebuild an agent from a checkpoint written by :meth:`save`; never unpickles.

        Raises:
            CheckpointError: the file is corrupt, of another algorithm, or does not match ``env``'s spaces.
        """
        return load_agent(cls, path, env=env, device=device, dataset=dataset)
