"""Gymnasium wrappers matching the offline-data conventions of :mod:`diffagents.data`.

* :class:`FlattenDictObservation` applies the same :class:`~diffagents.data.ObsFlattener` used on datasets
  (PointMaze: ``observation + desired_goal``), so a model trained on flattened Minari data acts on the env.
* :class:`SuccessInfo` copies ``info["success"]`` (gymnasium-robotics) to ``info["is_success"]`` (read by
  Stable-Baselines3's ``evaluate_policy`` / ``EvalCallback`` success rates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from diffagents.data.flatten import ObsFlattener


class FlattenDictObservation(gym.ObservationWrapper[np.ndarray, Any, Any], gym.utils.RecordConstructorArgs):
    """Flatten Dict observations to a float32 vector in the documented, stable key order.

    Args:
        env: Env with a ``Box`` or ``Dict``-of-``Box`` observation space.
        keys: Explicit key order (default: :func:`diffagents.data.flatten.default_keys`).
        flattener: A saved flattener (e.g. from a checkpoint) to use instead of building one; it must match
            the env's observation space.
    """

    def __init__(self, env: gym.Env, keys: Sequence[str] | None = None, flattener: ObsFlattener | Mapping[str, Any] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, keys=None if keys is None else list(keys),
            flattener=flattener.to_dict() if isinstance(flattener, ObsFlattener) else flattener,
        )
        gym.ObservationWrapper.__init__(self, env)
        built = ObsFlattener.from_space(env.observation_space, keys=keys)
        if flattener is not None:
            given = flattener if isinstance(flattener, ObsFlattener) else ObsFlattener.from_dict(flattener)
            if given.keys != built.keys or given.shapes != built.shapes:
                raise ValueError(
                    f"flattener: expected keys {built.keys} with shapes {built.shapes} for this env, "
                    f"got keys {given.keys} with shapes {given.shapes}"
                )
            built = given
        self.flattener = built
        self.observation_space = built.flat_space

    def observation(self, observation: Any) -> np.ndarray:
        """Flatten one observation."""
        return self.flattener(observation)


class SuccessInfo(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Expose ``info["success"]`` as ``info["is_success"]`` (SB3's key) at reset and every step."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    @staticmethod
    def _copy(info: dict[str, Any]) -> dict[str, Any]:
        if "success" in info:
            info = dict(info)
            info["is_success"] = bool(info["success"])
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, self._copy(info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._copy(info)
