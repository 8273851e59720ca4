"""Action-chunk execution for chunk policies (Diffusion Policy, Chi et al. 2023; ``MultiStepWrapper``).

:class:`ChunkedActionWrapper` turns an env with a Box action space of shape ``A`` into one whose action is a
chunk of ``horizon`` actions ``(horizon, *A)``: one ``step`` executes the chunk's actions in order, sums their
rewards and stops early at termination or truncation (the rest of the chunk is dropped; ``info["chunk_steps"]``
says how many actions ran). With ``obs_history = K > 1`` observations become the last ``K`` observations
``(K, *O)`` (oldest first), padded at reset by repeating the first observation, which is what Diffusion Policy
conditions on::

    env = ChunkedActionWrapper(gym.make("Pendulum-v1"), agent.config.action_horizon,
                               obs_history=agent.config.obs_horizon)
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(agent.predict_chunk(obs))
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ChunkedActionWrapper(gym.Wrapper[Any, np.ndarray, Any, Any], gym.utils.RecordConstructorArgs):
    """Execute ``horizon`` actions per ``step`` (see the module docstring).

    Args:
        env: an env with a Box action space (and a Box observation space when ``obs_history > 1``).
        horizon: actions per chunk (Diffusion Policy's ``Ta``).
        obs_history: number of stacked observations returned (1 = the plain observation).
    """

    def __init__(self, env: gym.Env[Any, Any], horizon: int, obs_history: int = 1) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, horizon=horizon, obs_history=obs_history)
        gym.Wrapper.__init__(self, env)
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon: expected an int >= 1, got {horizon!r}")
        if not isinstance(obs_history, int) or obs_history < 1:
            raise ValueError(f"obs_history: expected an int >= 1, got {obs_history!r}")
        act = env.action_space
        if not isinstance(act, spaces.Box):
            raise TypeError(f"action_space: ChunkedActionWrapper needs a Box action space, got {act}")
        self.horizon = horizon
        self.obs_history = obs_history
        self.action_space = spaces.Box(np.broadcast_to(act.low, (horizon, *act.shape)),
                                       np.broadcast_to(act.high, (horizon, *act.shape)), dtype=act.dtype)  # type: ignore[arg-type]
        if obs_history > 1:
            obs = env.observation_space
            if not isinstance(obs, spaces.Box):
                raise TypeError(f"observation_space: obs_history > 1 needs a Box observation space, got {obs}")
            self.observation_space = spaces.Box(np.broadcast_to(obs.low, (obs_history, *obs.shape)),
                                                np.broadcast_to(obs.high, (obs_history, *obs.shape)),
                                                dtype=obs.dtype)  # type: ignore[arg-type]
        self._history: deque[Any] = deque(maxlen=obs_history)

    def _observation(self) -> Any:
        if self.obs_history == 1:
            return self._history[-1]
        return np.stack(list(self._history), axis=0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._history.clear()
        for _ in range(self.obs_history):
            self._history.append(obs)
        return self._observation(), info

    def step(self, action: np.ndarray) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        chunk = np.asarray(action)
        if chunk.shape != self.action_space.shape:
            raise ValueError(f"action: expected a chunk of shape {self.action_space.shape}, got {chunk.shape}")
        total = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        steps = 0
        for a in chunk:
            obs, reward, terminated, truncated, info = self.env.step(a)
            self._history.append(obs)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        info = dict(info)
        info["chunk_steps"] = steps
        return self._observation(), total, terminated, truncated, info
