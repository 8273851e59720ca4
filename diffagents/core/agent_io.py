"""Agent inputs and outputs: observation validation / flattening for ``predict`` and the ``[-1, 1]`` action
scaling every offline agent trains and samples in (docs/integration.md Sec. 1.2).

Errors name the field (``observation``, ``action_space``) and say what was expected and what was received.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces


def flat_observations(flattener: Any, observation: Any, obs_dim: int, space: spaces.Space[Any]
                      ) -> tuple[np.ndarray, bool]:
    """One observation or a VecEnv batch -> ``((E, obs_dim) float32, vectorized)``, validated.

    Raises:
        ValueError: an ``(obs, info)`` tuple, a wrong shape after flattening, or NaN / Inf values.
    """
    if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
        raise ValueError("observation: got a (obs, info) tuple; pass only obs from env.reset()")
    flat = np.asarray(flattener(observation), dtype=np.float32)
    if flat.ndim == 1:
        vectorized = False
        flat = flat[None]
    elif flat.ndim == 2:
        vectorized = True
    else:
        raise ValueError(f"observation: expected shape ({obs_dim},) or (n_envs, {obs_dim}) after "
                         f"flattening, got {flat.shape}")
    if flat.shape[1] != obs_dim:
        raise ValueError(f"observation: expected {obs_dim} features per observation (space "
                         f"{space}), got shape {flat.shape}")
    if not np.all(np.isfinite(flat)):
        raise ValueError("observation: contains NaN or Inf values")
    return flat, vectorized


def to_unit(x: Any, low: Any, high: Any) -> Any:
    """``[low, high] -> [-1, 1]``, clipped: THE action scaling of the package (numpy arrays or torch tensors;
    bounds broadcast, e.g. ``(A,)`` or ``(N, A)`` for a team)."""
    y = 2.0 * (x - low) / (high - low) - 1.0
    return y.clamp(-1.0, 1.0) if isinstance(y, torch.Tensor) else np.clip(y, -1.0, 1.0)


def from_unit(y: Any, low: Any, high: Any) -> Any:
    """``[-1, 1] -> [low, high]`` (the inverse of :func:`to_unit`; ``y`` is clipped first)."""
    y = y.clamp(-1.0, 1.0) if isinstance(y, torch.Tensor) else np.clip(y, -1.0, 1.0)
    return low + (y + 1.0) * 0.5 * (high - low)


def scale_action(space: spaces.Box, action: np.ndarray) -> np.ndarray:
    """Env-space actions -> [-1, 1] using the bounds of ``space`` (clipped)."""
    low, high = space.low, space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"action_space: bounded Box needed for action scaling, got {space}")
    return to_unit(np.asarray(action, dtype=np.float64), low, high).astype(np.float32)  # type: ignore[no-any-return]


def unscale_action(space: spaces.Box, scaled: np.ndarray) -> np.ndarray:
    """[-1, 1] actions -> env-space actions of ``space`` (its dtype, inside its bounds)."""
    low, high = space.low, space.high
    action = from_unit(scaled, low, high).astype(space.dtype)
    return np.clip(action, low, high)  # rounding to the space's dtype can step one ulp past a bound
