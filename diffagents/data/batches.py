"""Batch builders of the ``windows`` and ``chunks`` batch specs over a Minari dataset, in an agent's normalised
space (:mod:`diffagents.core.contract`): planner windows (Diffuser, Decision Diffuser) and observation-history /
action-chunk windows (Diffusion Policy and its distilled students)."""

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


def chunk_window_rows(lengths: np.ndarray, obs_horizon: int, pred_horizon: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge-padded rows for chunk windows: ``(episode of each row, step of each row, window start rows)``.

    Each episode of ``T`` steps becomes ``T + Tp - 1`` rows: ``To - 1`` copies of step 0, steps ``0..T-1`` and
    ``Tp - To`` copies of step ``T - 1``. The window of current step ``s`` starts at row ``offset + s``.
    """
    rows_per_ep = lengths + pred_horizon - 1
    offsets = np.concatenate([[0], np.cumsum(rows_per_ep)[:-1]]).astype(np.int64)
    row_ep = np.repeat(np.arange(len(lengths)), rows_per_ep)  # (R,)
    k = np.arange(len(row_ep), dtype=np.int64) - offsets[row_ep]  # (R,) row within its episode
    step = np.clip(k - (obs_horizon - 1), 0, lengths[row_ep] - 1)  # (R,)
    starts = np.concatenate([off + np.arange(n) for off, n in zip(offsets, lengths)]).astype(np.int64)  # (M,)
    return row_ep, step, starts


def attach_chunk_windows(agent: Any, obs_horizon: int, pred_horizon: int) -> None:
    """Set ``agent._sampler`` to a window sampler of ``(obs (B, Tp, O), actions (B, Tp, A))`` in normalised space
    (fitting the observation normalizer on the real observations if not loaded)."""
    from diffagents.data import WindowSampler, read_episodes

    table = read_episodes(agent.dataset, flattener=agent.flattener)
    row_ep, step, starts = chunk_window_rows(table.lengths, obs_horizon, pred_horizon)
    if "obs" not in agent.normalizers:
        agent.normalizers["obs"] = agent.fit_obs_normalizer(table.observations)
    obs = agent.normalize_obs(table.observations[table.obs_offsets[row_ep] + step])
    act = agent.scale_action(table.actions[table.step_offsets[row_ep] + step])
    agent._sampler = WindowSampler({"obs": obs, "actions": act}, starts, pred_horizon, device=agent.device)
