"""Trajectory-window training data for planner agents (Diffuser, Decision Diffuser)."""

from __future__ import annotations

from typing import Any

import numpy as np


def attach_windows(agent: Any, horizon: int, *, discount: float, termination_penalty: float | None,
                   use_padding: bool) -> Any:
    """Build a device-resident window sampler for ``agent.dataset`` in the agent's normalised space.

    Observations go through the agent's flattener and observation normalizer (fitted here on real steps if not
    loaded from a checkpoint) and actions are scaled to [-1, 1]; padded steps are zero in normalised space
    (Diffuser's convention) and carry ``mask = 0``.

    Returns:
        The :class:`~diffagents.data.TrajectoryWindows` (its ``flat`` arrays normalised) and sets
        ``agent._sampler``.
    """
    from diffagents.data import WindowSampler, to_windows

    windows = to_windows(agent.dataset, horizon, discount=discount, termination_penalty=termination_penalty,
                         use_padding=use_padding, flattener=agent.flattener)
    flat = dict(windows.flat)
    real = flat["mask"] > 0
    if "obs" not in agent.normalizers:
        agent.normalizers["obs"] = agent.fit_obs_normalizer(flat["observations"][real])
    obs = agent.normalize_obs(flat["observations"])
    obs[~real] = 0.0
    act = agent.scale_action(flat["actions"])
    act[~real] = 0.0
    flat["observations"], flat["actions"] = obs.astype(np.float32), act
    agent._sampler = WindowSampler(flat, windows.index, horizon, device=agent.device)
    return windows
