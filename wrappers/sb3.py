"""Stable-Baselines3 adapters: SynthER replay buffers (Lu et al. 2023, Sec. 5, online SynthER).

``SAC("MlpPolicy", env, replay_buffer_class=SynthERReplayBuffer, replay_buffer_kwargs=dict(synthetic_ratio=0.5,
retrain_every=10_000, generator_steps=..., synthetic_size=..., synthesizer_kwargs=dict(width=256, ...)))``
(also TD3, DDPG; Dict observations: :class:`SynthERDictReplayBuffer`).

* The buffer stores the real transitions exactly like SB3's buffer (actions scaled to [-1, 1]).
* Every ``retrain_every`` env steps added (``add`` calls x ``n_envs``) it (re)trains a
  :class:`diffagents.agents.synthesis.synther.SynthER` generator on the filled part of the real buffer (actions mapped
  back to env units), then replaces a synthetic pool of ``synthetic_size`` transitions (actions scaled to
  [-1, 1] again, terminal flags thresholded at 0.5).
* ``sample(B)`` returns ``B - round(ratio B)`` real rows followed by ``round(ratio B)`` synthetic rows as SB3
  ``ReplayBufferSamples`` (the paper: 50 % synthetic, UTD 20 via ``gradient_steps=20``); before the first
  retrain all rows are real. VecNormalize observation / reward normalisation applies to both parts.
* ``save_npz`` / ``load_npz`` store real and synthetic data with ``np.savez`` and load with
  ``allow_pickle=False`` (SB3's ``save_replay_buffer`` pickles). The generator is saved separately with
  ``buffer.generator.save(path)``.

Warm start: by default each retrain continues from the previous weights (``warm_start=True``; cheaper on a CPU)
with a refitted normaliser; ``warm_start=False`` builds a fresh generator every time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from diffagents.agents.synthesis.synther import SynthER
from diffagents.core.agent_io import to_unit

_COUNTERS = ("pos", "full", "env_steps_added", "last_retrain", "synthetic_count", "buffer_size", "n_envs")


class _SynthERMixin:
    """Synthetic pool, retraining and mixing shared by the Box and Dict buffers."""

    observation_space: Any
    action_space: Any
    n_envs: int
    buffer_size: int
    pos: int
    full: bool

    def __init__(self, buffer_size: int, observation_space: spaces.Space[Any], action_space: spaces.Space[Any],
                 device: th.device | str = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, *, synthetic_ratio: float = 0.5,
                 retrain_every: int = 10_000, generator_steps: int | None = None, synthetic_size: int = 200_000,
                 synthesizer_kwargs: dict[str, Any] | None = None, min_real: int | None = None,
                 warm_start: bool = True, generator_batch_size: int | None = None, sampler_steps: int | None = None,
                 seed: int | None = None) -> None:
        """SB3's buffer arguments (as ``OffPolicyAlgorithm`` passes them), then the SynthER keywords."""
        super().__init__(buffer_size, observation_space, action_space, device=device,  # type: ignore[call-arg]
                         n_envs=n_envs, optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination)
        self._setup_synther(synthetic_ratio, retrain_every, generator_steps, synthetic_size, synthesizer_kwargs,
                            min_real, warm_start, generator_batch_size, sampler_steps, seed)

    def add(self, *args: Any, **kwargs: Any) -> None:
        """SB3's ``add`` (Box or Dict observations), then count env steps and retrain the generator when due."""
        super().add(*args, **kwargs)  # type: ignore[misc]
        self._after_add()

    def _setup_synther(self, synthetic_ratio: float, retrain_every: int, generator_steps: int | None,
                       synthetic_size: int, synthesizer_kwargs: dict[str, Any] | None, min_real: int | None,
                       warm_start: bool, generator_batch_size: int | None, sampler_steps: int | None,
                       seed: int | None) -> None:
        if not 0.0 <= synthetic_ratio <= 1.0:
            raise ValueError(f"synthetic_ratio: expected a value in [0, 1], got {synthetic_ratio}")
        for name, value in (("retrain_every", retrain_every), ("synthetic_size", synthetic_size)):
            if int(value) < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value}")
        if not isinstance(self.action_space, spaces.Box):
            raise TypeError(f"action_space: SynthER buffers need a Box action space, got {self.action_space}")
        self.synthetic_ratio = float(synthetic_ratio)
        self.retrain_every = int(retrain_every)
        self.generator_steps = generator_steps
        self.synthetic_size = int(synthetic_size)
        self.min_real = int(min_real) if min_real is not None else self.retrain_every
        self.warm_start = warm_start
        self.generator_batch_size = generator_batch_size
        self.sampler_steps = sampler_steps
        self.synthesizer_kwargs = dict(synthesizer_kwargs or {})
        self.synthesizer_kwargs.setdefault("device", "cpu")
        self._seed = 0 if seed is None else int(seed)
        self.generator = SynthER(self.observation_space, self.action_space, seed=self._seed, **self.synthesizer_kwargs)
        self.env_steps_added = 0
        self.last_retrain = 0
        self.retrain_log: list[dict[str, float]] = []
        self.synthetic_count = 0
        self.syn: dict[str, Any] = {}

    # ------------------------------------------------------------------ real data and retraining
    def real_size(self) -> int:
        """Number of real transitions stored (all envs)."""
        return (self.buffer_size if self.full else self.pos) * self.n_envs

    def _after_add(self) -> None:
        self.env_steps_added += self.n_envs
        due = self.env_steps_added - self.last_retrain >= self.retrain_every
        if due and self.real_size() >= self.min_real:
            self.retrain()

    def retrain(self) -> dict[str, float]:
        """Fit the generator on the real buffer and regenerate the synthetic pool; returns the timings."""
        if not self.warm_start and self.generator.fitted:
            self.generator = SynthER(self.observation_space, self.action_space,
                                     seed=self._seed + len(self.retrain_log), **self.synthesizer_kwargs)
        data, stats = self.generator.refit_and_sample(
            self, self.synthetic_size, steps=self.generator_steps, batch_size=self.generator_batch_size,
            seed=self._seed + 7919 * (len(self.retrain_log) + 1), sampler_steps=self.sampler_steps)
        self.set_synthetic(data)
        self.last_retrain = self.env_steps_added
        log = {"env_steps": float(self.env_steps_added), "real_size": float(self.real_size()), **stats}
        self.retrain_log.append(log)
        return log

    def set_synthetic(self, data: dict[str, np.ndarray]) -> None:
        """Replace the synthetic pool with env-unit transitions (flat observations, :data:`FIELDS` keys)."""
        gen = self.generator
        n = len(data["rewards"])
        low, high = self.action_space.low.reshape(-1), self.action_space.high.reshape(-1)
        acts = np.asarray(data["actions"], np.float32).reshape(n, -1)
        scaled = to_unit(acts, low, high).astype(np.float32)
        self.syn = {
            "observations": self._obs_layout(gen.unflatten_obs(np.asarray(data["observations"], np.float32))),
            "next_observations": self._obs_layout(gen.unflatten_obs(np.asarray(data["next_observations"],
                                                                                np.float32))),
            "actions": scaled, "rewards": np.asarray(data["rewards"], np.float32).reshape(n),
            "dones": np.asarray(data["terminations"], np.float32).reshape(n),
        }
        self.synthetic_count = n

    def _obs_layout(self, obs: Any) -> Any:
        space = self.observation_space
        if isinstance(obs, dict):
            return {k: v.astype(space[k].dtype) for k, v in obs.items()}  # type: ignore[index]
        return obs.astype(space.dtype)

    # ------------------------------------------------------------------ mixing
    def _split(self, batch_size: int) -> int:
        if self.synthetic_count == 0:
            return 0
        return min(batch_size, int(round(batch_size * self.synthetic_ratio)))

    def _synthetic_rows(self, n: int, env: VecNormalize | None) -> dict[str, Any]:
        idx = np.random.randint(0, self.synthetic_count, size=n)  # noqa: NPY002  (SB3 seeds the global RNG)
        pick = (lambda v: {k: a[idx] for k, a in v.items()}) if isinstance(self.syn["observations"], dict) \
            else (lambda v: v[idx])
        return {
            "observations": self._normalize_obs(pick(self.syn["observations"]), env),  # type: ignore[attr-defined]
            "actions": self.syn["actions"][idx],
            "next_observations": self._normalize_obs(pick(self.syn["next_observations"]), env),  # type: ignore[attr-defined]
            "dones": self.syn["dones"][idx].reshape(-1, 1),
            "rewards": self._normalize_reward(self.syn["rewards"][idx].reshape(-1, 1), env),  # type: ignore[attr-defined]
        }

    def _to_th(self, x: Any) -> Any:
        if isinstance(x, dict):
            return {k: self.to_torch(v) for k, v in x.items()}  # type: ignore[attr-defined]
        return self.to_torch(x)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ npz persistence
    def save_npz(self, path: str) -> None:
        """Write real (filled part) and synthetic data plus counters with ``np.savez`` (no pickled objects)."""
        size = self.buffer_size if self.full else self.pos
        out: dict[str, np.ndarray] = {"counters": np.array([int(getattr(self, k)) for k in _COUNTERS], np.int64)}
        real_fields = ["observations", "actions", "rewards", "dones", "timeouts"]
        if not getattr(self, "optimize_memory_usage", False):
            real_fields.append("next_observations")
        for name in real_fields:
            _put(out, f"real.{name}", getattr(self, name), slice(0, size))
        for name, value in self.syn.items():
            _put(out, f"syn.{name}", value, slice(0, self.synthetic_count))
        np.savez(path, **out)  # type: ignore[arg-type]

    def load_npz(self, path: str) -> None:
        """Restore what :meth:`save_npz` wrote (``allow_pickle=False``); shapes must match this buffer."""
        with np.load(path, allow_pickle=False) as f:
            files = {k: f[k] for k in f.files}
        counters = dict(zip(_COUNTERS, files.pop("counters").tolist()))
        if (counters["buffer_size"], counters["n_envs"]) != (self.buffer_size, self.n_envs):
            raise ValueError(f"load_npz: file has buffer_size/n_envs {counters['buffer_size']}/{counters['n_envs']}, "
                             f"this buffer {self.buffer_size}/{self.n_envs}")
        syn: dict[str, Any] = {}
        for key, arr in files.items():
            part, name = key.split(".", 1)
            field, _, sub = name.partition("/")
            if part == "real":
                target = getattr(self, field)
                dst = target[sub] if sub else target
                if dst.shape[1:] != arr.shape[1:]:
                    raise ValueError(f"load_npz: {key} has shape {arr.shape}, buffer rows are {dst.shape[1:]}")
                dst[: len(arr)] = arr
            elif sub:
                syn.setdefault(field, {})[sub] = arr
            else:
                syn[field] = arr
        self.pos, self.full = int(counters["pos"]), bool(counters["full"])
        self.env_steps_added, self.last_retrain = int(counters["env_steps_added"]), int(counters["last_retrain"])
        self.syn, self.synthetic_count = syn, int(counters["synthetic_count"])


