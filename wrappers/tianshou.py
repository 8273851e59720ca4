"""Tianshou 2.0 integration: any diffagents agent as a Tianshou ``Policy`` and ``OfflineAlgorithm``.

The Tianshou objects share the agent's modules, optimizers, EMA and normalizers, so training through Tianshou's
``OfflineTrainer`` and through ``agent.learn()`` update the same weights, and ``agent.save()`` / ``Agent.load()``
work before or after either (docs/integration.md Sec. 2 for the 2.0 API).

* :func:`as_policy` runs in ``Collector`` evaluation with Dummy / Subproc vector envs; plan and action-chunk caches
  travel in Tianshou's ``state`` as a ``Batch`` (rows the Collector zeroes for finished envs restart the plan);
  evaluation (outside a training step) is deterministic.
* :func:`as_algorithm` trains from a Tianshou ``ReplayBuffer``: transition agents use the sampled transitions,
  planner agents get horizon-H windows gathered with ``buffer.next`` (padding masked after episode ends) and
  returns-to-go precomputed by ``process_buffer``; action-chunk agents get edge-padded observation-history /
  action-chunk windows gathered with ``buffer.prev`` / ``buffer.next``.
* Online agents (``agent_kind == "online"``, e.g. ``CPQL(env=...)``, an SB3 ``OffPolicyAlgorithm``) become a
  Tianshou ``OffPolicyAlgorithm`` for ``OffPolicyTrainer``: Tianshou's Collector gathers the data, the update is
  the agent's own ``train_step``.

Only the learner contract is used (:mod:`diffagents.core.contract`: ``batch_spec``, ``prepare_obs``,
``normalize_obs``, ``act``, ``train_step``, ``set_training_mode``); nothing dispatches on a class name.
* :func:`from_minari` builds a ``ReplayBuffer`` from a Minari dataset (flattened observations, env-space actions;
  ``process_buffer`` maps them into the policy's [-1, 1] space).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm, OffPolicyAlgorithm, Policy, TrainingStats
from tianshou.data import Batch, ReplayBuffer

from diffagents.core.contract import CHUNKS, TRANSITIONS, WINDOWS
from diffagents.data.batches import buffer_chunks, buffer_returns_to_go, buffer_transitions, buffer_windows
from diffagents.execution.plan_cache import PlanCache
from diffagents.transfer import to_device


def from_minari(dataset: Any, *, drop_invalid: bool = False) -> ReplayBuffer:
    """A Tianshou ``ReplayBuffer`` holding every transition of a Minari dataset (id, path or object).

    Observations are flattened with the dataset's :class:`~diffagents.data.ObsFlattener`; ``terminated`` and
    ``truncated`` come from the episodes (bootstrapping uses ``terminated`` only).
    """
    from diffagents.data import to_transitions

    tr = to_transitions(dataset, drop_invalid=drop_invalid)
    done = tr.terminations | tr.truncations
    done[np.r_[np.flatnonzero(np.diff(tr.episode_ids)), len(done) - 1]] = True  # episode ends
    buf = ReplayBuffer.from_data(obs=tr.observations, act=tr.actions, rew=tr.rewards, terminated=tr.terminations,
                                 truncated=done & ~tr.terminations, done=done, obs_next=tr.next_observations)
    buf.last_index[0] = len(buf) - 1  # from_data leaves it at 0, which makes prev()/next() stop at index 0
    return buf


class DiffusionAgentPolicy(Policy):
    """Tianshou ``Policy`` view of a diffagents agent (acts in [-1, 1]; Tianshou scales to the env bounds)."""

    def __init__(self, agent: Any) -> None:
        super().__init__(action_space=agent.action_space, observation_space=agent.observation_space,
                         action_scaling=True, action_bound_method="clip")
        self.agent = agent
        self.nets = agent.policy  # registers the agent's modules so train()/eval() and state_dict() reach them
        if agent.ema is not None:
            self.ema_model = agent.ema.model  # the acting weights belong to Tianshou's state_dict too

    @staticmethod
    def _obs(obs: Any) -> Any:
        if isinstance(obs, Batch):
            return {k: np.asarray(v) for k, v in obs.items()}
        return np.asarray(obs)

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        agent = self.agent
        obs_t, _ = agent.prepare_obs(self._obs(batch.obs))
        cache, starts = None, None
        if isinstance(state, Batch) and "age" in state.get_keys():
            age = np.asarray(state.age, dtype=np.int64).reshape(-1)
            starts = age == 0
            extra = {k[len("extra_"):]: torch.as_tensor(v, device=agent.device) for k, v in state.items()
                     if k.startswith("extra_")}
            cache = PlanCache(plans=torch.as_tensor(state.plans, device=agent.device), age=age,
                              extra=extra)
        deterministic = not self.is_within_training_step
        with torch.no_grad():
            act, cache = agent.act(obs_t, cache, starts, deterministic)
        new_state = None
        if isinstance(cache, PlanCache) and cache.plans is not None:
            new_state = Batch(plans=cache.plans, age=cache.age.copy(),
                              **{f"extra_{k}": v for k, v in cache.extra.items()})
        return Batch(act=act.float().cpu().numpy(), state=new_state)


@dataclass(kw_only=True)
class DiffusionTrainingStats(TrainingStats):
    """The agent's per-step statistics as float attributes (``critic_loss``, ``bc_loss``, ...)."""

    @classmethod
    def of(cls, values: dict[str, float]) -> DiffusionTrainingStats:
        stats = cls()
        for key, value in values.items():
            object.__setattr__(stats, key, value)
        return stats


