"""A Gymnasium env whose dynamics are a trained SynthER generator (a diffusion world model).

``reset`` draws a start state from the episode starts of a dataset; ``step(a)`` samples ``(r, s', terminal)``
given ``(s, a)`` by inpainting the ``(s, a)`` entries of the transition vector at every denoising step
(:class:`diffagents.guidance.Inpaint` with :func:`diffagents.diffusion.sample_loop`, the replacement
conditioning of Diffuser, Janner et al. 2022, Sec. 3.3). The generator was trained unconditionally, so this is
an approximation of ``p(r, s' | s, a)``; its quality is what ``benchmarks/synther_fidelity.py`` measures.
Episodes end when the generated terminal flag exceeds the threshold or are truncated after
``max_episode_steps``. All randomness comes from ``self.np_random`` so a seeded env is deterministic.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np


class SynthEREnv(gym.Env[Any, np.ndarray]):
    """Env backed by a fitted :class:`diffagents.agents.synthesis.synther.SynthER`.

    Args:
        generator: the fitted generator.
        start_states: ``(N, obs_dim)`` flat start observations (e.g. the first observation of every episode).
        max_episode_steps: truncation horizon.
        sampler_steps: sampling steps per env step (default: the generator's ``sampler_steps``); fewer is faster.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, generator: Any, start_states: np.ndarray, *, max_episode_steps: int = 1000,
                 sampler_steps: int | None = None) -> None:
        if not generator.fitted:
            raise RuntimeError("SynthEREnv: the generator must be fitted first")
        starts = np.asarray(start_states, dtype=np.float32).reshape(-1, generator.obs_dim)
        if len(starts) == 0:
            raise ValueError("start_states: expected at least one start observation, got none")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps: expected >= 1, got {max_episode_steps}")
        self.generator = generator
        self.observation_space: Any = generator.observation_space
        self.action_space: Any = generator.action_space
        self.start_states = generator.clip_obs(starts)
        self.max_episode_steps = int(max_episode_steps)
        self._sampler = generator.synth.make_sampler(sampler_steps)
        self._state = self.start_states[0].copy()
        self._t = 0

    def _observation(self) -> Any:
        obs = self.generator.unflatten_obs(self._state)
        if isinstance(obs, dict):
            return {k: v.astype(self.observation_space[k].dtype) for k, v in obs.items()}
        return obs.astype(self.observation_space.dtype)  # type: ignore[union-attr]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.start_states[int(self.np_random.integers(len(self.start_states)))].copy()
        self._t = 0
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        low, high = self.action_space.low, self.action_space.high
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(self.action_space.shape), low, high)
        out = self.generator.sample_given(self._state[None], a[None],
                                          seed=int(self.np_random.integers(2**62)), sampler=self._sampler)
        self._state = out["next_observations"][0].astype(np.float32)
        self._t += 1
        terminated = bool(out["terminations"][0])
        truncated = self._t >= self.max_episode_steps and not terminated
        return self._observation(), float(out["rewards"][0]), terminated, truncated, {"synthetic": True}
