"""Tianshou 2.0 adapter: a ``ReplayBufferManager`` that mixes SynthER samples into every batch.

Layout (docs/integration.md Sec. 2.3): ``buffer_num`` real sub-buffers (the Collector writes env ``i`` to
``buffer_ids=[i]``) followed by one synthetic sub-buffer; indices stay global, so ``prev`` / ``next`` and the
n-step helpers keep working. Synthetic rows are one-step episodes (``done=True``; ``truncated`` unless the
generated terminal flag is set), so n-step returns never chain unrelated synthetic rows.

Tianshou stores the raw policy action. With ``action_scaling=True`` (Tianshou's default for continuous
policies) that is the [-1, 1] policy space, so the generator models actions in ``Box(-1, 1)`` and samples need
no conversion; with ``action_scaling=False`` it models the env action space. This module imports tianshou at
import time; nothing else in diffagents imports it.

Usage with ``OffPolicyTrainer``::

    buf = SynthERTianshouBuffer(20_000, buffer_num=len(train_envs), observation_space=env.observation_space,
                                action_space=env.action_space, synthetic_ratio=0.5, retrain_every=5_000,
                                generator_steps=2_000, synthetic_size=20_000, synthesizer_kwargs=dict(width=256))
    Collector(algorithm, train_envs, buf, exploration_noise=True)
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from gymnasium import spaces
from tianshou.data import Batch, ReplayBuffer, ReplayBufferManager

from diffagents.agents.synthesis.synther import SynthER


class SynthERTianshouBuffer(ReplayBufferManager):
    """Tianshou replay buffer with a retrained SynthER generator and a synthetic pool.

    Args:
        total_size: capacity of the real part, split evenly over ``buffer_num`` sub-buffers.
        buffer_num: number of real sub-buffers (the number of training envs).
        observation_space: env observation space (a ``Box``).
        action_space: env action space (a bounded ``Box``).
        synthetic_size: synthetic pool size (its own sub-buffer), regenerated at each retrain.
        synthetic_ratio: fraction of synthetic rows in sampled batches.
        retrain_every: real transitions added between retrains.
        generator_steps: gradient steps per retrain (default: the generator's ``train_steps``).
        synthesizer_kwargs: :class:`~diffagents.agents.synthesis.synther.SynthERConfig` fields plus ``device``.
        action_scaling: whether the policy stores [-1, 1] actions (see the module docstring).
        min_real: real transitions needed before the first retrain (default ``retrain_every``).
        sampler_steps: sampling steps for the pool.
        seed: seed of the generator and of index sampling.
        **buffer_kwargs: ``ReplayBuffer`` options of every sub-buffer (``stack_num`` must stay 1).
    """

    def __init__(self, total_size: int, buffer_num: int, *, observation_space: spaces.Space[Any],
                 action_space: spaces.Box, synthetic_size: int = 200_000, synthetic_ratio: float = 0.5,
                 retrain_every: int = 10_000, generator_steps: int | None = None,
                 synthesizer_kwargs: dict[str, Any] | None = None, action_scaling: bool = True,
                 min_real: int | None = None, sampler_steps: int | None = None, seed: int | None = None,
                 **buffer_kwargs: Any) -> None:
        if buffer_num < 1 or synthetic_size < 1 or retrain_every < 1:
            raise ValueError(f"buffer_num, synthetic_size, retrain_every: expected >= 1, got "
                             f"{buffer_num}, {synthetic_size}, {retrain_every}")
        if not 0.0 <= synthetic_ratio <= 1.0:
            raise ValueError(f"synthetic_ratio: expected a value in [0, 1], got {synthetic_ratio}")
        if buffer_kwargs.get("ignore_obs_next", False):
            raise ValueError("ignore_obs_next: SynthER needs obs_next stored; use ignore_obs_next=False")
        size = math.ceil(total_size / buffer_num)
        subs = [ReplayBuffer(size, **buffer_kwargs) for _ in range(buffer_num)]
        super().__init__([*subs, ReplayBuffer(synthetic_size, **buffer_kwargs)])
        self.n_real = buffer_num
        self.syn_id = buffer_num
        self.synthetic_ratio = float(synthetic_ratio)
        self.retrain_every = int(retrain_every)
        self.generator_steps = generator_steps
        self.synthetic_size = int(synthetic_size)
        self.min_real = int(min_real) if min_real is not None else self.retrain_every
        self.sampler_steps = sampler_steps
        self._seed = 0 if seed is None else int(seed)
        self._rng = np.random.default_rng(self._seed)
        if not isinstance(action_space, spaces.Box):
            raise TypeError(f"action_space: expected a Box, got {action_space}")
        shape = action_space.shape
        gen_actions = spaces.Box(-1.0, 1.0, shape, np.float32) if action_scaling else action_space
        kwargs = dict(synthesizer_kwargs or {})
        kwargs.setdefault("device", "cpu")
        self.generator = SynthER(observation_space, gen_actions, seed=self._seed, **kwargs)
        self.env_steps_added = 0
        self.last_retrain = 0
        self.retrain_log: list[dict[str, float]] = []

    # ------------------------------------------------------------------ adding and retraining
    def real_size(self) -> int:
        return int(self._lengths[: self.n_real].sum())

    def add(self, batch: Any, buffer_ids: np.ndarray | list[int] | None = None) -> Any:
        """Add real data (default ids: the real sub-buffers) and retrain the generator when it is due."""
        ids = np.arange(self.n_real) if buffer_ids is None else np.asarray(buffer_ids)
        if np.any(ids >= self.n_real):
            raise ValueError(f"buffer_ids: real data goes to sub-buffers 0..{self.n_real - 1}, got {ids.tolist()}")
        out = super().add(batch, ids)
        self.env_steps_added += len(ids)
        if self.env_steps_added - self.last_retrain >= self.retrain_every and self.real_size() >= self.min_real:
            self.retrain()
        return out

    def real_arrays(self) -> dict[str, np.ndarray]:
        """The stored real transitions as arrays (actions in the buffer's convention)."""
        idx = np.concatenate([np.arange(self._lengths[i]) + self._offset[i] for i in range(self.n_real)])
        meta = self._meta
        return {"observations": np.asarray(meta.obs[idx], np.float32), "actions": np.asarray(meta.act[idx]),
                "rewards": np.asarray(meta.rew[idx], np.float32),
                "next_observations": np.asarray(meta.obs_next[idx], np.float32),
                "terminations": np.asarray(meta.terminated[idx], bool)}

    def retrain(self) -> dict[str, float]:
        """Fit the generator on the real sub-buffers and refill the synthetic sub-buffer."""
        data, stats = self.generator.refit_and_sample(
            self.real_arrays(), self.synthetic_size, steps=self.generator_steps,
            seed=self._seed + 7919 * (len(self.retrain_log) + 1), sampler_steps=self.sampler_steps)
        self.set_synthetic(data)
        self.last_retrain = self.env_steps_added
        log = {"env_steps": float(self.env_steps_added), "real_size": float(self.real_size()), **stats}
        self.retrain_log.append(log)
        return log

    def set_synthetic(self, data: dict[str, np.ndarray]) -> None:
        """Replace the synthetic sub-buffer's content with ``data`` (generator output, buffer convention)."""
        n = min(len(data["rewards"]), self.buffers[self.syn_id].maxsize)
        shape: tuple[int, ...] = tuple(self.generator.observation_space.shape or ())
        term = np.asarray(data["terminations"][:n], bool)
        batch = Batch(obs=np.asarray(data["observations"][:n]).reshape(n, *shape),
                      act=np.asarray(data["actions"][:n], np.float32),
                      rew=np.asarray(data["rewards"][:n], np.float64), terminated=term, truncated=~term,
                      obs_next=np.asarray(data["next_observations"][:n]).reshape(n, *shape))
        if "info" in self._meta.get_keys():  # same info structure as the real rows, zero-filled
            start = int(self._offset[self.syn_id])
            batch.info = copy.deepcopy(self._meta.info[start:start + n])
            batch.info.empty_()
        self.buffers[self.syn_id].reset()
        self._lengths[self.syn_id] = 0
        self.last_index[self.syn_id] = self._offset[self.syn_id]
        super().add(batch, np.full(n, self.syn_id))

    # ------------------------------------------------------------------ mixing
    def sample_indices(self, batch_size: int | None) -> np.ndarray:
        """``batch_size - round(ratio B)`` real indices then ``round(ratio B)`` synthetic ones (global indices)."""
        syn_len = int(self._lengths[self.syn_id])
        if batch_size is None or batch_size <= 0:
            return super().sample_indices(batch_size)
        n_syn = min(batch_size, int(round(batch_size * self.synthetic_ratio))) if syn_len else 0
        lengths = self._lengths[: self.n_real]
        total = int(lengths.sum())
        if total == 0:
            return np.array([], int)
        u = self._rng.integers(0, total, size=batch_size - n_syn)
        ends = np.cumsum(lengths)
        sub = np.searchsorted(ends, u, side="right")  # which real sub-buffer
        real = self._offset[sub] + u - (ends[sub] - lengths[sub])
        syn = self._rng.integers(0, syn_len, size=n_syn) + self._offset[self.syn_id] if n_syn else np.array([], int)
        return np.concatenate([real, syn]).astype(int)