def _put(out: dict[str, np.ndarray], key: str, value: Any, rows: slice) -> None:
    if isinstance(value, dict):
        for sub, arr in value.items():
            out[f"{key}/{sub}"] = np.ascontiguousarray(arr[rows])
    else:
        out[key] = np.ascontiguousarray(value[rows])


def _cat(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: th.cat([a[k], b[k]]) for k in a}
    return th.cat([a, b])


class SynthERReplayBuffer(_SynthERMixin, ReplayBuffer):
    """SB3 ``ReplayBuffer`` that mixes SynthER samples into every batch (see the module docstring).

    Args:
        buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage,
            handle_timeout_termination: as SB3's ``ReplayBuffer`` (filled in by the algorithm).
        synthetic_ratio: fraction of synthetic rows per batch (paper: 0.5).
        retrain_every: env steps between generator retrains (paper: 10k).
        generator_steps: gradient steps per retrain (default: the generator's ``train_steps``, paper 100k).
        synthetic_size: synthetic pool size regenerated at each retrain (paper gin: 200k; README: 1M).
        synthesizer_kwargs: :class:`~diffagents.agents.synthesis.synther.SynthERConfig` fields plus ``device``.
        min_real: real transitions needed before the first retrain (default ``retrain_every``).
        warm_start: continue from the previous weights at each retrain.
        generator_batch_size: generator minibatch (default: its ``batch_size``).
        sampler_steps: sampling steps for the pool (default: the generator's ``sampler_steps``).
        seed: generator seed.
    """

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        n_syn = self._split(batch_size)
        if n_syn == 0:
            return super().sample(batch_size, env=env)
        fake = {k: self._to_th(v) for k, v in self._synthetic_rows(n_syn, env).items()}
        if n_syn == batch_size:
            return ReplayBufferSamples(**fake)
        real = super().sample(batch_size - n_syn, env=env)
        return ReplayBufferSamples(**{k: _cat(getattr(real, k), v) for k, v in fake.items()})


class SynthERDictReplayBuffer(_SynthERMixin, DictReplayBuffer):
    """Dict-observation variant of :class:`SynthERReplayBuffer` (same keyword arguments).

    The generator flattens all observation keys in sorted order and serves synthetic rows as dicts.
    """

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> DictReplayBufferSamples:  # type: ignore[override]
        n_syn = self._split(batch_size)
        if n_syn == 0:
            return super().sample(batch_size, env=env)
        fake = {k: self._to_th(v) for k, v in self._synthetic_rows(n_syn, env).items()}
        if n_syn == batch_size:
            return DictReplayBufferSamples(**fake)
        real = super().sample(batch_size - n_syn, env=env)
        return DictReplayBufferSamples(**{k: _cat(getattr(real, k), v) for k, v in fake.items()})
