"""Receding-horizon action-chunk execution (Chi et al. 2023, Sec. 3.1): an observation history and the
executable actions of the current chunk carried through SB3's ``state`` (Diffusion Policy and its distilled
students)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from diffagents.execution.plan_cache import PlanCache


def act_with_chunks(obs: torch.Tensor, state: Any, episode_start: np.ndarray | None, *, obs_horizon: int,
                    action_horizon: int, sample: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, PlanCache]:
    """Receding-horizon chunk execution through SB3's ``state``.

    Keeps, per env, the last ``To`` observations (an episode start fills the history with its first
    observation) and the ``Ta`` executable actions of the current chunk; a new chunk is sampled with
    ``sample(cond (n, To * O)) -> (n, Tp, A)`` when none is cached, after ``Ta`` steps or at an episode start.
    Returns this step's actions ``(B, A)`` and the cache.
    """
    cache = state if isinstance(state, PlanCache) else PlanCache()
    b = obs.shape[0]
    idx = cache.due(b, episode_start, action_horizon)  # resets the cache when the batch size changes
    hist = cache.extra.get("obs_history")
    if hist is None or hist.shape[0] != b:
        hist = obs[:, None].expand(-1, obs_horizon, -1).clone()  # (B, To, O)
    else:
        hist = torch.cat([hist[:, 1:], obs[:, None]], dim=1)
        if episode_start is not None:
            fresh = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(-1)[:b], device=obs.device)
            hist[fresh] = obs[fresh, None].expand(-1, obs_horizon, -1)
    cache.extra["obs_history"] = hist
    if len(idx):
        sub = torch.as_tensor(idx, device=obs.device)
        chunks = sample(hist[sub].flatten(1))  # (n, Tp, A)
        start = obs_horizon - 1
        cache.store(idx, chunks[:, start:start + action_horizon])  # (n, Ta, A)
    plans, age = cache.current()
    actions = plans[torch.arange(b, device=obs.device), torch.as_tensor(age, device=obs.device)]
    cache.advance()
    return actions, cache


def predict_chunk_with(agent: Any, obs_history: Any, obs_horizon: int, action_horizon: int,
                       sample: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """Env-space chunk ``(Ta, A)`` (or ``(B, Ta, A)``) for raw observation histories ``(K, O)`` / ``(B, K, O)``
    (oldest first); the last ``To`` are used, a shorter history is padded by repeating its oldest entry."""
    hist = np.asarray(obs_history, dtype=np.float32)
    if hist.ndim not in (2, 3):
        raise ValueError(f"obs_history: expected shape (K, {agent.obs_dim}) or (B, K, {agent.obs_dim}), got "
                         f"{hist.shape}")
    single = hist.ndim == 2
    hist = hist[None] if single else hist
    b, k = hist.shape[:2]
    if k < obs_horizon:
        hist = np.concatenate([np.repeat(hist[:, :1], obs_horizon - k, axis=1), hist], axis=1)
    hist = hist[:, -obs_horizon:]
    obs, _ = agent.prepare_obs(hist.reshape(b * obs_horizon, -1))
    agent.policy.set_training_mode(False)
    with torch.no_grad():
        chunks = sample(obs.view(b, -1))  # (B, Tp, A)
    start = obs_horizon - 1
    act = agent.unscale_action(chunks[:, start:start + action_horizon].float().cpu().numpy())
    return act[0] if single else act