class DiffusionOfflineAlgorithm(OfflineAlgorithm[DiffusionAgentPolicy]):
    """Tianshou ``OfflineAlgorithm`` that runs the agent's own gradient step on buffer batches."""

    def __init__(self, agent: Any) -> None:
        super().__init__(policy=DiffusionAgentPolicy(agent))
        self.agent = agent
        spec = agent.batch_spec  # the declared batch layout (diffagents.core.contract)
        if spec not in (TRANSITIONS, WINDOWS, CHUNKS):
            raise TypeError(f"agent: as_algorithm trains agents whose batch_spec is {TRANSITIONS!r}, {WINDOWS!r} or "
                            f"{CHUNKS!r}; {agent.agent_name} declares {spec!r}")
        self.horizon: int | None = agent.config.horizon if spec == WINDOWS else None
        # action-chunk agents (Diffusion Policy): windows of Tp steps starting To - 1 steps before the sample
        self.chunk: tuple[int, int] | None = None
        if spec == CHUNKS:
            self.chunk = (agent.config.obs_horizon, agent.config.pred_horizon)

    # -- data ----------------------------------------------------------------------------------------------
    def process_buffer(self, buffer: ReplayBuffer) -> ReplayBuffer:
        """Env-space actions -> [-1, 1]; fit missing normalizers; add returns-to-go for planners."""
        buffer.set_array_at_key(self.policy.map_action_inverse(buffer.act), "act")
        agent = self.agent
        if "obs" not in agent.normalizers:
            agent.normalizers["obs"] = agent.fit_obs_normalizer(np.asarray(buffer.obs[: len(buffer)]))
        if self.horizon is not None:
            rtg = buffer_returns_to_go(buffer, agent.config.discount,
                                       getattr(agent.config, "termination_penalty", None))
            buffer.set_array_at_key(rtg, "returns_to_go")
        return buffer

    def _preprocess_batch(self, batch: Any, buffer: ReplayBuffer, indices: np.ndarray) -> Any:
        """The agent's declared batch spec, built by :mod:`diffagents.data.batches` from the buffer."""
        norm = self.agent.normalize_obs
        if self.horizon is not None:
            return Batch(**buffer_windows(buffer, indices, self.horizon, norm))
        if self.chunk is not None:
            return Batch(**buffer_chunks(buffer, indices, *self.chunk, norm))
        return Batch(**buffer_transitions(batch, norm))

    # -- update --------------------------------------------------------------------------------------------
    def _update_with_batch(self, batch: Any) -> DiffusionTrainingStats:
        return _train_step(self.agent, batch.items(), count_timesteps=True)


class OnlineAgentPolicy(Policy):
    """Tianshou ``Policy`` of an online agent (``agent_kind == "online"``): its ``act`` on raw observations,
    stochastic within a training step (exploration), deterministic in evaluation."""

    def __init__(self, agent: Any) -> None:
        super().__init__(action_space=agent.action_space, observation_space=agent.observation_space,
                         action_scaling=True, action_bound_method="clip")
        self.agent = agent
        self.nets = agent.policy

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        agent = self.agent
        obs, _ = agent.prepare_obs(np.asarray(batch.obs))
        with torch.no_grad():
            act, _ = agent.act(obs, None, None, not self.is_within_training_step)
        return Batch(act=act.float().cpu().numpy(), state=state)


class OnlineAgentAlgorithm(OffPolicyAlgorithm[OnlineAgentPolicy]):
    """Tianshou ``OffPolicyAlgorithm`` running an online agent's ``train_step`` on Tianshou buffer batches."""

    def __init__(self, agent: Any) -> None:
        super().__init__(policy=OnlineAgentPolicy(agent))
        self.agent = agent

    def _update_with_batch(self, batch: Any) -> DiffusionTrainingStats:
        # raw policy actions (already in [-1, 1]) and flat raw observations: what the online agent acts on
        data = buffer_transitions(batch, lambda obs: np.asarray(obs, np.float32).reshape(len(obs), -1))
        return _train_step(self.agent, data.items(), count_timesteps=False)


def _train_step(agent: Any, batch: Any, *, count_timesteps: bool) -> DiffusionTrainingStats:
    """One ``agent.train_step`` on a batch of arrays (its declared spec); offline agents count it as a timestep
    (one timestep = one gradient step), online ones count env steps elsewhere."""
    from diffagents.training import check_finite

    tensors = {k: to_device(np.asarray(v), agent.device, torch.float32) for k, v in batch}
    agent.set_training_mode(True)
    stats = agent.train_step(tensors)
    agent._n_updates += 1
    if count_timesteps:
        agent.num_timesteps += 1
    return DiffusionTrainingStats.of(check_finite(stats, agent._n_updates))


def as_policy(agent: Any) -> Policy:
    """The agent as a Tianshou ``Policy`` (for ``Collector`` evaluation)."""
    if agent.agent_kind == "online":
        return OnlineAgentPolicy(agent)
    return DiffusionAgentPolicy(agent)


def as_algorithm(agent: Any) -> Any:
    """The agent as a Tianshou algorithm sharing its modules: an ``OfflineAlgorithm`` (``OfflineTrainer``) for
    offline agents, an ``OffPolicyAlgorithm`` (``OffPolicyTrainer``) for online CPQL."""
    if agent.agent_kind == "online":
        return OnlineAgentAlgorithm(agent)
    return DiffusionOfflineAlgorithm(agent)


def checkpoint_fn(agent: Any, folder: str | Path) -> Any:
    """A ``save_checkpoint_fn(epoch, env_step, gradient_step)`` for Tianshou trainer params that writes the
    agent's safe checkpoint (needs a logger with ``save_interval``, docs/integration.md gotcha 9)."""
    out = Path(folder)

    def save(epoch: int, env_step: int, gradient_step: int) -> str:
        path = out / f"epoch_{epoch}.zip"
        agent.save(path)
        return str(path)

    return save
